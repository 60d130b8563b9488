"""Training one fold: the Lightning module, data, callbacks and trainer, and its ``best.pt`` entry.

A fold's folder (the run folder itself for a plain run, ``fold_<i>/`` for k-fold) holds
Lightning's ``checkpoints/best.ckpt`` (best ``val/bal_acc``) and ``checkpoints/last.ckpt`` (end of
the last finished epoch, for resuming), ``metrics.csv`` and ``logs/``. When the fold is done its
``best.pt`` entry is written to ``checkpoints/fold_result.pt``, so resuming a k-fold run skips it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig
from sklearn.utils.class_weight import compute_class_weight

from pipeline.cache import IMAGES, PreprocessedCohort
from pipeline.checkpoint import FoldEntry, build_model, load_fold_entry, save_fold_entry
from pipeline.train.callbacks import EpochHistory, InterruptNotice
from pipeline.train.data import CohortDataModule
from pipeline.train.errors import TrainError
from pipeline.train.module import StageClassifier
from pipeline.train.splits import fold_subjects, rows_of
from pipeline.train.trainer import build_trainer, data_workers, uses_cuda

log = logging.getLogger(__name__)

#: The metric that picks the saved model and stops training early.
MONITOR = "val/bal_acc"
FOLD_RESULT = "fold_result.pt"


def fold_dir(run_dir: Path, fold: int, n_folds: int) -> Path:
    """Where one fold's Lightning checkpoints, logs and metrics live."""
    return run_dir if n_folds == 1 else run_dir / f"fold_{fold}"


def fold_entry(fdir: Path, train_ids: list[str], val_ids: list[str]) -> FoldEntry:
    """The ``best.pt`` fold entry from the fold's best Lightning checkpoint and metrics.csv."""
    best_path = fdir / "checkpoints" / "best.ckpt"
    if not best_path.is_file():
        raise TrainError(
            f"No {best_path} after training: validation never produced {MONITOR} "
            "(check that the validation subjects are not empty)."
        )
    lightning_ckpt = torch.load(best_path, map_location="cpu", weights_only=True)
    state = {
        k.removeprefix("net."): v.contiguous()
        for k, v in lightning_ckpt["state_dict"].items()
        if k.startswith("net.")
    }
    best_epoch = int(lightning_ckpt["epoch"])
    history = pd.read_csv(fdir / "metrics.csv")
    row = history.loc[history["epoch"] == best_epoch]
    metrics = (
        {}
        if row.empty
        else {k: float(v) for k, v in row.iloc[0].items() if str(k).startswith("val_")}
    )
    return FoldEntry(
        state_dict=state,
        train_subjects=tuple(train_ids),
        val_subjects=tuple(val_ids),
        best_epoch=best_epoch,
        epochs_trained=int(history["epoch"].max()) + 1,
        val_metrics=metrics,
    )


def train_fold(
    cfg: DictConfig,
    *,
    cohort: PreprocessedCohort,
    labels: np.ndarray,
    split: pd.DataFrame,
    fold: int,
    n_folds: int,
    run_dir: Path,
    model_config: dict[str, Any],
    resume: bool,
    resume_command: str,
) -> FoldEntry | None:
    fdir = fold_dir(run_dir, fold, n_folds)
    ckpt_dir = fdir / "checkpoints"
    result_path = ckpt_dir / FOLD_RESULT
    if resume and result_path.is_file():
        log.info("Fold %d finished before the interruption; reusing %s", fold, result_path)
        return load_fold_entry(result_path)

    seed = int(cfg.seed) + fold
    L.seed_everything(seed, workers=True, verbose=False)
    train_ids, val_ids = fold_subjects(split, fold)
    subjects = cohort.manifest["subject_id"].astype(str)
    train_rows, val_rows = rows_of(train_ids, subjects), rows_of(val_ids, subjects)
    classes = list(cfg.data.classes)
    tc = cfg.train

    class_weights = None
    if tc.class_weights == "balanced":
        class_weights = compute_class_weight(
            "balanced", classes=np.arange(len(classes)), y=labels[train_rows]
        ).tolist()
        log.info(
            "Loss weights per class: %s",
            ", ".join(f"{c}={w:.2f}" for c, w in zip(classes, class_weights, strict=True)),
        )
    elif tc.class_weights not in (None, "none"):
        raise TrainError(
            f"train.class_weights must be 'balanced' or 'none', got {tc.class_weights!r}"
        )

    augment = instantiate(cfg.augment, _convert_="all") if cfg.get("augment") else None
    module = StageClassifier(
        build_model(model_config),
        classes,
        str(cfg.data.slice_mode),
        lr=float(tc.lr),
        weight_decay=float(tc.weight_decay),
        scheduler=str(tc.scheduler),
        warmup_epochs=float(tc.warmup_epochs),
        class_weights=class_weights,
        label_smoothing=float(tc.label_smoothing),
        augment=augment,
        seed=seed,
    )
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    datamodule = CohortDataModule(
        cohort.directory / IMAGES,
        labels,
        train_rows,
        val_rows,
        batch_size=int(tc.batch_size),
        sampler=str(tc.sampler),
        num_workers=data_workers(tc.num_workers, accelerator),
        seed=seed,
        pin_memory=uses_cuda(accelerator),
    )
    callbacks = [
        EpochHistory(fdir / "metrics.csv"),
        InterruptNotice(ckpt_dir / "last.ckpt", resume_command),
        LearningRateMonitor(logging_interval="epoch"),
        EarlyStopping(
            monitor=MONITOR,
            mode="max",
            patience=int(tc.early_stopping.patience),
            min_delta=float(tc.early_stopping.min_delta),
        ),
        # Both save at the end of the training epoch, after EpochHistory has recorded it.
        ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="best",
            monitor=MONITOR,
            mode="max",
            save_top_k=1,
            save_on_train_epoch_end=True,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        ),
        # A separate, unmonitored callback: Lightning 2.6's save_last=True only rewrites
        # last.ckpt in epochs that also improved the best model, which is no use for resuming.
        ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="last",
            save_top_k=1,
            save_on_train_epoch_end=True,
            enable_version_counter=False,
        ),
    ]
    trainer = build_trainer(cfg.trainer, fold_dir=fdir, callbacks=callbacks)
    last = ckpt_dir / "last.ckpt"
    ckpt_path = str(last) if resume and last.is_file() else None
    if n_folds > 1:
        log.info("Training fold %d of %d", fold, n_folds)
    if ckpt_path:
        log.info("Resuming from %s", ckpt_path)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    if not trainer.is_global_zero:
        return None
    entry = fold_entry(fdir, train_ids, val_ids)
    save_fold_entry(result_path, entry)
    return entry
