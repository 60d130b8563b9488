"""Apply a checkpoint to a cohort: the steps evaluate and predict share.

checkpoint -> the cohort's cache made with the checkpoint's recipe -> the fold models -> the
ensemble's probabilities -> the checkpoint's decision rule -> the predictions table. Evaluate
scores the table and writes the report on top of it; predict writes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig
from torch import nn

from pipeline.apply.cohort import prepare_cohort
from pipeline.apply.model_info import SHUFFLED_LABELS_WARNING
from pipeline.apply.table import predictions_table
from pipeline.cache import PreprocessedCohort
from pipeline.checkpoint import Checkpoint, build_models, checkpoint_file, load_checkpoint
from pipeline.decision import Decision
from pipeline.inference import ensemble_probabilities
from pipeline.utils.device import pick_device

#: Called with the checkpoint and the cohort before any model runs; raises to refuse the cohort.
Admit = Callable[[Checkpoint, PreprocessedCohort], None]


@dataclass(frozen=True)
class Applied:
    """A checkpoint applied to a cohort.

    Attributes:
        checkpoint, checkpoint_path: the model file and where it is.
        cohort: the cache the models read (made with the checkpoint's recipe).
        models: one network per fold, in eval mode on ``device``.
        decision: the ensemble's probabilities after the checkpoint's rule, and its classes.
        fold_probabilities: each model's own probabilities ``(N, K)``, before the rule.
        table: :func:`pipeline.apply.table.predictions_table` of it all.
    """

    checkpoint: Checkpoint
    checkpoint_path: Path
    cohort: PreprocessedCohort
    models: list[nn.Module] = field(repr=False)
    device: torch.device
    decision: Decision = field(repr=False)
    fold_probabilities: list[np.ndarray] = field(repr=False)
    table: pd.DataFrame = field(repr=False)

    @property
    def classes(self) -> list[str]:
        return list(self.checkpoint.classes)


def open_checkpoint(path: str | Path, log: Callable[[str], None]) -> tuple[Checkpoint, Path]:
    """Load ``checkpoint=`` (a file or a train run folder) and say what kind of model it is."""
    file = checkpoint_file(path)
    ckpt = load_checkpoint(file)
    if ckpt.shuffle_labels:
        log(SHUFFLED_LABELS_WARNING)
    log(f"Decision rule: {ckpt.decision.describe()}.")
    return ckpt, file


def run_models(
    models: list[nn.Module],
    cohort: PreprocessedCohort,
    ckpt: Checkpoint,
    batch_size: int,
    device: torch.device,
) -> tuple[Decision, list[np.ndarray]]:
    """The fold ensemble's probabilities through the checkpoint's decision rule."""
    probs, fold_probs = ensemble_probabilities(
        models, cohort.images, ckpt.slice_mode, batch_size, device
    )
    return ckpt.decision.apply(probs), fold_probs


def apply_checkpoint(
    cfg: DictConfig,
    log: Callable[[str], None],
    admit: Admit | None = None,
) -> Applied:
    """Apply ``cfg.checkpoint`` to the cohort ``cfg.data`` with the ``cfg.apply`` settings.

    ``admit`` runs before the models do (evaluate refuses a cohort that overlaps the training
    subjects there, without spending the inference first).
    """
    ckpt, file = open_checkpoint(cfg.checkpoint, log)
    cohort = prepare_cohort(cfg, ckpt, log=log)
    if admit is not None:
        admit(ckpt, cohort)
    device = pick_device(cfg.apply.get("device"))
    models = build_models(ckpt, device)
    log(f"Predicting {len(cohort)} case(s) with {len(models)} model(s) on {device}.")
    decision, fold_probs = run_models(models, cohort, ckpt, int(cfg.apply.batch_size), device)
    table = predictions_table(
        cohort.manifest, decision, ckpt.classes, fold_probs, ckpt.subjects_seen()
    )
    return Applied(
        checkpoint=ckpt,
        checkpoint_path=file,
        cohort=cohort,
        models=models,
        device=device,
        decision=decision,
        fold_probabilities=fold_probs,
        table=table,
    )
