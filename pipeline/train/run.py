"""One training run: cache -> subject split -> one model per fold -> ``checkpoints/best.pt``.

The run folder (``hydra.run.dir``) ends up holding:

- ``config.yaml`` (resolved config; Hydra's ``.hydra/`` is there too), ``pip_freeze.txt``
- ``split.csv`` (``subject_id``, ``fold``, ``role``)
- ``metrics.csv`` (one row per epoch, with a ``fold`` column for k-fold) and ``training_curves.png``
- ``checkpoints/best.pt`` (:mod:`pipeline.checkpoint`; one entry in ``folds`` per trained model)
- Lightning's ``checkpoints/{best,last}.ckpt`` and ``logs/{csv,tensorboard}/`` -- under
  ``fold_<i>/`` for each fold when ``split.folds`` > 1 (logs: one ``version_<n>`` per (re)start)
- ``summary.json`` (per fold: the kept epoch, its validation metrics and how optimistic its
  score is; the decision rule with its cross-fitted validation scores)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra.utils import get_class, instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from pipeline.cache import IMAGES, MANIFEST, PreprocessedCohort
from pipeline.checkpoint import BEST_PT, Checkpoint, FoldEntry, build_model, save_checkpoint
from pipeline.config import to_container
from pipeline.decision import DecisionRule, crossfit_scores
from pipeline.inference import predict_probabilities
from pipeline.models import input_channels, network_config
from pipeline.provenance import package_versions, write_pip_freeze
from pipeline.train.cohort import (
    ClassCounts,
    check_finite,
    class_indices,
    count_classes,
    open_training_cohort,
)
from pipeline.train.errors import TrainError
from pipeline.train.fold import TrainContext, fold_rows, train_fold
from pipeline.train.history import METRICS_FILE, selection
from pipeline.train.plots import plot_training_curves
from pipeline.train.splits import (
    fold_subjects,
    make_split,
    read_split,
    shuffle_subject_labels,
    subject_labels,
    validate_split,
    write_split,
)
from pipeline.train.trainer import is_rank_zero
from pipeline.utils.atomic import write_csv, write_json, write_text

log = logging.getLogger(__name__)

SPLIT_FILE = "split.csv"


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced (``None`` fields on non-zero DDP ranks)."""

    run_dir: Path
    checkpoint: Path | None
    folds: list[dict[str, Any]]
    decision: dict[str, Any] | None = None

    @property
    def mean_val_bal_acc(self) -> float | None:
        """Mean over folds of the saved models' validation balanced accuracy."""
        values = [f["val_metrics"].get("val_bal_acc") for f in self.folds if f.get("val_metrics")]
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None


def _has_training_state(run_dir: Path) -> bool:
    places = [run_dir / "checkpoints", *run_dir.glob("fold_*/checkpoints")]
    return any(p.is_dir() and any(p.iterdir()) for p in places)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def _config_tree(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]


def _warn_config_changes(run_dir: Path, cfg: DictConfig) -> None:
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return
    saved = _flatten(OmegaConf.to_container(OmegaConf.load(saved_path)))
    current = _flatten(_config_tree(cfg))
    changed = sorted(
        k
        for k in saved.keys() | current.keys()
        if saved.get(k) != current.get(k) and k != "train.resume"
    )
    if changed:
        log.warning(
            "Resuming with settings that differ from the interrupted run: %s", ", ".join(changed)
        )


def _command(overrides: Sequence[str], *extra: str) -> str:
    dropped = ("hydra.run.dir=", "train.resume=")
    kept = [o for o in overrides if not o.startswith(dropped)]
    return " ".join(["python -m pipeline.train", *kept, *extra])


def _resolve_split(
    cfg: DictConfig, run_dir: Path, per_subject: pd.Series, classes: list[str], resume: bool
) -> pd.DataFrame:
    saved = run_dir / SPLIT_FILE
    if resume and saved.is_file():
        split, source = read_split(saved), str(saved)
    elif cfg.split.file:
        split, source = read_split(cfg.split.file), str(cfg.split.file)
    else:
        split = make_split(
            per_subject,
            classes,
            val_fraction=float(cfg.split.val_fraction),
            folds=int(cfg.split.folds),
            seed=int(cfg.seed),
        )
        source = "generated split"
    validate_split(split, per_subject, classes, source)
    return split


