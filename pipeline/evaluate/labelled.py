"""Which cases of a predictions table can be scored: a label among the model's classes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def split_labelled(
    table: pd.DataFrame, classes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """``(mask of scored rows, class codes of those rows, table of the others)``.

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
