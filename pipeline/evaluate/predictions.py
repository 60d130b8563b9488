"""The per-case table of a run: ids from the manifest, true label, prediction and probabilities."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

#: Leading columns of predictions.csv (issue 5); ``prob_<class>`` columns follow.
ID_COLUMNS = ("subject_id", "session_id", "label", "predicted")


def prob_column(name: str, fold: int | None = None) -> str:
    """``prob_AD`` for the ensemble, ``fold1_prob_AD`` for fold 1's own model."""
    return f"prob_{name}" if fold is None else f"fold{fold}_prob_{name}"


def predictions_table(
    manifest: pd.DataFrame,
    probs: np.ndarray,
    classes: Sequence[str],
    fold_probs: Sequence[np.ndarray] = (),
) -> pd.DataFrame:
    """One row per manifest row: ids, label, predicted class, ensemble then per-fold probabilities.

    Fold columns are added only for an ensemble (more than one model); ``site`` is kept when the
    manifest has it, for per-site breakdowns. Ids come from the manifest (folder names and the
    labels table), never from DICOM headers.
    """
    classes = list(classes)
    probs = np.asarray(probs, dtype=np.float64)
    table = pd.DataFrame(
        {
            "subject_id": manifest["subject_id"].astype(str).to_numpy(),
            "session_id": manifest["session_id"].astype(str).to_numpy(),
            "label": manifest["label"].astype(str).to_numpy(),
            "predicted": np.asarray(classes, dtype=object)[probs.argmax(axis=1)]
            if len(probs)
            else np.array([], dtype=object),
        }
    )
    for c, name in enumerate(classes):
        table[prob_column(name)] = probs[:, c]
    if len(fold_probs) > 1:
        for fold, fp in enumerate(fold_probs):
            for c, name in enumerate(classes):
                table[prob_column(name, fold)] = np.asarray(fp, dtype=np.float64)[:, c]
    if "site" in manifest:
        table["site"] = manifest["site"].astype(str).to_numpy()
    return table


def split_labelled(
    table: pd.DataFrame, classes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Which rows can be scored: ``(mask, class codes of those rows, table of the others)``.

    A row without a label, or with a label that is not one of the model's classes, is not scored;
    it is listed with the reason (nothing is dropped silently).
    """
    index = {name: i for i, name in enumerate(classes)}
    labels = table["label"].astype(str)
    mask = labels.isin(index).to_numpy()
    codes = labels[mask].map(index).to_numpy(dtype=np.int64)
    others = table.loc[~mask, ["subject_id", "session_id", "label"]].copy()
    others["reason"] = [
        "no label in the labels table"
        if not label
        else f"label {label!r} is not one of the model's classes {list(classes)}"
        for label in others["label"]
    ]
    return mask, codes, others.reset_index(drop=True)