def _log_split(split: pd.DataFrame, per_subject: pd.Series, classes: list[str]) -> None:
    for fold in sorted(split["fold"].astype(int).unique()):
        train_ids, val_ids = fold_subjects(split, fold)
        parts = []
        for role, ids in (("train", train_ids), ("val", val_ids)):
            counts = np.bincount(per_subject.loc[ids].to_numpy(), minlength=len(classes))
            parts.append(
                f"{role} {len(ids)} ("
                + ", ".join(f"{c}={n}" for c, n in zip(classes, counts, strict=True))
                + ")"
            )
        log.info("Fold %d subjects: %s", fold, "; ".join(parts))


@rank_zero_only
def _write_run_files(run_dir: Path, cfg: DictConfig, split: pd.DataFrame, resume: bool) -> None:
    write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(_config_tree(cfg))))
    write_split(run_dir / SPLIT_FILE, split)
    if not (resume and (run_dir / "pip_freeze.txt").is_file()):
        write_pip_freeze(run_dir)


def check_run_folder(run_dir: Path, cfg: DictConfig) -> None:
    """A fresh run needs an empty folder, a resume one with checkpoints (rank 0 checks)."""
    if not is_rank_zero():
        return
    resume = bool(cfg.train.resume)
    if resume and not _has_training_state(run_dir):
        raise TrainError(
            f"train.resume=true but {run_dir} holds no checkpoints to resume. "
            "Pass the interrupted run's folder: hydra.run.dir=<run folder> train.resume=true"
        )
    if not resume and _has_training_state(run_dir):
        raise TrainError(
            f"{run_dir} already holds a training run. Add train.resume=true to continue it, or "
            "choose another hydra.run.dir."
        )
    if resume:
        _warn_config_changes(run_dir, cfg)


@dataclass(frozen=True)
class LabelledCohort:
    """The training cache with a class index per row and the per-subject label that stratifies."""

    cohort: PreprocessedCohort
    labels: np.ndarray
    per_subject: pd.Series
    counts: ClassCounts


def labelled_cohort(cfg: DictConfig, overrides: Sequence[str]) -> LabelledCohort:
    """Open the cache (recipe checked), check labels and pixels, permute for the leakage check."""
    cohort = open_training_cohort(cfg, overrides)
    classes = [str(c) for c in cfg.data.classes]
    labels = class_indices(cohort.manifest, classes, str(cohort.directory / MANIFEST))
    if cfg.train.check_finite:
        check_finite(cohort.images, cohort.manifest, str(cohort.directory / IMAGES))
    subject_ids = cohort.manifest["subject_id"].astype(str)
    per_subject = subject_labels(subject_ids, labels)
    if cfg.train.shuffle_labels:
        per_subject = shuffle_subject_labels(per_subject, int(cfg.seed))
        labels = per_subject.loc[subject_ids].to_numpy(dtype=np.int64)
        log.warning(
            "train.shuffle_labels=true: subject labels are permuted (leakage check). Validation "
            "balanced accuracy should land near chance (%.2f); this model is not for use.",
            1 / len(classes),
        )
    counts = count_classes(subject_ids.tolist(), labels, classes)
    return LabelledCohort(cohort, labels, per_subject, counts)


