"""End-to-end training runs on small fake caches: run folder, checkpoint contract, k-fold, modes."""

from __future__ import annotations

import json

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.cache import load_cohort
from pipeline.checkpoint import Checkpoint, build_models, load_checkpoint
from pipeline.config import recipe_hash
from pipeline.decision import ArgmaxRule, TemperaturePriorRule
from pipeline.inference import ensemble_probabilities
from pipeline.train import NonFiniteLossError, TrainError, train
from pipeline.train.module import StageClassifier

pytestmark = pytest.mark.slow


def test_run_folder_and_checkpoint_contract(tmp_path, train_cfg, fake_cache) -> None:
    cfg = train_cfg("trainer.max_epochs=2")
    cache = fake_cache(cfg, n_subjects=30, sessions=2)
    run = tmp_path / "run"
    result = train(cfg, run)

    for name in (
        "config.yaml",
        "pip_freeze.txt",
        "split.csv",
        "metrics.csv",
        "training_curves.png",
        "summary.json",
    ):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert list((run / "logs" / "tensorboard" / "version_0").glob("events.out.tfevents.*"))
    assert (run / "logs" / "csv" / "version_0" / "metrics.csv").is_file()
    assert "torch==" in (run / "pip_freeze.txt").read_text()
    curves = matplotlib.image.imread(run / "training_curves.png")
    assert curves.ndim == 3 and curves.shape[0] > 100
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["epoch"].tolist() == [0, 1]
    assert {"train_loss", "val_loss", "val_bal_acc", "val_auc", "lr"} <= set(metrics.columns)

    raw = Checkpoint.from_dict(torch.load(run / "checkpoints" / "best.pt", weights_only=True))
    assert result.checkpoint == run / "checkpoints" / "best.pt"
    assert raw.classes == ("CN", "MCI", "AD")
    # the defaults: an ordinal head around the network, a fitted temperature-and-prior rule
    assert raw.slice_mode == "channels" and isinstance(raw.decision, TemperaturePriorRule)
    assert raw.decision.temperature > 0 and len(raw.decision.log_bias) == 3
    assert raw.network["_target_"] == "pipeline.models.CumulativeLinkHead"
    assert raw.network["num_classes"] == 3
    backbone = raw.network["backbone"]
    assert backbone["_target_"] == "pipeline.models.SimpleCNN"
    assert backbone["in_channels"] == 3 and backbone["num_classes"] == 1
    assert raw.recipe_hash == recipe_hash(cfg)
    assert raw.recipe_hash == json.loads((cache / "provenance.json").read_text())["recipe_hash"]
    assert raw.recipe["normalize"]["size"] == 32
    assert raw.data_name == "fake" and "torch" in raw.versions
    assert raw.train_config["model"]["optimizer"]["lr"] == cfg.model.optimizer.lr
    assert len(raw.folds) == 1
    fold = raw.folds[0]
    assert fold.best_epoch == 1  # the last epoch is kept
    assert set(fold.val_metrics) >= {"val_bal_acc", "val_loss"}
    assert fold.val_metrics["val_bal_acc"] == metrics.loc[1, "val_bal_acc"]

    summary = json.loads((run / "summary.json").read_text())
    chosen = summary["folds"][0]["selection"]
    assert chosen["kept_epoch"] == 1
    assert chosen["best"] == pytest.approx(metrics["val_bal_acc"].max(), abs=1e-4)
    smoothed = metrics["val_bal_acc"].mean()  # two epochs: the 5-epoch window holds both
    assert chosen["optimism"] == pytest.approx(metrics.loc[1, "val_bal_acc"] - smoothed, abs=1e-4)
    assert summary["selection_optimism"] == chosen["optimism"]
    assert summary["decision"]["params"]["kind"] == "temperature_prior"
    assert set(summary["decision"]["val_bal_acc"]) == {"argmax", "fitted", "crossfit"}

    split = pd.read_csv(run / "split.csv", dtype={"subject_id": str})
    assert list(split.columns) == ["subject_id", "fold", "role"]
    assert sorted(split.loc[split.role == "train", "subject_id"]) == list(fold.train_subjects)
    assert sorted(split.loc[split.role == "val", "subject_id"]) == list(fold.val_subjects)
    assert not set(fold.train_subjects) & set(fold.val_subjects)
    cohort = load_cohort(cache)
    assert raw.subjects_seen() == set(cohort.manifest["subject_id"])
    in_val = cohort.manifest["subject_id"].isin(fold.val_subjects)
    assert (in_val.groupby(cohort.manifest["subject_id"]).nunique() == 1).all()  # sessions together

    # evaluate's path: rebuild the network from the file alone and predict
    ckpt = load_checkpoint(run)
    probs, per_model = ensemble_probabilities(
        build_models(ckpt), cohort.images, ckpt.slice_mode, device="cpu"
    )
    assert probs.shape == (60, 3) and len(per_model) == 1
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_kfold_trains_one_model_per_fold(tmp_path, train_cfg, fake_cache, quick_freeze) -> None:
    cfg = train_cfg(
        "split.folds=3",
        "trainer.max_epochs=1",
        "sampler=balanced",
        "model.class_weight=null",
        "callbacks=early_stopping",
        "head=softmax",
        "decision=argmax",
    )
    fake_cache(cfg, n_subjects=30)
    run = tmp_path / "run"
    result = train(cfg, run)
    ckpt = load_checkpoint(run / "checkpoints" / "best.pt")
    assert len(ckpt.folds) == 3 and len(result.folds) == 3
    val_sets = [set(f.val_subjects) for f in ckpt.folds]
    assert set.union(*val_sets) == {f"sub-{i:03d}" for i in range(30)}
    assert sum(len(v) for v in val_sets) == 30
    for f in ckpt.folds:
        assert not set(f.train_subjects) & set(f.val_subjects)
    for i in range(3):  # callbacks=early_stopping: the best epoch's model is kept
        assert (run / f"fold_{i}" / "checkpoints" / "best.ckpt").is_file()
    assert ckpt.network["_target_"] == "pipeline.models.SimpleCNN" and ckpt.decision == ArgmaxRule()
    metrics = pd.read_csv(run / "metrics.csv")
    assert sorted(metrics["fold"].unique()) == [0, 1, 2]
    weights = [f.state_dict["0.conv.weight"] for f in ckpt.folds]  # softmax: no backbone prefix
    assert not torch.equal(weights[0], weights[1])


