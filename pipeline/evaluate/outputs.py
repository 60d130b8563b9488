"""The machine-readable files of a report folder: metrics.json and the CSV tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.evaluate.metrics import PER_CLASS_KEYS
from pipeline.utils.atomic import write_csv

METRICS_JSON = "metrics.json"
PER_CLASS_CSV = "per_class.csv"
PREDICTIONS_CSV = "predictions.csv"
CONFUSION_CSV = "confusion_matrix.csv"
CONFUSION_NORMALIZED_CSV = "confusion_matrix_normalized.csv"
RELIABILITY_CSV = "reliability.csv"
EXCLUDED_CSV = "excluded.csv"


def per_class_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    """One row per class: every per-class metric, then its interval bounds when there are any."""
    ci = metrics.get("ci", {}).get("per_class", {})
    rows = []
    for name in metrics["classes"]:
        row: dict[str, Any] = {"class": name}
        for key in PER_CLASS_KEYS:
            row[key] = metrics["per_class"][name][key]
            if key in ci.get(name, {}):
                low_high = ci[name][key] or [None, None]
                row[f"{key}_ci_low"], row[f"{key}_ci_high"] = low_high
        rows.append(row)
    return pd.DataFrame(rows)


def confusion_frame(cm: Sequence[Sequence[float]], classes: Sequence[str]) -> pd.DataFrame:
    """A confusion matrix with named rows (``true``) and columns (predicted classes)."""
    frame = pd.DataFrame(np.asarray(cm), columns=list(classes))
    frame.insert(0, "true", list(classes))
    return frame


def write_tables(
    out_dir: str | Path,
    metrics: dict[str, Any],
    predictions: pd.DataFrame,
    reliability: pd.DataFrame,
    excluded: pd.DataFrame,
) -> dict[str, Path]:
    """Write the CSV files of a report folder; returns their paths by name."""
    out = Path(out_dir)
    classes = metrics["classes"]
    files = {
        PER_CLASS_CSV: per_class_frame(metrics),
        PREDICTIONS_CSV: predictions,
        CONFUSION_CSV: confusion_frame(metrics["confusion_matrix"], classes),
        CONFUSION_NORMALIZED_CSV: confusion_frame(metrics["confusion_matrix_normalized"], classes),
        RELIABILITY_CSV: reliability,
    }
    if len(excluded):
        files[EXCLUDED_CSV] = excluded
    paths = {}
    for name, frame in files.items():
        write_csv(out / name, frame)
        paths[name] = out / name
    return paths
