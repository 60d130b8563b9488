"""Calibration of the predicted probabilities: expected calibration error and reliability bins.

Top-label calibration (Guo et al., 2017): each case's confidence is its highest probability;
equal-width bins on [0, 1]. The point estimate is torchmetrics' ``MulticlassCalibrationError``
(L1 norm). The bootstrap needs the same number for a thousand resamples at once, which
torchmetrics computes one resample per call; :func:`weighted_ece` is the same formula written so
all resamples share one matrix product (the tests check it equals torchmetrics' with unit
weights). scikit-learn's ``calibration_curve`` covers the binary case only, so the reliability
bins are counted here too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin of each confidence in ``n_bins`` equal-width bins; 1.0 falls in the last bin."""
    if n_bins < 1:
        raise ValueError(f"ece_bins must be at least 1, got {n_bins}")
    return np.clip((np.asarray(confidence) * n_bins).astype(np.int64), 0, n_bins - 1)


def weighted_ece(
    probs: np.ndarray, y_true: np.ndarray, weights: np.ndarray, n_bins: int = 10
) -> np.ndarray:
    """Expected calibration error for each row of case ``weights`` ``(B, N)`` (bootstrap counts).

    ECE = sum over bins of |sum_i w_i (correct_i - confidence_i)| / sum_i w_i, which is the usual
    sum_b (n_b / N) |accuracy_b - confidence_b| written so that all resamples share one product.
    """
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(y_true)).astype(np.float64)
    bins = np.eye(n_bins)[_bin_index(confidence, n_bins)]  # (N, n_bins) one-hot
    gap = np.asarray(weights, dtype=np.float64) @ (bins * (correct - confidence)[:, None])
    total = np.asarray(weights, dtype=np.float64).sum(axis=1)
    out = np.full(len(total), np.nan)
    np.divide(np.abs(gap).sum(axis=1), total, out=out, where=total > 0)
    return out


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 10) -> float:
    """Top-label expected calibration error of probabilities ``(N, K)`` (0 = calibrated)."""
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    if n_bins < 1:
        raise ValueError(f"ece_bins must be at least 1, got {n_bins}")
    probs = np.asarray(probs, dtype=np.float64)
    error = multiclass_calibration_error(
        torch.from_numpy(np.array(probs)),
        torch.from_numpy(np.array(y_true, dtype=np.int64)),  # a copy: torch wants it writable
        num_classes=probs.shape[1],
        n_bins=n_bins,
        norm="l1",
    )
    return float(error)


def reliability_table(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Per bin: edges, case count, mean confidence and accuracy (NaN in empty bins)."""
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(y_true)).astype(np.float64)
    bins = _bin_index(confidence, n_bins)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, weights=confidence, minlength=n_bins) / count
        accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / count
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame(
        {
            "bin_lower": edges[:-1],
            "bin_upper": edges[1:],
            "count": count,
            "confidence": mean_conf,
            "accuracy": accuracy,
        }
    )