def log_cohort(cfg: DictConfig, data: LabelledCohort) -> None:
    """The class table, and what corrects for imbalance."""
    counts = data.counts
    log.info(
        "Cohort %s (%d rows, images %s):\n%s",
        cfg.data.name,
        len(data.cohort),
        tuple(data.cohort.images.shape),
        counts.table(),
    )
    sampler = get_class(cfg.datamodule.sampler._target_)
    balanced_sampler = bool(getattr(sampler, "balances_classes", False))
    imbalance = max(counts.subjects) / max(1, min(counts.subjects))
    if imbalance > 1.5:
        log.info(
            "Classes are imbalanced (largest/smallest = %.1f); handled by model.class_weight=%s, "
            "sampler %s.",
            imbalance,
            cfg.model.get("class_weight"),
            sampler.__name__,
        )
    if cfg.model.get("class_weight") is not None and balanced_sampler:
        log.warning(
            "model.class_weight and sampler=balanced both correct for class imbalance; use one."
        )


def train_context(
    cfg: DictConfig, run_dir: Path, data: LabelledCohort, overrides: Sequence[str]
) -> TrainContext:
    """The split (made, reused or read back) and what every fold shares."""
    classes = [str(c) for c in cfg.data.classes]
    resume = bool(cfg.train.resume)
    split = _resolve_split(cfg, run_dir, data.per_subject, classes, resume)
    _log_split(split, data.per_subject, classes)
    _write_run_files(run_dir, cfg, split, resume)
    n_slices = int(data.cohort.images.shape[1])
    network = network_config(
        to_container(cfg.model.net),
        to_container(cfg.head) if cfg.get("head") else None,
        input_channels(str(cfg.data.slice_mode), n_slices),
        len(classes),
    )
    return TrainContext(
        cohort=data.cohort,
        labels=data.labels,
        split=split,
        run_dir=run_dir,
        network=network,
        resume=resume,
        resume_command=_command(overrides, f"hydra.run.dir={run_dir}", "train.resume=true"),
    )


@dataclass(frozen=True)
class FittedDecision:
    """The run's decision rule and its validation balanced accuracy (``argmax``, ``fitted`` on
    all validation rows, ``crossfit``: each fold's rows decided by the rule fitted on the other
    folds; see :func:`pipeline.decision.crossfit_scores`)."""

    rule: DecisionRule
    scores: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.describe(),
            "params": self.rule.to_dict(),
            "val_bal_acc": {k: round(v, 4) for k, v in self.scores.items()},
        }


def fit_decision_rule(
    cfg: DictConfig, ctx: TrainContext, folds: Sequence[FoldEntry]
) -> FittedDecision:
    """``conf/decision`` fitted on the validation subjects: each fold's model on its own ones
    (out-of-fold predictions for k-fold), the rows' class indices as truth."""
    rule = instantiate(cfg.decision, _convert_="all")
    probs, labels, groups = [], [], []
    for fold, entry in enumerate(folds):
        model = build_model(ctx.network)
        model.load_state_dict(entry.state_dict)
        rows = fold_rows(ctx, fold).val
        probs.append(
            predict_probabilities(
                model, ctx.cohort.images[rows], str(cfg.data.slice_mode), device="cpu"
            )
        )
        labels.append(ctx.labels[rows])
        groups.append(np.full(len(rows), fold))
    probs_all, labels_all, groups_all = map(np.concatenate, (probs, labels, groups))
    fitted = rule.fit(probs_all, labels_all, groups_all)
    scores = crossfit_scores(rule, probs_all, labels_all, groups_all, fitted=fitted)
    log.info(
        "Decision rule: %s (validation balanced accuracy: argmax %.3f, this rule cross-fitted "
        "%.3f)",
        fitted.describe(),
        scores["argmax"],
        scores["crossfit"],
    )
    return FittedDecision(fitted, scores)


def build_checkpoint(
    cfg: DictConfig, ctx: TrainContext, folds: Sequence[FoldEntry], decision: DecisionRule
) -> Checkpoint:
    """The ``best.pt`` of the run."""
    return Checkpoint(
        classes=tuple(str(c) for c in cfg.data.classes),
        network=ctx.network,
        slice_mode=str(cfg.data.slice_mode),
        recipe=ctx.cohort.recipe,
        recipe_hash=ctx.cohort.recipe_hash,
        folds=tuple(folds),
        decision=decision,
        train_config=_config_tree(cfg),
        data_name=str(cfg.data.name),
        versions=package_versions(),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        shuffle_labels=bool(cfg.train.shuffle_labels),
    )


