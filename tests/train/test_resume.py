"""Interrupted runs: a crash or Ctrl-C leaves last.ckpt; resuming gives the uninterrupted result."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from pipeline.checkpoint import load_checkpoint
from pipeline.train import train
from pipeline.train.module import StageClassifier

pytestmark = pytest.mark.slow

RUN = ("trainer.max_epochs=4",)


class SimulatedCrash(RuntimeError):
    pass


def test_resume_continues_and_matches_an_uninterrupted_run(
    tmp_path, train_cfg, fake_cache, quick_freeze, monkeypatch, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.train")
    cfg = train_cfg(*RUN)
    fake_cache(cfg, n_subjects=30)
    train(cfg, tmp_path / "straight")

    def crash_at_epoch_2(self):
        if self.current_epoch == 2:
            raise SimulatedCrash("power cut")

    monkeypatch.setattr(StageClassifier, "on_train_epoch_start", crash_at_epoch_2, raising=False)
    with pytest.raises(SimulatedCrash):
        train(cfg, tmp_path / "interrupted")
    assert "Resume with" in caplog.text and "train.resume=true" in caplog.text
    last = torch.load(tmp_path / "interrupted" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 1  # the state after the last finished epoch
    assert not (tmp_path / "interrupted" / "checkpoints" / "best.pt").exists()
    monkeypatch.undo()

    caplog.clear()
    train(train_cfg(*RUN, "train.resume=true"), tmp_path / "interrupted")
    assert "Resuming from" in caplog.text

    straight = pd.read_csv(tmp_path / "straight" / "metrics.csv")
    resumed = pd.read_csv(tmp_path / "interrupted" / "metrics.csv")
    assert resumed["epoch"].tolist() == [0, 1, 2, 3]
    pd.testing.assert_frame_equal(straight, resumed)
    a = load_checkpoint(tmp_path / "straight").folds[0]
    b = load_checkpoint(tmp_path / "interrupted").folds[0]
    assert a.best_epoch == b.best_epoch
    for key, value in a.state_dict.items():
        assert torch.equal(value, b.state_dict[key]), key


def test_resume_of_a_finished_kfold_run_reuses_the_folds(
    tmp_path, train_cfg, fake_cache, quick_freeze, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.train")
    cfg = train_cfg("trainer.max_epochs=1", "split.folds=2")
    fake_cache(cfg, n_subjects=20)
    train(cfg, tmp_path / "run")
    first = load_checkpoint(tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / "best.pt").unlink()  # e.g. killed while writing it
    train(train_cfg("trainer.max_epochs=1", "split.folds=2", "train.resume=true"), tmp_path / "run")
    assert caplog.text.count("finished before the interruption") == 2
    again = load_checkpoint(tmp_path / "run")
    for fa, fb in zip(first.folds, again.folds, strict=True):
        key = "backbone.0.conv.weight"  # the default ordinal head wraps the network
        assert torch.equal(fa.state_dict[key], fb.state_dict[key])


def test_ctrl_c_leaves_a_resumable_last_checkpoint(tmp_path, train_cfg, fake_cache) -> None:
    overrides = [
        f"paths.cache={tmp_path / 'cache'}",
        "data.name=fake",
        "split.folds=1",
        "normalize.size=32",
        "model.net.channels=[8,16,32]",
        "trainer.max_epochs=500",
        "trainer.enable_progress_bar=false",
        "datamodule.batch_size=16",
    ]
    cfg = train_cfg(*overrides[1:])
    fake_cache(cfg, n_subjects=24)
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.train", *overrides, f"hydra.run.dir={run}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert last.exists(), "training never wrote last.ckpt"
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "train.resume=true" in output and f"hydra.run.dir={run}" in output
    epoch = torch.load(last, weights_only=True)["epoch"]
    assert not (run / "checkpoints" / "best.pt").exists()

    resumed = train_cfg(*overrides[1:], f"trainer.max_epochs={epoch + 2}", "train.resume=true")
    train(resumed, run)
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["epoch"].tolist() == list(range(epoch + 2))
    assert load_checkpoint(run).folds[0].epochs_trained == epoch + 2
