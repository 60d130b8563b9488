"""Training one fold: the module, data, callbacks, loggers and trainer from ``conf/``, and its
:class:`~pipeline.checkpoint.FoldEntry`.

A fold's folder (the run folder itself for a plain run, ``fold_<i>/`` for k-fold) holds
Lightning's ``checkpoints/last.ckpt`` (end of the last finished epoch: for resuming, and the model
the fold keeps by default) and, with ``callbacks=early_stopping``, ``checkpoints/best.ckpt`` (best
``val/bal_acc``, then the model kept), ``metrics.csv`` (one row per epoch, from the CSV logger)
and ``logs/``. When the fold is done its entry is written to ``checkpoints/fold_result.pt``, so
resuming a k-fold run skips it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from sklearn.utils.class_weight import compute_class_weight

from pipeline.cache import IMAGES, PreprocessedCohort
from pipeline.checkpoint import FoldEntry, build_model, load_fold_entry, save_fold_entry
from pipeline.train.callbacks import (
    CheckpointCallbacks,
    InterruptNotice,
    build_callbacks,
    checkpoint_callbacks,
)
from pipeline.train.errors import TrainError
from pipeline.train.history import METRICS_FILE, column_name, csv_logger_dir, epoch_table
from pipeline.train.module import StageClassifier
from pipeline.train.splits import fold_subjects, rows_of
from pipeline.train.trainer import build_loggers, build_trainer, data_workers, uses_cuda
from pipeline.utils.atomic import write_csv

log = logging.getLogger(__name__)

FOLD_RESULT = "fold_result.pt"


@dataclass(frozen=True)
class TrainContext:
    """What every fold of a run shares (built once by :func:`pipeline.train.run.train`).

    Attributes:
        cohort: the training cache.
        labels: class index of every cache row (permuted by subject for the leakage check).
        split: the subject split (``subject_id``, ``fold``, ``role``).
        run_dir: the run folder.
        network: the network config sized to the cohort (what best.pt stores).
        resume: continue interrupted folds from their ``last.ckpt``.
        resume_command: the command that resumes this run (printed on an interruption).
    """

    cohort: PreprocessedCohort = field(repr=False)
    labels: np.ndarray = field(repr=False)
    split: pd.DataFrame = field(repr=False)
    run_dir: Path
    network: dict[str, Any]
    resume: bool
    resume_command: str

    @property
    def n_folds(self) -> int:
        return int(self.split["fold"].astype(int).max()) + 1

    def fold_dir(self, fold: int) -> Path:
        return fold_dir(self.run_dir, fold, self.n_folds)


@dataclass(frozen=True)
class FoldRows:
    """One fold's subjects and their cache rows."""

    train_ids: list[str]
    val_ids: list[str]
    train: np.ndarray
    val: np.ndarray


def fold_dir(run_dir: Path, fold: int, n_folds: int) -> Path:
    """Where one fold's Lightning checkpoints, logs and metrics live."""
    return run_dir if n_folds == 1 else run_dir / f"fold_{fold}"


def fold_rows(ctx: TrainContext, fold: int) -> FoldRows:
    """The fold's training and validation subjects, and the cache rows of their sessions."""
    train_ids, val_ids = fold_subjects(ctx.split, fold)
    subjects = ctx.cohort.manifest["subject_id"].astype(str)
    return FoldRows(train_ids, val_ids, rows_of(train_ids, subjects), rows_of(val_ids, subjects))


def class_weight(setting: Any, labels: np.ndarray, classes: list[str]) -> list[float] | None:
    """``model.class_weight`` for these training labels (scikit-learn's ``compute_class_weight``:
    ``balanced``, or a ``{class index: weight}`` mapping); ``None`` keeps the classes equal."""
    if setting is None:
        return None
    if isinstance(setting, str) and setting != "balanced":
        raise TrainError(f"model.class_weight must be 'balanced' or null, got {setting!r}")
    weights = compute_class_weight(
        setting if isinstance(setting, str) else dict(setting),
        classes=np.arange(len(classes)),
        y=labels,
    ).tolist()
    log.info(
        "Loss weights per class: %s",
        ", ".join(f"{c}={w:.2f}" for c, w in zip(classes, weights, strict=True)),
    )
    return weights


def build_module(cfg: DictConfig, ctx: TrainContext, rows: FoldRows, seed: int) -> StageClassifier:
    """``conf/model`` with the sized network, the fold's class weights and the augmentation."""
    classes = [str(c) for c in cfg.data.classes]
    augment = instantiate(cfg.augment, _convert_="all") if cfg.get("augment") else None
    return instantiate(
        cfg.model,
        net=build_model(ctx.network),
        classes=classes,
        slice_mode=str(cfg.data.slice_mode),
        class_weight=class_weight(cfg.model.get("class_weight"), ctx.labels[rows.train], classes),
        augment=augment,
        seed=seed,
        _convert_="all",
    )