def write_history(ctx: TrainContext, folds: Sequence[FoldEntry]) -> None:
    """The run's ``metrics.csv`` (all folds, with a ``fold`` column for k-fold) and curves."""
    frames = []
    for fold in range(ctx.n_folds):
        path = ctx.fold_dir(fold) / "metrics.csv"
        if path.is_file():
            frames.append(pd.read_csv(path).assign(fold=fold))
    if not frames:
        return
    history = pd.concat(frames, ignore_index=True)
    if ctx.n_folds > 1:
        write_csv(ctx.run_dir / "metrics.csv", history)
    plot_training_curves(
        history,
        ctx.run_dir / "training_curves.png",
        {i: f.best_epoch for i, f in enumerate(folds)},
    )


def fold_summaries(ctx: TrainContext, folds: Sequence[FoldEntry]) -> list[dict[str, Any]]:
    """Each fold's entry summary and the :class:`~pipeline.train.history.Selection` of its kept
    epoch on its validation curve."""
    out = []
    for i, entry in enumerate(folds):
        path = ctx.fold_dir(i) / METRICS_FILE
        chosen = selection(pd.read_csv(path), entry.best_epoch) if path.is_file() else None
        out.append(
            {"fold": i, **entry.summary(), "selection": chosen.to_dict() if chosen else None}
        )
    return out


def write_summary(
    cfg: DictConfig,
    ctx: TrainContext,
    data: LabelledCohort,
    best_path: Path,
    folds: Sequence[FoldEntry],
    decision: FittedDecision,
    seconds: float,
) -> TrainResult:
    """``summary.json``: class counts, each fold's kept epoch, validation scores and selection
    optimism, the decision rule and its validation scores, time."""
    classes = [str(c) for c in cfg.data.classes]
    summary = fold_summaries(ctx, folds)
    optimism = [f["selection"]["optimism"] for f in summary if f["selection"]]
    result = TrainResult(
        run_dir=ctx.run_dir, checkpoint=best_path, folds=summary, decision=decision.to_dict()
    )
    write_json(
        ctx.run_dir / "summary.json",
        {
            "data_name": str(cfg.data.name),
            "classes": classes,
            "class_counts": {
                "subjects": dict(zip(classes, data.counts.subjects, strict=True)),
                "sessions": dict(zip(classes, data.counts.rows, strict=True)),
            },
            "shuffle_labels": bool(cfg.train.shuffle_labels),
            "folds": summary,
            "mean_val_bal_acc": result.mean_val_bal_acc,
            "selection_optimism": round(float(np.mean(optimism)), 4) if optimism else None,
            "decision": decision.to_dict(),
            "checkpoint": str(best_path),
            "seconds": round(seconds, 1),
        },
    )
    return result


def train(
    cfg: DictConfig, run_dir: str | Path, command_overrides: Sequence[str] = ()
) -> TrainResult:
    """Train on ``${paths.cache}/${data.name}`` and write the run folder ``run_dir``.

    ``command_overrides`` are the command-line overrides of this run; they go into the printed
    resume and preprocess commands.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    check_run_folder(run_dir, cfg)
    data = labelled_cohort(cfg, command_overrides)
    log_cohort(cfg, data)
    ctx = train_context(cfg, run_dir, data, command_overrides)
    entries = [train_fold(cfg, ctx, fold) for fold in range(ctx.n_folds)]
    if not is_rank_zero() or any(e is None for e in entries):
        return TrainResult(run_dir=run_dir, checkpoint=None, folds=[])
    folds = [e for e in entries if e is not None]
    decision = fit_decision_rule(cfg, ctx, folds)
    best_path = save_checkpoint(
        run_dir / "checkpoints" / BEST_PT, build_checkpoint(cfg, ctx, folds, decision.rule)
    )
    write_history(ctx, folds)
    seconds = time.perf_counter() - started
    return write_summary(cfg, ctx, data, best_path, folds, decision, seconds)
