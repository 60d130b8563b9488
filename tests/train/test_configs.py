"""conf/trainer and conf/augment compose; the ``auto`` trainer settings follow the hardware."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from pipeline.config import CONF_DIR, compose
from pipeline.train.augment import BatchAugment
from pipeline.train.trainer import data_workers, resolve_trainer_settings

TRAINERS = sorted(p.stem for p in (Path(CONF_DIR) / "trainer").glob("*.yaml"))
AUGMENTS = sorted(p.stem for p in (Path(CONF_DIR) / "augment").glob("*.yaml"))


def _compose(*overrides: str):
    return compose("train", overrides)


@pytest.mark.parametrize("name", TRAINERS)
def test_trainer_configs_compose_onto_the_default(name: str) -> None:
    cfg = _compose(f"trainer={name}")
    assert cfg.trainer._target_ == "lightning.Trainer"
    assert cfg.trainer.max_epochs >= 1 and "precision" in cfg.trainer


@pytest.mark.parametrize("name", AUGMENTS)
def test_augment_configs_instantiate(name: str) -> None:
    cfg = _compose(f"augment={name}")
    assert isinstance(instantiate(cfg.augment, _convert_="all"), BatchAugment)


def test_expected_groups_exist() -> None:
    assert {"default", "gpu", "ddp", "ddp_cpu"} <= set(TRAINERS)
    assert {"default", "none"} <= set(AUGMENTS)


def test_auto_settings_on_cpu_are_reproducible() -> None:
    settings = resolve_trainer_settings(dict(_compose().trainer) | {"accelerator": "cpu"})
    assert settings["precision"] == "32-true"
    assert settings["deterministic"] is True
    assert settings["benchmark"] is False
    assert data_workers("auto", "cpu") == 0 and data_workers(3, "cpu") == 3


@pytest.mark.parametrize(("bf16", "precision"), [(True, "bf16-mixed"), (False, "16-mixed")])
def test_auto_settings_on_a_gpu_use_mixed_precision(
    monkeypatch, bf16: bool, precision: str
) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch, "set_float32_matmul_precision", lambda *_: None)
    base = dict(_compose("trainer=ddp").trainer) | {"accelerator": "gpu"}
    settings = resolve_trainer_settings(base)
    assert settings["precision"] == precision
    assert settings["deterministic"] is False and settings["benchmark"] is True
    assert settings["sync_batchnorm"] is True
    explicit = resolve_trainer_settings(base | {"precision": "32-true", "deterministic": True})
    assert explicit["precision"] == "32-true" and explicit["deterministic"] is True


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


@pytest.mark.parametrize("optimizer", _options("optimizer"))
@pytest.mark.parametrize("scheduler", _options("scheduler"))
def test_every_optimizer_and_schedule_builds_for_a_run(optimizer: str, scheduler: str) -> None:
    from pipeline.train.module import call_with_known

    cfg = _compose(f"optimizer={optimizer}", f"scheduler={scheduler}")
    net = torch.nn.Linear(4, 3)
    model = instantiate(cfg.model, net=net, classes=["a", "b", "c"], class_weight=[1.0, 2.0, 1.0])
    assert model.criterion.weight.tolist() == [1.0, 2.0, 1.0]
    opt = model.optimizer_factory(model.parameters())
    assert opt.param_groups[0]["lr"] == cfg.model.optimizer.lr
    schedule = call_with_known(model.scheduler_factory, opt, total_steps=100, epochs=10)
    for _ in range(99):
        opt.step()
        schedule.step()
    assert 0.0 <= opt.param_groups[0]["lr"] <= cfg.model.optimizer.lr * 1.0001


def test_warmup_cosine_ramps_then_decays() -> None:
    from pipeline.train.schedules import warmup_cosine

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = warmup_cosine(opt, total_steps=100, epochs=10, warmup_epochs=2, start_factor=0.1)
    rates = []
    for _ in range(100):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert rates[0] == pytest.approx(0.1) and max(rates) == pytest.approx(1.0, abs=0.05)
    assert rates.index(max(rates)) in (19, 20, 21) and rates[-1] < 0.01


@pytest.mark.parametrize("sampler", _options("sampler"))
def test_samplers_and_datamodule_build(tmp_path, sampler: str) -> None:
    import numpy as np

    np.save(tmp_path / "images.npy", np.zeros((12, 3, 4, 4), dtype=np.float32))
    cfg = _compose(f"sampler={sampler}")
    labels = np.array([0] * 8 + [1] * 2 + [2] * 2)
    rows = {"train_rows": np.arange(10), "val_rows": np.arange(10, 12)}
    dm = instantiate(
        cfg.datamodule, images_path=tmp_path / "images.npy", labels=labels, num_workers=0, seed=1,
        **rows,
    )  # fmt: skip
    first = [b["row"].tolist() for b in dm.train_dataloader()]
    again = [b["row"].tolist() for b in dm.train_dataloader()]
    assert first == again and sum(len(b) for b in first) == 10


def test_callbacks_and_loggers_build_into_the_fold_folders(tmp_path) -> None:
    from pipeline.train.callbacks import build_callbacks, checkpoint_callbacks
    from pipeline.train.trainer import build_loggers

    cfg = _compose()
    callbacks = build_callbacks(cfg.callbacks, tmp_path / "checkpoints")
    pair = checkpoint_callbacks(callbacks)  # the default keeps the last epoch
    assert pair.monitor is None and pair.best_path is None
    assert pair.model_path == pair.last_path == tmp_path / "checkpoints" / "last.ckpt"
    early = checkpoint_callbacks(
        build_callbacks(_compose("callbacks=early_stopping").callbacks, tmp_path / "checkpoints")
    )
    assert early.monitor == "val/bal_acc"
    assert early.model_path == early.best_path == tmp_path / "checkpoints" / "best.ckpt"
    assert early.last_path == tmp_path / "checkpoints" / "last.ckpt"
    loggers = build_loggers(cfg.logger, tmp_path)
    assert [type(lg).__name__ for lg in loggers] == ["CSVLogger", "TensorBoardLogger"]
    assert all(str(lg.save_dir) == str(tmp_path / "logs") for lg in loggers)
    assert instantiate(cfg.decision).kind == "temperature_prior"
    assert instantiate(_compose("decision=argmax").decision).kind == "argmax"


@pytest.mark.parametrize("head", _options("head"))
@pytest.mark.parametrize("model", ["simple_cnn", "resnet18"])
def test_every_head_wraps_the_networks(head: str, model: str) -> None:
    from pipeline.checkpoint import build_model
    from pipeline.config import to_container
    from pipeline.models import network_config

    cfg = _compose(f"head={head}", f"model={model}")
    network = network_config(
        to_container(cfg.model.net), to_container(cfg.head) if cfg.head else None, 3, 3
    )
    out = build_model(network).eval()(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 3)
    if head != "softmax":  # ordinal heads return log-probabilities
        torch.testing.assert_close(out.exp().sum(dim=1), torch.ones(2))


def test_decision_configs_instantiate() -> None:
    for name in _options("decision"):
        assert instantiate(_compose(f"decision={name}").decision).kind in {
            "argmax",
            "temperature_prior",
        }
