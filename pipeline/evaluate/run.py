"""Evaluate a checkpoint on a held-out cohort and write the report folder.

The steps, each in its own module: open (or build) the cohort's cache with the checkpoint's
recipe and refuse leaked subjects (:mod:`.cohort`), predict with the fold ensemble
(:mod:`pipeline.inference`), score (:mod:`.metrics`, :mod:`.bootstrap`, :mod:`.calibration`),
explain (:mod:`.explain`), then write files (:mod:`.outputs`, :mod:`.plots`, :mod:`.report`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from pipeline.checkpoint import build_models, load_checkpoint
from pipeline.config import config_hash, to_container
from pipeline.evaluate import plots
from pipeline.evaluate.bootstrap import bootstrap_intervals
from pipeline.evaluate.calibration import reliability_table
from pipeline.evaluate.cohort import check_overlap, prepare_cohort
from pipeline.evaluate.errors import EvaluationError
from pipeline.evaluate.explain import Explanation, explain_cases, select_cases
from pipeline.evaluate.metrics import compute_metrics
from pipeline.evaluate.model_info import (
    SHUFFLED_LABELS_WARNING,
    checkpoint_file,
    model_summary,
    pick_device,
)
from pipeline.evaluate.outputs import METRICS_JSON, write_metrics_json, write_tables
from pipeline.evaluate.predictions import predictions_table, split_labelled
from pipeline.evaluate.report import (
    REPORT_HTML,
    ReportContent,
    ReportFigure,
    console_summary,
    write_report,
)
from pipeline.inference import ensemble_probabilities
from pipeline.provenance import package_versions, write_pip_freeze
from pipeline.utils.atomic import write_text

logger = logging.getLogger(__name__)

#: Keys of a fold's own metrics kept in ``folds`` (the ensemble has the full set).
FOLD_KEYS = (
    "accuracy",
    "balanced_accuracy",
    "auc_macro",
    "kappa",
    "kappa_quadratic",
    "mcc",
    "ece",
    "confusion_matrix",
    "per_class",
)


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate` produced."""

    out_dir: Path
    metrics: dict[str, Any]
    predictions: pd.DataFrame
    report: Path


