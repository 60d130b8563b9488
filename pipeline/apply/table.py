"""The per-case predictions table: ids from the manifest, label, decision and probabilities."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline.decision import Decision


def prob_column(name: str, fold: int | None = None) -> str:
    """``prob_AD`` for the ensemble, ``fold1_prob_AD`` for fold 1's own model."""
    return f"prob_{name}" if fold is None else f"fold{fold}_prob_{name}"


def predictions_table(
    manifest: pd.DataFrame,
    decision: Decision,
    classes: Sequence[str],
    fold_probs: Sequence[np.ndarray] = (),
    seen: set[str] = frozenset(),
) -> pd.DataFrame:
    """One row per manifest row (the ``predictions.csv`` of evaluate and predict).

    Columns: ``subject_id``, ``session_id``, ``label`` (empty when unlabelled), ``predicted``
    (the decision rule's class), ``prob_<class>`` (the rule's reported probabilities), then for
    an ensemble of several models each fold's own probabilities ``fold<i>_prob_<class>`` (before
    the rule), ``site`` when the manifest has it, and ``seen_in_training`` (the subject is one
    the models trained or validated on). Ids come from the manifest (folder names and the labels
    table), never from DICOM headers.
    """
    classes = list(classes)
    subject_ids = manifest["subject_id"].astype(str).to_numpy()
    table = pd.DataFrame(
        {
            "subject_id": subject_ids,
            "session_id": manifest["session_id"].astype(str).to_numpy(),
            "label": manifest["label"].astype(str).to_numpy(),
            "predicted": np.asarray(classes, dtype=object)[decision.predicted],
        }
    )
    for c, name in enumerate(classes):
        table[prob_column(name)] = decision.probabilities[:, c]
    if len(fold_probs) > 1:
        for fold, fp in enumerate(fold_probs):
            for c, name in enumerate(classes):
                table[prob_column(name, fold)] = np.asarray(fp, dtype=np.float64)[:, c]
    if "site" in manifest:
        table["site"] = manifest["site"].astype(str).to_numpy()
    table["seen_in_training"] = pd.Series(subject_ids).isin(seen).to_numpy()
    return table
