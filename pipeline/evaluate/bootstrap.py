"""Percentile bootstrap confidence intervals, resampled by subject.

A subject's sessions are not independent cases, so a resample draws *subjects* with replacement
and takes all their sessions together. A resample is represented by case weights (how many times
each row was drawn), so every metric of every resample comes from a few matrix products instead of
thousands of scikit-learn calls; :mod:`pipeline.evaluate.metrics` tests that the vectorized
formulas equal scikit-learn's on one matrix.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.evaluate.calibration import weighted_ece
from pipeline.evaluate.metrics import AVERAGED_KEYS, confusion_rates

#: Metrics that get an interval: the scalars, and per class / macro the one-vs-rest rates.
CI_SCALARS = (
    "accuracy",
    "balanced_accuracy",
    "kappa",
    "kappa_quadratic",
    "mcc",
    "auc_macro",
    "ece",
)
CI_PER_CLASS = ("precision", "recall", "sensitivity", "specificity", "npv", "f1", "auc")


def subject_resample_weights(subject_ids: Sequence[str], n_resamples: int, seed: int) -> np.ndarray:
    """``(n_resamples, N)`` row weights: how often each row's subject was drawn in each resample."""
    codes, uniques = pd.factorize(pd.Series(list(subject_ids), dtype=str))
    n_subjects = len(uniques)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_subjects, size=(n_resamples, n_subjects))
    flat = (draws + np.arange(n_resamples)[:, None] * n_subjects).ravel()
    counts = np.bincount(flat, minlength=n_resamples * n_subjects).reshape(n_resamples, n_subjects)
    return counts[:, codes].astype(np.float64)


def weighted_confusion(
    weights: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, n_classes: int
) -> np.ndarray:
    """Confusion matrices ``(B, K, K)`` (rows true, cols predicted) for ``weights`` ``(B, N)``."""
    cell = np.asarray(y_true) * n_classes + np.asarray(y_pred)
    onehot = np.zeros((len(cell), n_classes * n_classes))
    onehot[np.arange(len(cell)), cell] = 1.0
    return (weights @ onehot).reshape(len(weights), n_classes, n_classes)


def weighted_ovr_auc(weights: np.ndarray, y_true: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """One-vs-rest ROC AUC ``(B, K)`` for row ``weights`` ``(B, N)``; NaN where a side is empty.

    The AUC is the weighted Mann-Whitney statistic: the chance that a random positive scores above
    a random negative, ties counting one half (what scikit-learn's trapezoidal ROC area gives).
    Scores are sorted once and grouped by value, so the cost is O(B * N) per class.
    """
    weights = np.asarray(weights, dtype=np.float64)
    y_true = np.asarray(y_true)
    out = np.full((len(weights), probs.shape[1]), np.nan)
    for c in range(probs.shape[1]):
        order = np.argsort(probs[:, c], kind="stable")
        scores = probs[order, c]
        starts = np.flatnonzero(np.r_[True, scores[1:] != scores[:-1]])
        positive = (y_true[order] == c).astype(np.float64)
        w = weights[:, order]
        pos = np.add.reduceat(w * positive, starts, axis=1)  # (B, groups of equal score)
        neg = np.add.reduceat(w * (1.0 - positive), starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg  # negatives strictly below each group
        numerator = (pos * (below + 0.5 * neg)).sum(axis=1)
        denominator = pos.sum(axis=1) * neg.sum(axis=1)
        np.divide(numerator, denominator, out=out[:, c], where=denominator > 0)
    return out


def resampled_metrics(
    weights: np.ndarray,
    y_true: np.ndarray,
    probs: np.ndarray,
    ece_bins: int = 10,
    y_pred: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Every interval metric for each resample: scalars ``(B,)``, per-class ``(B, K)``.

    ``y_pred``: the decision per case (``None``: the most probable class).
    """
    probs = np.asarray(probs, dtype=np.float64)
    n_classes = probs.shape[1]
    y_pred = probs.argmax(axis=1) if y_pred is None else np.asarray(y_pred)
    cms = weighted_confusion(weights, y_true, y_pred, n_classes)
    values = confusion_rates(cms)
    values["sensitivity"] = values["recall"]
    values["auc"] = weighted_ovr_auc(weights, y_true, probs)
    values["ece"] = weighted_ece(probs, y_true, weights, ece_bins)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample where nothing is defined
        values["auc_macro"] = np.nanmean(values["auc"], axis=1)
        for key in AVERAGED_KEYS:
            values[f"macro_{key}"] = np.nanmean(values[key], axis=1)
    return values


def percentile_interval(
    values: np.ndarray, level: float, min_defined: float = 0.5
) -> list[float] | None:
    """``[low, high]`` of the resamples where the value is defined; ``None`` when too few are.

    A value undefined in most resamples (say the AUC of a class with one subject) has no
    meaningful interval, so below ``min_defined`` of the resamples it gets none.
    """
    values = np.asarray(values, dtype=np.float64)
    defined = values[~np.isnan(values)]
    if len(values) == 0 or len(defined) < min_defined * len(values):
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(defined, [tail, 100.0 - tail])
    return [float(low), float(high)]


def bootstrap_intervals(
    y_true: np.ndarray,
    probs: np.ndarray,
    subject_ids: Sequence[str],
    classes: Sequence[str],
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    ece_bins: int = 10,
    y_pred: np.ndarray | None = None,
) -> dict[str, Any]:
    """The ``ci`` block of metrics.json: ``[low, high]`` per metric, ``None`` where undefined.

    ``y_pred``: the decision per case (``None``: the most probable class).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"evaluate.bootstrap.level must be in (0, 1), got {level}")
    ci: dict[str, Any] = {
        "method": "percentile bootstrap, subjects resampled with replacement",
        "level": level,
        "resamples": int(resamples),
        "seed": int(seed),
    }
    if resamples <= 0:
        ci.update({key: None for key in CI_SCALARS})
        ci["per_class"] = {name: dict.fromkeys(CI_PER_CLASS) for name in classes}
        ci["macro"] = dict.fromkeys(AVERAGED_KEYS)
        return ci
    weights = subject_resample_weights(subject_ids, resamples, seed)
    values = resampled_metrics(weights, y_true, probs, ece_bins, y_pred)
    for key in CI_SCALARS:
        ci[key] = percentile_interval(values[key], level)
    ci["per_class"] = {
        name: {key: percentile_interval(values[key][:, c], level) for key in CI_PER_CLASS}
        for c, name in enumerate(classes)
    }
    ci["macro"] = {key: percentile_interval(values[f"macro_{key}"], level) for key in AVERAGED_KEYS}
    return ci


def paired_difference_interval(
    subject_ids: Sequence[str],
    y_true: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    n_classes: int,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """``(low, high)`` of balanced accuracy of ``pred_a`` minus that of ``pred_b``.

    Paired: both decisions are scored on the same subject resamples, so what the two share
    (which subjects happen to be drawn) cancels and the interval is that of the difference, not
    of two separate estimates. The same ``subject_ids`` order and ``seed`` give the same
    resamples, so several methods compared with one baseline share them too. ``(nan, nan)`` when
    the difference is undefined in most resamples.
    """
    weights = subject_resample_weights(subject_ids, resamples, seed)

    def balanced_accuracy(pred: np.ndarray) -> np.ndarray:
        return confusion_rates(weighted_confusion(weights, y_true, pred, n_classes))[
            "balanced_accuracy"
        ]

    interval = percentile_interval(balanced_accuracy(pred_a) - balanced_accuracy(pred_b), level)
    return (float("nan"), float("nan")) if interval is None else (interval[0], interval[1])
