"""Metrics of a held-out cohort: scikit-learn point estimates and clinical one-vs-rest rates.

Conventions (they matter to reviewers, so they are fixed here once):

- Classes are indexed in ``classes`` order, which is also their ordinal order (CN < MCI < AD) for
  the quadratic-weighted kappa.
- A value whose denominator is zero is *undefined* (``NaN`` here, ``null`` in JSON), never a fake
  0: recall, F1 and AUC of a class absent from the cohort; precision (PPV) of a class the model
  never predicts; NPV of a class the model predicts for everyone. The reason is recorded.
- Macro averages are the plain mean over the classes where a value is defined; weighted
  averages weight by support (true count).
- MCC follows scikit-learn: 0 when it is undefined (a constant prediction carries no signal).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    matthews_corrcoef,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from pipeline.evaluate.calibration import expected_calibration_error

#: Keys of ``per_class.<class>`` in metrics.json (issue 5), in this order.
PER_CLASS_KEYS = (
    "precision",
    "recall",
    "sensitivity",
    "specificity",
    "npv",
    "f1",
    "auc",
    "support",
)
#: Per-class rates that are averaged into ``macro`` and ``weighted``.
AVERAGED_KEYS = ("precision", "recall", "specificity", "npv", "f1", "auc")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with NaN where ``den == 0`` (undefined), without warnings."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def one_vs_rest_counts(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """TP, FP, FN, TN per class of confusion matrices ``(..., K, K)``."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    fn = cm.sum(axis=-1) - tp
    fp = cm.sum(axis=-2) - tp
    tn = cm.sum(axis=(-2, -1))[..., None] - tp - fn - fp
    return tp, fp, fn, tn


