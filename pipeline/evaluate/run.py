"""Evaluate a checkpoint on a held-out cohort and write the report folder.

The checkpoint is applied by :func:`pipeline.apply.apply_checkpoint` (the cohort's cache made with
the checkpoint's recipe, leaked subjects refused before any model runs, the fold ensemble, the
checkpoint's decision rule); this module adds the scores (:mod:`.metrics`, :mod:`.bootstrap`,
:mod:`.calibration`), the explanations (:mod:`.explain`) and the files (:mod:`.outputs`,
:mod:`.plots`, :mod:`.report`).
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

from pipeline.apply import Admit, Applied, apply_checkpoint, check_overlap
from pipeline.apply.model_info import model_summary
from pipeline.cache import PreprocessedCohort, split_unlabelled
from pipeline.checkpoint import Checkpoint
from pipeline.config import config_hash, to_container
from pipeline.evaluate import plots
from pipeline.evaluate.bootstrap import bootstrap_intervals
from pipeline.evaluate.calibration import reliability_table
from pipeline.evaluate.errors import EvaluationError
from pipeline.evaluate.explain import Explanation, explain_cases, select_cases
from pipeline.evaluate.labelled import split_labelled
from pipeline.evaluate.metrics import compute_metrics
from pipeline.evaluate.outputs import METRICS_JSON, write_tables
from pipeline.evaluate.report import (
    REPORT_HTML,
    ReportContent,
    ReportFigure,
    console_summary,
    write_report,
)
from pipeline.provenance import package_versions, write_pip_freeze
from pipeline.utils.atomic import write_text
from pipeline.utils.jsonable import write_strict_json

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


@dataclass(frozen=True)
class ScoredCases:
    """The cases with a label among the model's classes, and what the models said about them.

    Attributes:
        table: their rows of the predictions table.
        y: true class index ``(n,)``.
        probs: the decision rule's probabilities ``(n, K)``.
        predicted: the decision rule's class index ``(n,)``.
        fold_probs: each fold model's own probabilities ``(n, K)`` (k-fold checkpoints).
        excluded: the other cases, with the reason each is not scored.
    """

    table: pd.DataFrame
    y: np.ndarray
    probs: np.ndarray
    predicted: np.ndarray
    fold_probs: list[np.ndarray]
    excluded: pd.DataFrame


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


def per_site_metrics(cases: ScoredCases, classes: list[str], ece_bins: int) -> dict[str, Any]:
    """Accuracy and balanced accuracy per acquisition site, when the cohort has several."""
    scored = cases.table.reset_index(drop=True)
    if "site" not in scored or scored["site"].nunique() < 2:
        return {}
    out = {}
    for site, rows in scored.groupby("site", sort=True).indices.items():
        m = compute_metrics(
            cases.y[rows], cases.probs[rows], classes, ece_bins, y_pred=cases.predicted[rows]
        )
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
    cases: ScoredCases, ckpt: Checkpoint, classes: list[str], settings: DictConfig
) -> dict[str, Any]:
    """Point metrics, subject-bootstrap intervals, and each fold's own metrics (k-fold only).

    A fold's own numbers use the checkpoint's decision rule on that fold's probabilities.
    """
    ece_bins = int(settings.ece_bins)
    boot = settings.bootstrap
    metrics = compute_metrics(cases.y, cases.probs, classes, ece_bins, y_pred=cases.predicted)
    metrics["ci"] = bootstrap_intervals(
        cases.y,
        cases.probs,
        cases.table["subject_id"].tolist(),
        classes,
        resamples=int(boot.resamples),
        seed=int(boot.seed),
        level=float(boot.level),
        ece_bins=ece_bins,
        y_pred=cases.predicted,
    )
    metrics["folds"] = []
    if len(cases.fold_probs) > 1:
        for i, (fp, entry) in enumerate(zip(cases.fold_probs, ckpt.folds, strict=True)):
            decision = ckpt.decision.apply(fp)
            fold_metrics = compute_metrics(
                cases.y, decision.probabilities, classes, ece_bins, y_pred=decision.predicted
            )
            metrics["folds"].append(
                {
                    "fold": i,
                    **{k: fold_metrics[k] for k in FOLD_KEYS},
                    "best_epoch": entry.best_epoch,
                }
            )
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


def overlap_guard(allow_overlap: bool, log: Callable[[str], None]) -> Admit:
    """Refuse (or, with ``allow_overlap``, flag) a cohort that shares subjects with training."""

    def admit(ckpt: Checkpoint, cohort: PreprocessedCohort) -> None:
        overlap = check_overlap(cohort.manifest["subject_id"], ckpt, allow_overlap)
        if overlap:
            log(
                f"WARNING: {len(overlap)} subject(s) overlap the training data; "
                "metrics are optimistic."
            )

    return admit


def scored_cases(applied: Applied, log: Callable[[str], None]) -> ScoredCases:
    """The labelled cases of the applied cohort; an unlabelled cohort is an error."""
    mask, y, excluded = split_labelled(applied.table, applied.classes)
    if not mask.any():
        raise EvaluationError(
            f"No case of {applied.cohort.directory} has a label among the model's classes "
            f"{applied.classes}; for an unlabelled cohort use `python -m pipeline.predict`."
        )
    if len(excluded):
        log(f"{len(excluded)} case(s) not scored (listed in the report and excluded.csv).")
    return ScoredCases(
        table=applied.table[mask],
        y=y,
        probs=applied.decision.probabilities[mask],
        predicted=applied.decision.predicted[mask],
        fold_probs=[fp[mask] for fp in applied.fold_probabilities],
        excluded=excluded,
    )


def cohort_block(cfg: DictConfig, applied: Applied, cases: ScoredCases) -> dict[str, Any]:
    """The ``cohort`` block of metrics.json: which cache, what was scored, what was rejected."""
    rejected, unlabelled = split_unlabelled(applied.cohort.rejected)
    return {
        "name": str(cfg.data.name),
        "cache": str(applied.cohort.directory),
        "n_cases": len(applied.table),
        "n_scored": len(cases.table),
        "n_excluded": len(cases.excluded),
        "n_rejected": len(rejected),
        "n_unlabelled": len(unlabelled),  # folders without a label: listed, not rejections
        "rejected_by_level": rejected["level"].value_counts().to_dict()
        if "level" in rejected
        else {},
        "counts": {name: int((cases.table["label"] == name).sum()) for name in applied.classes},
    }


def assemble_metrics(cfg: DictConfig, applied: Applied, cases: ScoredCases) -> dict[str, Any]:
    """metrics.json: the scores, then where they come from (cohort, model, config, versions)."""
    settings = cfg.evaluate
    classes = applied.classes
    scores = score(cases, applied.checkpoint, classes, settings)
    seen = applied.table.loc[applied.table["seen_in_training"], "subject_id"]
    overlap = sorted(set(seen))
    return {
        "classes": classes,
        "n_subjects": int(cases.table["subject_id"].nunique()),
        **{k: v for k, v in scores.items() if k != "classes"},
        "by_site": per_site_metrics(cases, classes, int(settings.ece_bins)),
        "cohort": cohort_block(cfg, applied, cases),
        "model": model_summary(applied.checkpoint, applied.checkpoint_path),
        "config_hash": config_hash(cfg),
        "recipe_hash": applied.cohort.recipe_hash,
        "allow_overlap": bool(settings.allow_overlap),
        "overlap": bool(overlap),
        "overlap_subjects": overlap,
        "versions": package_versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def explanation_figures(
    settings: DictConfig,
    applied: Applied,
    cases: ScoredCases,
    out: Path,
    log: Callable[[str], None],
) -> list[ReportFigure]:
    """Grad-CAM and occlusion pictures of a few right and wrong cases per class."""
    explain = settings.explain
    if not explain.enabled or int(explain.per_class) <= 0:
        return []
    chosen = select_cases(cases.table, applied.classes, int(explain.per_class))
    log(f"Explaining {len(chosen)} case(s) (Grad-CAM / occlusion).")
    explanations = explain_cases(
        applied.models,
        applied.cohort.images,
        chosen,
        applied.classes,
        applied.checkpoint.slice_mode,
        to_container(explain),
        applied.device,
    )
    return write_explanations(out, explanations)


def evaluate(
    cfg: DictConfig, out_dir: str | Path, log: Callable[[str], None] = logger.info
) -> EvaluationResult:
    """Run the whole evaluation described by ``cfg`` (conf/evaluate.yaml) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = cfg.evaluate
    applied = apply_checkpoint(cfg, log, admit=overlap_guard(bool(settings.allow_overlap), log))
    cases = scored_cases(applied, log)
    metrics = assemble_metrics(cfg, applied, cases)

    reliability = reliability_table(cases.probs, cases.y, int(settings.ece_bins))
    write_strict_json(out / METRICS_JSON, metrics)
    write_tables(out, metrics, applied.table, reliability, cases.excluded)
    figures = write_figures(out, metrics, cases.y, cases.probs, reliability)
    report_path = write_report(
        out / REPORT_HTML,
        ReportContent(
            metrics=metrics,
            cohort_counts=cohort_counts(applied.table, applied.classes),
            figures=figures,
            explanations=explanation_figures(settings, applied, cases, out, log),
            rejected=applied.cohort.rejected,
            excluded=cases.excluded,
        ),
    )
    write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    write_pip_freeze(out)
    print(console_summary(metrics))
    print(f"\nReport: {report_path}")
    return EvaluationResult(
        out_dir=out, metrics=metrics, predictions=applied.table, report=report_path
    )
