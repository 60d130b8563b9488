"""Build the Lightning ``Trainer`` from ``conf/trainer``, resolving the ``auto`` settings.

``conf/trainer/*.yaml`` holds ordinary ``lightning.Trainer`` arguments plus three that may be
``auto`` and are decided here from the hardware Lightning will use:

- ``precision``: ``bf16-mixed`` on CUDA GPUs that support it, ``16-mixed`` on other CUDA GPUs,
  ``32-true`` elsewhere (CPU training stays in full precision and bit-reproducible);
- ``deterministic``: ``true`` on CPU (same config + seed -> same numbers), ``false`` on GPU where
  several cuDNN kernels have no deterministic version;
- ``benchmark`` (cudnn.benchmark): ``true`` on GPU, ``false`` on CPU;
- ``sync_batchnorm``: ``true`` on GPU (BatchNorm statistics over all DDP processes), ``false`` on
  CPU where PyTorch's SyncBatchNorm does not run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger(__name__)

AUTO = "auto"


def is_rank_zero() -> bool:
    """Whether this process is global rank 0 (read from the launcher's environment, so it is
    right before the Trainer exists: torchrun, SLURM and Lightning's own DDP launcher set it)."""
    return getattr(rank_zero_only, "rank", 0) == 0


def uses_cuda(accelerator: str) -> bool:
    """Whether Lightning will train on CUDA with this ``trainer.accelerator``."""
    name = str(accelerator).lower()
    if name in ("gpu", "cuda"):
        return True
    return name == AUTO and torch.cuda.is_available()


def resolve_trainer_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``settings`` with ``auto`` precision/deterministic/benchmark decided."""
    resolved = dict(settings)
    cuda = uses_cuda(resolved.get("accelerator", AUTO))
    if resolved.get("precision", AUTO) == AUTO:
        if cuda:
            resolved["precision"] = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        else:
            resolved["precision"] = "32-true"
    if resolved.get("deterministic", AUTO) == AUTO:
        resolved["deterministic"] = not cuda
    if resolved.get("benchmark", AUTO) == AUTO:
        resolved["benchmark"] = cuda
    if resolved.get("sync_batchnorm") == AUTO:
        resolved["sync_batchnorm"] = cuda
    if cuda:
        # TF32 tensor cores for the float32 parts of mixed precision.
        torch.set_float32_matmul_precision("high")
    return resolved


def data_workers(setting: int | str, accelerator: str) -> int:
    """``datamodule.num_workers``: ``auto`` reads in the training process on CPU (the cores are busy
    with the network; a memory-mapped batch read takes about a millisecond), and uses up to
    four workers on GPU where the host is otherwise idle."""
    if setting != AUTO:
        return int(setting)
    if not uses_cuda(accelerator):
        return 0
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    return max(0, min(4, cores // max(1, torch.cuda.device_count()) - 1))


def build_loggers(configs: Mapping[str, Any], fold_dir: Path) -> list[Logger]:
    """Instantiate ``conf/logger`` in order; a ``save_dir: null`` becomes ``<fold_dir>/logs``.

    A resumed run starts a new ``version_<n>`` folder instead of overwriting the earlier logs.
    """
    loggers = []
    for config in configs.values():
        extra = {"save_dir": str(fold_dir / "logs")} if config.get("save_dir", ...) is None else {}
        loggers.append(instantiate(config, **extra, _convert_="all"))
    return loggers


def build_trainer(
    trainer_cfg: Any,
    *,
    fold_dir: Path,
    callbacks: Sequence[Callback],
    loggers: Sequence[Logger],
) -> L.Trainer:
    """Instantiate ``conf/trainer`` (a ``lightning.Trainer`` ``_target_``) for one fold."""
    settings = resolve_trainer_settings(dict(trainer_cfg))
    settings.setdefault("_target_", "lightning.Trainer")
    trainer: L.Trainer = instantiate(
        settings,
        default_root_dir=str(fold_dir),
        callbacks=list(callbacks),
        logger=list(loggers),
        _convert_="all",
    )
    return trainer
