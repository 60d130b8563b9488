"""Multi-process training through Lightning's DDP strategy: two CPU processes with gloo."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.checkpoint import load_checkpoint
from pipeline.train import train

pytestmark = pytest.mark.slow


def test_ddp_spawn_with_two_cpu_processes(tmp_path, train_cfg, fake_cache, quick_freeze) -> None:
    cfg = train_cfg("trainer=ddp_cpu", "trainer.max_epochs=2")
    assert cfg.trainer.strategy == "ddp_spawn" and cfg.trainer.devices == 2
    fake_cache(cfg, n_subjects=32)
    result = train(cfg, tmp_path / "run")
    ckpt = load_checkpoint(tmp_path / "run")
    assert result.checkpoint is not None and len(ckpt.folds) == 1
    assert ckpt.train_config["trainer"]["strategy"] == "ddp_spawn"
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert metrics["epoch"].tolist() == [0, 1]  # written once (rank 0), not once per process
    assert metrics["val_bal_acc"].between(0, 1).all()