def test_slices_mode_trains_a_one_channel_model(
    tmp_path, train_cfg, fake_cache, quick_freeze
) -> None:
    cfg = train_cfg("data.slice_mode=slices", "trainer.max_epochs=1", "scheduler=onecycle")
    cache = fake_cache(cfg, n_subjects=24)
    train(cfg, tmp_path / "run")
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.slice_mode == "slices" and ckpt.network["backbone"]["in_channels"] == 1
    probs, _ = ensemble_probabilities(
        build_models(ckpt), load_cohort(cache).images, "slices", device="cpu"
    )
    assert probs.shape == (24, 3)


def test_split_file_is_reused(tmp_path, train_cfg, fake_cache, quick_freeze) -> None:
    cfg = train_cfg("trainer.max_epochs=1", "seed=1")
    fake_cache(cfg, n_subjects=24)
    train(cfg, tmp_path / "first")
    other = train_cfg(
        "trainer.max_epochs=1", "seed=2", f"split.file={tmp_path / 'first' / 'split.csv'}"
    )
    train(other, tmp_path / "second")
    a, b = load_checkpoint(tmp_path / "first"), load_checkpoint(tmp_path / "second")
    assert a.folds[0].val_subjects == b.folds[0].val_subjects


def test_run_folder_is_not_overwritten(tmp_path, train_cfg, fake_cache, quick_freeze) -> None:
    cfg = train_cfg("trainer.max_epochs=1")
    fake_cache(cfg, n_subjects=24)
    train(cfg, tmp_path / "run")
    with pytest.raises(TrainError, match="already holds a training run"):
        train(cfg, tmp_path / "run")
    with pytest.raises(TrainError, match="holds no checkpoints to resume"):
        train(train_cfg("trainer.max_epochs=1", "train.resume=true"), tmp_path / "fresh")


def test_overflowing_pixels_stop_with_epoch_and_batch(
    tmp_path, train_cfg, fake_cache, quick_freeze
) -> None:
    cfg = train_cfg("trainer.max_epochs=1")
    cache = fake_cache(cfg, n_subjects=24)
    images = np.load(cache / "images.npy")
    # finite (so the up-front check passes) but the first convolution overflows to inf
    np.save(cache / "images.npy", np.clip(images, 0.0, 1.0) * np.float32(3e38))
    with pytest.raises(
        NonFiniteLossError, match=r"at epoch 0, batch 0 \(0-based\)\. Lower model.optimizer.lr"
    ):
        train(cfg, tmp_path / "run")


def test_nan_loss_names_epoch_and_batch() -> None:
    class NaNNet(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((x.shape[0], 3), float("nan"))

    module = StageClassifier(NaNNet(), torch.optim.AdamW, classes=["CN", "MCI", "AD"])
    batch = {"image": torch.zeros(4, 3, 8, 8), "label": torch.tensor([0, 1, 2, 0])}
    with pytest.raises(NonFiniteLossError, match=r"became nan at epoch 0, batch 5"):
        module.training_step(batch, 5)


def test_a_lone_sample_batch_is_skipped_not_fatal() -> None:
    module = StageClassifier(
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.BatchNorm1d(12)),
        torch.optim.AdamW,
        classes=["CN", "MCI", "AD"],
    )
    batch = {"image": torch.zeros(1, 3, 2, 2), "label": torch.tensor([1])}
    assert module.training_step(batch, 0) is None


def test_cache_with_nan_pixels_is_refused(tmp_path, train_cfg, fake_cache) -> None:
    cfg = train_cfg()
    cache = fake_cache(cfg, n_subjects=24)
    images = np.load(cache / "images.npy")
    images[7, 1, 3, 3] = np.nan
    np.save(cache / "images.npy", images)
    with pytest.raises(TrainError, match=r"NaN/Inf pixels \(\['sub-007'\]\)"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()
