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
