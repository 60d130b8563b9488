"""What a report says about the model it describes: file, hash, network, training cohort."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from pipeline.config import config_hash
from pipeline.utils.device import default_device


def checkpoint_file(path: str | Path) -> Path:
    """The checkpoint file for ``checkpoint=`` (a run folder means its ``checkpoints/best.pt``)."""
    p = Path(path)
    return p / "checkpoints" / "best.pt" if p.is_dir() else p


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes: names the exact weights a report was made with."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def model_summary(ckpt: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The ``model`` block of metrics.json and of a predictions summary."""
    target = str(ckpt["model"].get("_target_", "?"))
    train_config = ckpt.get("train_config")
    return {
        "target": target,
        "target_short": target.rsplit(".", 1)[-1],
        "config": ckpt["model"],
        "slice_mode": ckpt["slice_mode"],
        "n_models": len(ckpt["folds"]),
        "best_epochs": [fold.get("best_epoch") for fold in ckpt["folds"]],
        "checkpoint": str(path),
        "checkpoint_sha256": sha256_file(path),
        "trained_on": ckpt.get("data_name"),
        "train_config_hash": config_hash(train_config) if train_config is not None else None,
        "created": ckpt.get("created"),
        "shuffle_labels": bool(ckpt.get("shuffle_labels", False)),
    }


#: Said (logged, and in the report) whenever a leakage-check model is applied to a cohort.
SHUFFLED_LABELS_WARNING = (
    "WARNING: this checkpoint was trained with train.shuffle_labels=true (the leakage check: "
    "labels permuted on purpose). Its predictions are meaningless by design."
)


def pick_device(name: str | None) -> torch.device:
    """``evaluate.device``: ``null`` picks CUDA when present, else the CPU."""
    return default_device() if name in (None, "", "auto") else torch.device(str(name))