def build_datamodule(
    cfg: DictConfig, ctx: TrainContext, rows: FoldRows, seed: int
) -> L.LightningDataModule:
    """``conf/datamodule`` over the cache, for this fold's rows."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    return instantiate(
        cfg.datamodule,
        images_path=ctx.cohort.directory / IMAGES,
        labels=ctx.labels,
        train_rows=rows.train,
        val_rows=rows.val,
        num_workers=data_workers(cfg.datamodule.num_workers, accelerator),
        seed=seed,
        pin_memory=uses_cuda(accelerator),
        _convert_="all",
    )


def _best_score(checkpoints: CheckpointCallbacks, lightning_ckpt: dict[str, Any]) -> float:
    """``ModelCheckpoint.best_model_score``; under ``ddp_spawn`` the parent process gets only the
    path back from the workers, so the score is read from the callback's state in the file."""
    assert checkpoints.best is not None
    score = checkpoints.best.best_model_score
    if score is None:
        states = lightning_ckpt.get("callbacks", {})
        score = next(
            (
                s["best_model_score"]
                for key, s in states.items()
                if str(key).startswith("ModelCheckpoint")
                and s.get("monitor") == checkpoints.monitor
            ),
            None,
        )
    if score is None:
        raise TrainError(f"The best checkpoint holds no {checkpoints.monitor} score.")
    return float(score)


def fold_entry(
    checkpoints: CheckpointCallbacks, history: pd.DataFrame, rows: FoldRows
) -> FoldEntry:
    """The fold's entry: the kept checkpoint's weights (best or last epoch), its epoch, and the
    validation metrics of that epoch."""
    model_path = checkpoints.model_path
    if not model_path.is_file():
        raise TrainError(
            f"No {model_path} after training: "
            + (
                f"validation never produced {checkpoints.monitor} (check that the validation "
                "subjects are not empty)."
                if checkpoints.monitor
                else "no epoch finished."
            )
        )
    lightning_ckpt = torch.load(model_path, map_location="cpu", weights_only=True)
    state = {
        k.removeprefix("net."): v.contiguous()
        for k, v in lightning_ckpt["state_dict"].items()
        if k.startswith("net.")
    }
    kept_epoch = int(lightning_ckpt["epoch"])
    row = history.loc[history["epoch"] == kept_epoch]
    metrics = (
        {}
        if row.empty
        else {k: float(v) for k, v in row.iloc[0].items() if str(k).startswith("val_")}
    )
    if checkpoints.monitor:
        metrics[column_name(checkpoints.monitor)] = _best_score(checkpoints, lightning_ckpt)
    return FoldEntry(
        state_dict=state,
        train_subjects=tuple(rows.train_ids),
        val_subjects=tuple(rows.val_ids),
        best_epoch=kept_epoch,
        epochs_trained=int(history["epoch"].max()) + 1,
        val_metrics=metrics,
    )


def train_fold(cfg: DictConfig, ctx: TrainContext, fold: int) -> FoldEntry | None:
    """Train (or, when resuming a finished fold, reload) one fold; ``None`` on other DDP ranks."""
    fdir = ctx.fold_dir(fold)
    result_path = fdir / "checkpoints" / FOLD_RESULT
    if ctx.resume and result_path.is_file():
        log.info("Fold %d finished before the interruption; reusing %s", fold, result_path)
        return load_fold_entry(result_path)

    seed = int(cfg.seed) + fold
    L.seed_everything(seed, workers=True, verbose=False)
    rows = fold_rows(ctx, fold)
    module = build_module(cfg, ctx, rows, seed)
    datamodule = build_datamodule(cfg, ctx, rows, seed)
    callbacks = build_callbacks(cfg.callbacks, fdir / "checkpoints")
    checkpoints = checkpoint_callbacks(callbacks)
    callbacks.append(InterruptNotice(checkpoints.last_path, ctx.resume_command))
    loggers = build_loggers(cfg.logger, fdir)
    trainer = build_trainer(cfg.trainer, fold_dir=fdir, callbacks=callbacks, loggers=loggers)
    resume_from = checkpoints.last_path if ctx.resume and checkpoints.last_path.is_file() else None
    if ctx.n_folds > 1:
        log.info("Training fold %d of %d", fold, ctx.n_folds)
    if resume_from:
        log.info("Resuming from %s", resume_from)
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None)
    if not trainer.is_global_zero:
        return None
    history = epoch_table(csv_logger_dir(loggers))
    write_csv(fdir / METRICS_FILE, history)
    entry = fold_entry(checkpoints, history, rows)
    save_fold_entry(result_path, entry)
    return entry
