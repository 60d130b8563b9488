"""The trained-model file: the contract between ``train`` and ``evaluate``/``predict``.

``<run>/checkpoints/best.pt`` is a plain dict that loads with ``torch.load(weights_only=True)``
(only tensors, strings, numbers, lists and dicts: no pickled code runs on load):

======================  ===============================================================
``format_version``      int, :data:`FORMAT_VERSION`
``classes``             list[str], output order of the model (``data.classes``)
``model``               dict, the resolved ``conf/model`` config (``_target_`` + kwargs)
``slice_mode``          ``"channels"`` (S slices as S channels) or ``"slices"`` (one slice a
                        sample, subject-level soft vote)
``preprocessing``       dict, the ``slices``/``series``/``normalize`` recipe of the cache
``preprocessing_hash``  str, :func:`pipeline.config.preprocessing_hash` of it
``folds``               list of dicts, one per trained model (one for a plain run, k for
                        ``train.folds=k``): ``state_dict``, ``train_subjects``,
                        ``val_subjects``, ``best_epoch``, ``val_metrics``
``train_config``        dict, the resolved training config
``data_name``           str, the cache it was trained on
``versions``            dict[str, str], package versions
``created``             str, ISO-8601 time
======================  ===============================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn

from pipeline.utils.atomic import atomic_path

FORMAT_VERSION = 1

REQUIRED_KEYS = (
    "format_version",
    "classes",
    "model",
    "slice_mode",
    "preprocessing",
    "preprocessing_hash",
    "folds",
)
FOLD_KEYS = ("state_dict", "train_subjects", "val_subjects")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or not one of ours."""


def validate_checkpoint(ckpt: dict[str, Any], source: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` naming what is missing from a checkpoint dict."""
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{source} lacks {missing}; it was not written by pipeline.train")
    if ckpt["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{source} has format {ckpt['format_version']}, this code reads {FORMAT_VERSION}"
        )
    if not ckpt["folds"]:
        raise CheckpointError(f"{source} holds no trained model (empty 'folds')")
    for i, fold in enumerate(ckpt["folds"]):
        lacking = [k for k in FOLD_KEYS if k not in fold]
        if lacking:
            raise CheckpointError(f"{source}: fold {i} lacks {lacking}")


def save_checkpoint(path: str | Path, ckpt: dict[str, Any]) -> Path:
    """Validate and write a checkpoint atomically (a crash never leaves a truncated file)."""
    validate_checkpoint(ckpt, str(path))
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(ckpt, tmp)
    return Path(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` on the CPU and validate it."""
    p = Path(path)
    if p.is_dir():
        p = p / "checkpoints" / "best.pt"
    if not p.is_file():
        raise CheckpointError(
            f"No checkpoint at {path}. Pass checkpoint=<run>/checkpoints/best.pt "
            "(the path printed at the end of `python -m pipeline.train`)."
        )
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which and why
        raise CheckpointError(f"Cannot read checkpoint {p}: {exc}") from exc
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{p} is not a pipeline checkpoint (got {type(ckpt).__name__})")
    validate_checkpoint(ckpt, str(p))
    return ckpt


def build_model(model_config: dict[str, Any]) -> nn.Module:
    """Instantiate a network from its ``conf/model`` config (``_target_`` + kwargs)."""
    return instantiate(dict(model_config), _convert_="all")


def build_models(ckpt: dict[str, Any], device: str | torch.device = "cpu") -> list[nn.Module]:
    """One network per fold, weights loaded, in eval mode on ``device``."""
    models = []
    for fold in ckpt["folds"]:
        model = build_model(ckpt["model"])
        model.load_state_dict(fold["state_dict"])
        models.append(model.to(device).eval())
    return models


def trained_subjects(ckpt: dict[str, Any]) -> set[str]:
    """Every subject the checkpoint's models saw in training or validation, across folds."""
    seen: set[str] = set()
    for fold in ckpt["folds"]:
        seen.update(map(str, fold["train_subjects"]))
        seen.update(map(str, fold["val_subjects"]))
    return seen
