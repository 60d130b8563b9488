"""What a report or a predictions summary says about the model: file, hash, network, training."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pipeline.checkpoint import Checkpoint
from pipeline.config import config_hash

#: Said (logged, and in the report) whenever a leakage-check model is applied to a cohort.
SHUFFLED_LABELS_WARNING = (
    "WARNING: this checkpoint was trained with train.shuffle_labels=true (the leakage check: "
    "labels permuted on purpose). Its predictions are meaningless by design."
)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes: names the exact weights a report was made with."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def model_summary(ckpt: Checkpoint, path: str | Path) -> dict[str, Any]:
    """The ``model`` block of metrics.json and of a predictions summary."""
    target = str(ckpt.network.get("_target_", "?"))
    short = target.rsplit(".", 1)[-1]
    backbone = ckpt.network.get("backbone")  # an output head (conf/head) around the network
    if isinstance(backbone, dict):
        short = f"{short}({str(backbone.get('_target_', '?')).rsplit('.', 1)[-1]})"
    return {
        "target": target,
        "target_short": short,
        "config": ckpt.network,
        "slice_mode": ckpt.slice_mode,
        "n_models": len(ckpt.folds),
        "best_epochs": [fold.best_epoch for fold in ckpt.folds],
        "decision_rule": ckpt.decision.describe(),
        "checkpoint": str(path),
        "checkpoint_sha256": sha256_file(path),
        "trained_on": ckpt.data_name,
        "train_config_hash": config_hash(ckpt.train_config) if ckpt.train_config else None,
        "created": ckpt.created,
        "shuffle_labels": ckpt.shuffle_labels,
    }