def cohort_counts(table: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Cases per label (rows, classes first) and site (columns), with totals."""
    site = table["site"].replace("", "(unknown)") if "site" in table else "(all)"
    counts = pd.crosstab(
        table["label"].replace("", "(no label)"), site, margins=True, margins_name="Total"
    )
    order = [c for c in classes if c in counts.index]
    order += [r for r in counts.index if r not in order and r != "Total"] + ["Total"]
    counts = counts.reindex(order)
    counts.index.name, counts.columns.name = "label", "site"
    return counts


def per_site_metrics(
    scored: pd.DataFrame, y: np.ndarray, probs: np.ndarray, classes: list[str], ece_bins: int
) -> dict[str, dict[str, Any]]:
    """Accuracy and balanced accuracy per acquisition site, when the cohort has several."""
    if "site" not in scored or scored["site"].nunique() < 2:
        return {}
    out = {}
    for site, rows in scored.groupby("site", sort=True).indices.items():
        m = compute_metrics(y[rows], probs[rows], classes, ece_bins)
        out[str(site) or "(unknown)"] = {
            "n_subjects": int(scored["subject_id"].iloc[rows].nunique()),
            "n_samples": len(rows),
            "accuracy": m["accuracy"],
            "balanced_accuracy": m["balanced_accuracy"],
            "auc_macro": m["auc_macro"],
        }
    return out


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text) or "x"


def write_explanations(out_dir: Path, explanations: list[Explanation]) -> list[ReportFigure]:
    """One PNG per explained case under ``explain/``; returns them as report figures."""
    figures = []
    for i, e in enumerate(explanations):
        verdict = "right" if e.correct else "wrong"
        path = out_dir / "explain" / f"{i:02d}_{_safe_name(e.label)}_{verdict}.png"
        plots.plot_explanation(e, path)
        session = f" / {e.session_id}" if e.session_id else ""
        caption = (
            f"{e.subject_id}{session}: true {e.label}, predicted {e.predicted} "
            f"(p = {e.probability:.2f}, {verdict})"
        )
        figures.append(ReportFigure(title=caption, path=path, caption=caption))
    return figures


def score(
    y: np.ndarray,
    probs: np.ndarray,
    fold_probs: list[np.ndarray],
    scored: pd.DataFrame,
    classes: list[str],
    settings: DictConfig,
) -> dict[str, Any]:
    """Point metrics, subject-bootstrap intervals, and each fold's own metrics (k-fold only)."""
    ece_bins = int(settings.ece_bins)
    boot = settings.bootstrap
    metrics = compute_metrics(y, probs, classes, ece_bins)
    metrics["ci"] = bootstrap_intervals(
        y,
        probs,
        scored["subject_id"].tolist(),
        classes,
        resamples=int(boot.resamples),
        seed=int(boot.seed),
        level=float(boot.level),
        ece_bins=ece_bins,
    )
    metrics["folds"] = []
    if len(fold_probs) > 1:
        for i, fp in enumerate(fold_probs):
            fold_metrics = compute_metrics(y, fp, classes, ece_bins)
            metrics["folds"].append({"fold": i, **{k: fold_metrics[k] for k in FOLD_KEYS}})
    return metrics


def write_figures(
    out: Path,
    metrics: dict[str, Any],
    y: np.ndarray,
    probs: np.ndarray,
    reliability: pd.DataFrame,
) -> list[ReportFigure]:
    """The report's standard pictures: confusion matrices, ROC curves, reliability diagram."""
    classes = metrics["classes"]
    return [
        ReportFigure(
            "Confusion matrix (counts)",
            plots.plot_confusion_matrix(
                metrics["confusion_matrix"], classes, out / "confusion_matrix.png"
            ),
            "Rows: true class; columns: predicted class.",
        ),
        ReportFigure(
            "Confusion matrix (row-normalized)",
            plots.plot_confusion_matrix(
                metrics["confusion_matrix_normalized"],
                classes,
                out / "confusion_matrix_normalized.png",
                normalized=True,
            ),
            "Each row sums to 1: the diagonal is each class's sensitivity.",
        ),
        ReportFigure(
            "ROC curves",
            plots.plot_roc_curves(y, probs, classes, out / "roc_curves.png"),
            "One class against the rest, from the ensemble's probabilities.",
        ),
        ReportFigure(
            "Reliability diagram",
            plots.plot_reliability_diagram(
                reliability, metrics["ece"], out / "reliability_diagram.png"
            ),
            "Bars below the diagonal: over-confident; above: under-confident.",
        ),
    ]


def evaluate(
    cfg: DictConfig, out_dir: str | Path, log: Callable[[str], None] = logger.info
) -> EvaluationResult:
    """Run the whole evaluation described by ``cfg`` (conf/evaluate.yaml) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = cfg.evaluate
    ckpt_path = checkpoint_file(cfg.checkpoint)
    ckpt = load_checkpoint(ckpt_path)
    classes = [str(c) for c in ckpt["classes"]]
    slice_mode = str(ckpt["slice_mode"])

    if ckpt.get("shuffle_labels"):
        log(SHUFFLED_LABELS_WARNING)
    cohort = prepare_cohort(cfg, ckpt, log=log)
    allow_overlap = bool(settings.allow_overlap)
    overlap = check_overlap(cohort.manifest["subject_id"], ckpt, allow_overlap)
    if overlap:
        log(
            f"WARNING: {len(overlap)} subject(s) overlap the training data; metrics are optimistic."
        )

    device = pick_device(settings.get("device"))
    models = build_models(ckpt, device)
    log(f"Predicting {len(cohort)} case(s) with {len(models)} model(s) on {device}.")
    probs, fold_probs = ensemble_probabilities(
        models, cohort.images, slice_mode, int(settings.batch_size), device
    )
    table = predictions_table(cohort.manifest, probs, classes, fold_probs)
    mask, y, excluded = split_labelled(table, classes)
    if not mask.any():
        raise EvaluationError(
            f"No case of {cohort.directory} has a label among the model's classes {classes}; "
            "for an unlabelled cohort use `python -m pipeline.predict`."
        )
    if len(excluded):
        log(f"{len(excluded)} case(s) not scored (listed in the report and excluded.csv).")
    scored = table[mask]
    scored_probs = probs[mask]
    ece_bins = int(settings.ece_bins)

    scores = score(y, scored_probs, [fp[mask] for fp in fold_probs], scored, classes, settings)
    for fold, best in zip(scores["folds"], ckpt["folds"], strict=False):
        fold["best_epoch"] = best.get("best_epoch")
    rejected = cohort.rejected
    metrics: dict[str, Any] = {
        "classes": classes,
        "n_subjects": int(scored["subject_id"].nunique()),
        **{k: v for k, v in scores.items() if k != "classes"},
        "by_site": per_site_metrics(
            scored.reset_index(drop=True), y, scored_probs, classes, ece_bins
        ),
        "cohort": {
            "name": str(cfg.data.name),
            "cache": str(cohort.directory),
            "n_cases": len(table),
            "n_scored": int(mask.sum()),
            "n_excluded": len(excluded),
            "n_rejected": len(rejected),
            "rejected_by_level": rejected["level"].value_counts().to_dict()
            if "level" in rejected
            else {},
            "counts": {name: int((scored["label"] == name).sum()) for name in classes},
        },
        "model": model_summary(ckpt, ckpt_path),
        "config_hash": config_hash(cfg),
        "preprocessing_hash": cohort.preprocessing_hash,
        "allow_overlap": allow_overlap,
        "overlap": bool(overlap),
        "overlap_subjects": overlap,
        "versions": package_versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }

    reliability = reliability_table(scored_probs, y, ece_bins)
    write_metrics_json(out / METRICS_JSON, metrics)
    write_tables(out, metrics, table, reliability, excluded)
    figures = write_figures(out, metrics, y, scored_probs, reliability)

    explain = settings.explain
    explanation_figures: list[ReportFigure] = []
    if explain.enabled and int(explain.per_class) > 0:
        cases = select_cases(scored, classes, int(explain.per_class))
        log(f"Explaining {len(cases)} case(s) (Grad-CAM / occlusion).")
        explanations = explain_cases(
            models, cohort.images, cases, classes, slice_mode, to_container(explain), device
        )
        explanation_figures = write_explanations(out, explanations)

    report_path = write_report(
        out / REPORT_HTML,
        ReportContent(
            metrics=metrics,
            cohort_counts=cohort_counts(table, classes),
            figures=figures,
            explanations=explanation_figures,
            rejected=rejected,
            excluded=excluded,
        ),
    )
    write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    write_pip_freeze(out)
    print(console_summary(metrics))
    print(f"\nReport: {report_path}")
    return EvaluationResult(out_dir=out, metrics=metrics, predictions=table, report=report_path)