def _kappa_from_confusion(cm: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Cohen's kappa with disagreement ``weights`` for confusion matrices ``(..., K, K)``."""
    total = cm.sum(axis=(-2, -1))
    expected = _ratio(
        cm.sum(axis=-1)[..., :, None] * cm.sum(axis=-2)[..., None, :], total[..., None, None]
    )
    observed_disagreement = (weights * cm).sum(axis=(-2, -1))
    expected_disagreement = (weights * np.nan_to_num(expected)).sum(axis=(-2, -1))
    return 1.0 - _ratio(observed_disagreement, expected_disagreement)


def confusion_rates(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Every confusion-matrix metric, vectorized over leading axes of ``cm`` ``(..., K, K)``.

    The bootstrap calls this on thousands of (weighted) resampled matrices at once; the tests
    check that on a single matrix it equals scikit-learn's functions. Per-class entries have a
    trailing class axis ``K``; the others have the leading shape of ``cm``.
    """
    cm = np.asarray(cm, dtype=np.float64)
    k = cm.shape[-1]
    tp, fp, fn, tn = one_vs_rest_counts(cm)
    support = tp + fn
    predicted = tp + fp
    total = cm.sum(axis=(-2, -1))
    recall = _ratio(tp, support)
    # F1 = 2TP / (2TP + FP + FN) as scikit-learn, but undefined for a class with no true cases:
    # its recall does not exist, so an F1 of 0 would be a fake number.
    f1 = np.where(support > 0, _ratio(2 * tp, 2 * tp + fp + fn), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: balanced accuracy undefined
        balanced = np.nanmean(recall, axis=-1)

    idx = np.arange(k, dtype=np.float64)
    quadratic = (idx[:, None] - idx[None, :]) ** 2
    nominal = 1.0 - np.eye(k)
    p_sum, t_sum = predicted, support
    cov_tp = np.trace(cm, axis1=-2, axis2=-1) * total - (t_sum * p_sum).sum(axis=-1)
    cov_pp = total**2 - (p_sum * p_sum).sum(axis=-1)
    cov_tt = total**2 - (t_sum * t_sum).sum(axis=-1)
    denom = cov_pp * cov_tt
    mcc = np.where(denom > 0, _ratio(cov_tp, np.sqrt(np.where(denom > 0, denom, 1.0))), 0.0)
    return {
        "accuracy": _ratio(np.trace(cm, axis1=-2, axis2=-1), total),
        "balanced_accuracy": balanced,
        "kappa": _kappa_from_confusion(cm, nominal),
        "kappa_quadratic": _kappa_from_confusion(cm, quadratic),
        "mcc": mcc,
        "precision": _ratio(tp, predicted),
        "recall": recall,
        "specificity": _ratio(tn, tn + fp),
        "npv": _ratio(tn, tn + fn),
        "f1": f1,
        "support": support,
    }


def one_vs_rest_auc(y_true: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """ROC AUC of each class against the rest (scikit-learn); NaN where a side has no cases."""
    y_true = np.asarray(y_true)
    aucs = np.full(probs.shape[1], np.nan)
    for c in range(probs.shape[1]):
        positive = y_true == c
        if positive.any() and not positive.all():
            aucs[c] = roc_auc_score(positive, probs[:, c])
    return aucs


def _averages(values: np.ndarray, support: np.ndarray) -> tuple[float, float]:
    """Macro (plain mean) and support-weighted mean over the classes where ``values`` is defined."""
    defined = ~np.isnan(values)
    if not defined.any():
        return float("nan"), float("nan")
    macro = float(values[defined].mean())
    weights = support[defined]
    weighted = (
        float((values[defined] * weights).sum() / weights.sum()) if weights.sum() else float("nan")
    )
    return macro, weighted


def _undefined_reasons(
    classes: Sequence[str], per_class: dict[str, dict[str, float]], n_samples: int
) -> dict[str, str]:
    """Why each undefined per-class value is undefined, keyed like ``per_class.AD.recall``."""
    reasons: dict[str, str] = {}
    for name in classes:
        row = per_class[name]
        absent = row["support"] == 0
        everyone = row["support"] == n_samples
        for key in ("recall", "sensitivity", "f1"):
            if np.isnan(row[key]):
                reasons[f"per_class.{name}.{key}"] = f"no {name} cases in the held-out cohort"
        if np.isnan(row["precision"]):
            reasons[f"per_class.{name}.precision"] = f"the model predicted {name} for no one"
        if np.isnan(row["npv"]):
            reasons[f"per_class.{name}.npv"] = f"the model predicted {name} for everyone"
        if np.isnan(row["specificity"]):
            reasons[f"per_class.{name}.specificity"] = f"every case in the cohort is {name}"
        if np.isnan(row["auc"]):
            reasons[f"per_class.{name}.auc"] = (
                f"no {name} cases in the held-out cohort"
                if absent
                else f"every case in the cohort is {name}"
                if everyone
                else "undefined"
            )
    return reasons


def _checked(
    y_true: np.ndarray, probs: np.ndarray, y_pred: np.ndarray | None, n_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != (len(y_true), n_classes):
        raise ValueError(
            f"probabilities have shape {probs.shape}, expected ({len(y_true)}, {n_classes})"
        )
    if len(y_true) == 0:
        raise ValueError("no labelled cases to evaluate")
    y_pred = probs.argmax(axis=1) if y_pred is None else np.asarray(y_pred, dtype=np.int64)
    if y_pred.shape != y_true.shape:
        raise ValueError(f"{len(y_pred)} predictions for {len(y_true)} labels")
    return y_true, probs, y_pred


def _agreement(y_true: np.ndarray, y_pred: np.ndarray, labels: list[int]) -> dict[str, float]:
    """Whole-cohort agreement of predictions and labels (scikit-learn)."""
    with warnings.catch_warnings():
        # Undefined values are expected (absent classes) and reported under "undefined".
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)
        return {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
            "kappa": float(
                cohen_kappa_score(y_true, y_pred, labels=labels, replace_undefined_by=np.nan)
            ),
            "kappa_quadratic": float(
                cohen_kappa_score(
                    y_true, y_pred, labels=labels, weights="quadratic", replace_undefined_by=np.nan
                )
            ),
            "mcc": float(matthews_corrcoef(y_true, y_pred)),
        }


def _per_class(
    y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray, classes: Sequence[str]
) -> dict[str, dict[str, float]]:
    """``per_class.<class>``: the one-vs-rest rates and AUC of each class."""
    labels = list(range(len(classes)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)
        precision, recall, _, support = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, zero_division=np.nan
        )
    # scikit-learn's one-vs-rest blocks are [[TN, FP], [FN, TP]] per class.
    ovr = multilabel_confusion_matrix(y_true, y_pred, labels=labels)
    tn, fp, fn = ovr[:, 0, 0], ovr[:, 0, 1], ovr[:, 1, 0]
    # specificity, NPV and the absent-class-aware F1
    rates = confusion_rates(confusion_matrix(y_true, y_pred, labels=labels))
    auc = one_vs_rest_auc(y_true, probs)
    return {
        name: {
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "sensitivity": float(recall[c]),
            "specificity": float(_ratio(tn[c], tn[c] + fp[c])),
            "npv": float(_ratio(tn[c], tn[c] + fn[c])),
            "f1": float(rates["f1"][c]),
            "auc": float(auc[c]),
            "support": int(support[c]),
        }
        for c, name in enumerate(classes)
    }


def _class_averages(
    per_class: dict[str, dict[str, float]], classes: Sequence[str]
) -> tuple[dict[str, float], dict[str, float]]:
    """``macro`` and ``weighted`` (by support) means of the :data:`AVERAGED_KEYS`."""
    support = np.array([per_class[name]["support"] for name in classes], dtype=np.float64)
    macro: dict[str, float] = {}
    weighted: dict[str, float] = {}
    for key in AVERAGED_KEYS:
        values = np.array([per_class[name][key] for name in classes])
        macro[key], weighted[key] = _averages(values, support)
    return macro, weighted


def compute_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    ece_bins: int = 10,
    *,
    y_pred: np.ndarray | None = None,
) -> dict[str, Any]:
    """Point estimates of every metric for integer labels ``y_true`` and probabilities ``(N, K)``.

    ``y_pred`` is the decision rule's class per case (``None``: the most probable class). The
    class-agreement metrics score ``y_pred``; AUC and calibration score ``probs``. Values that
    do not exist are ``NaN`` and their reasons are listed under ``undefined``;
    :func:`pipeline.utils.jsonable.jsonable` turns NaN into ``null``.
    """
    classes = list(classes)
    y_true, probs, y_pred = _checked(y_true, probs, y_pred, len(classes))
    cm = confusion_matrix(y_true, y_pred, labels=list(range(len(classes))))
    agreement = _agreement(y_true, y_pred, list(range(len(classes))))
    per_class = _per_class(y_true, y_pred, probs, classes)
    macro, weighted = _class_averages(per_class, classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalized = cm / cm.sum(axis=1, keepdims=True)
    undefined = _undefined_reasons(classes, per_class, len(y_true))
    if np.isnan(agreement["kappa"]):
        undefined["kappa"] = undefined["kappa_quadratic"] = (
            "labels and predictions share one class only"
        )
    if np.isnan(macro["auc"]):
        undefined["auc_macro"] = "no class has both positive and negative cases"
    return {
        "classes": classes,
        "n_samples": len(y_true),
        "accuracy": agreement["accuracy"],
        "balanced_accuracy": agreement["balanced_accuracy"],
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_normalized": normalized.tolist(),
        "per_class": per_class,
        "macro": macro,
        "weighted": weighted,
        "auc_macro": macro["auc"],
        "kappa": agreement["kappa"],
        "kappa_quadratic": agreement["kappa_quadratic"],
        "mcc": agreement["mcc"],
        "ece": expected_calibration_error(probs, y_true, n_bins=ece_bins),
        "undefined": undefined,
    }
