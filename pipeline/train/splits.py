"""Leakage-free subject splits: by subject (all sessions together), stratified by label.

A split is a table with one row per (subject, fold): ``subject_id``, ``fold``, ``role``
(``train`` or ``val``). A plain run has fold 0 only; ``split.folds=k`` has k folds in which every
subject is validated exactly once. The run folder keeps it as ``split.csv``; ``split.file``
reads one back (its ``fold`` column may be omitted for a single split).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

from pipeline.train.errors import SplitError
from pipeline.utils.atomic import write_csv

SPLIT_COLUMNS = ("subject_id", "fold", "role")
ROLES = ("train", "val")


def subject_labels(subject_ids: Sequence[str], labels: np.ndarray) -> pd.Series:
    """One label per subject (index: subject id), the most frequent over its sessions.

    Ties (a subject seen as often in two stages) go to the lower class index; this label is only
    used to stratify, every session keeps its own label for training.
    """
    frame = pd.DataFrame({"subject_id": list(subject_ids), "label": np.asarray(labels)})
    counts = frame.groupby(["subject_id", "label"]).size().reset_index(name="n")
    counts = counts.sort_values(["subject_id", "n", "label"], ascending=[True, False, True])
    return counts.drop_duplicates("subject_id").set_index("subject_id")["label"].astype(np.int64)


def shuffle_subject_labels(per_subject: pd.Series, seed: int) -> pd.Series:
    """The leakage check: subject labels permuted across subjects (class counts unchanged)."""
    rng = np.random.default_rng(seed)
    return pd.Series(rng.permutation(per_subject.to_numpy()), index=per_subject.index, name="label")


def _counts_text(labels: np.ndarray, classes: Sequence[str]) -> str:
    counts = np.bincount(labels, minlength=len(classes))
    return ", ".join(f"{c}={n}" for c, n in zip(classes, counts, strict=True))


def _check_class_sizes(
    labels: np.ndarray, classes: Sequence[str], needed: int, why: str, *, folds: bool = False
) -> None:
    """Refuse a split too small for some class; ``folds``: say which ``split.folds`` fits."""
    counts = np.bincount(labels, minlength=len(classes))
    small = [(c, int(n)) for c, n in zip(classes, counts, strict=True) if n < needed]
    if small:
        named = ", ".join(f"{c} has {n}" for c, n in small)
        hint = ""
        if folds:
            fewer = f" Set split.folds={counts.min()}" if counts.min() >= 2 else " Add subjects"
            hint = f"{fewer} (or split.folds=1 for one train/validation split)."
        raise SplitError(
            f"Too few subjects for {why}: every class needs at least {needed} subjects, but "
            f"{named} (all classes: {_counts_text(labels, classes)}).{hint}"
        )


def make_split(
    per_subject: pd.Series,
    classes: Sequence[str],
    *,
    val_fraction: float = 0.2,
    folds: int = 1,
    seed: int = 0,
) -> pd.DataFrame:
    """A stratified subject split: one train/val split (``folds=1``) or ``folds``-fold CV."""
    subjects = per_subject.index.to_numpy(dtype=object)
    labels = per_subject.to_numpy(dtype=np.int64)
    k = len(classes)
    if folds > 1:
        _check_class_sizes(labels, classes, folds, f"{folds}-fold cross-validation", folds=True)
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        parts = list(splitter.split(subjects, labels))
    elif folds == 1:
        if not 0.0 < val_fraction < 1.0:
            raise SplitError(f"split.val_fraction must be between 0 and 1, got {val_fraction}")
        _check_class_sizes(labels, classes, 2, "a train/validation split")
        n_val = math.ceil(val_fraction * len(subjects))
        if n_val < k or len(subjects) - n_val < k:
            raise SplitError(
                f"split.val_fraction={val_fraction} puts {n_val} of {len(subjects)} subjects in "
                f"validation; both sides need at least one subject per class ({k}). "
                f"Class counts: {_counts_text(labels, classes)}."
            )
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=seed)
        parts = list(splitter.split(subjects, labels))
    else:
        raise SplitError(f"split.folds must be 1 (one split) or more, got {folds}")
    rows = []
    for fold, (train_idx, val_idx) in enumerate(parts):
        rows.append(
            pd.DataFrame({"subject_id": subjects[train_idx], "fold": fold, "role": "train"})
        )
        rows.append(pd.DataFrame({"subject_id": subjects[val_idx], "fold": fold, "role": "val"}))
    split = pd.concat(rows, ignore_index=True)
    return split.sort_values(["fold", "role", "subject_id"], kind="stable").reset_index(drop=True)


def read_split(path: str | Path) -> pd.DataFrame:
    """Read a split file (CSV with ``subject_id``, ``role`` and optionally ``fold``)."""
    p = Path(path)
    if not p.is_file():
        raise SplitError(f"Split file {p} does not exist.")
    split = pd.read_csv(p, dtype={"subject_id": str, "role": str}, keep_default_na=False)
    missing = [c for c in ("subject_id", "role") if c not in split.columns]
    if missing:
        raise SplitError(
            f"Split file {p} lacks column(s) {missing}; expected {list(SPLIT_COLUMNS)}."
        )
    if "fold" not in split.columns:
        split["fold"] = 0
    split["role"] = split["role"].str.strip().str.lower()
    return split[list(SPLIT_COLUMNS)]


def write_split(path: str | Path, split: pd.DataFrame) -> Path:
    """Write ``split.csv`` atomically."""
    write_csv(path, split[list(SPLIT_COLUMNS)])
    return Path(path)


def validate_split(
    split: pd.DataFrame, per_subject: pd.Series, classes: Sequence[str], source: str
) -> None:
    """Check a split against the cohort: every subject once per fold, both roles, no strangers."""
    bad_roles = sorted(set(split["role"]) - set(ROLES))
    if bad_roles:
        raise SplitError(f"{source}: role must be 'train' or 'val', found {bad_roles}.")
    try:
        folds = sorted(int(f) for f in split["fold"].unique())
    except ValueError as exc:
        raise SplitError(f"{source}: column 'fold' must hold integers ({exc}).") from exc
    if folds != list(range(len(folds))):
        raise SplitError(f"{source}: folds must be numbered 0..k-1, found {folds}.")
    cohort = set(per_subject.index)
    strangers = sorted(set(split["subject_id"]) - cohort)
    if strangers:
        raise SplitError(
            f"{source}: {len(strangers)} subject(s) are not in the cohort: {strangers[:10]}."
        )
    for fold in folds:
        part = split[split["fold"].astype(int) == fold]
        repeated = part.loc[part["subject_id"].duplicated(), "subject_id"].unique().tolist()
        if repeated:
            raise SplitError(
                f"{source}: fold {fold} lists subject(s) {repeated[:10]} more than once "
                "(a subject must be in train or val, never both)."
            )
        absent = sorted(cohort - set(part["subject_id"]))
        if absent:
            raise SplitError(
                f"{source}: fold {fold} leaves out {len(absent)} cohort subject(s) {absent[:10]}; "
                "assign every subject to train or val."
            )
        for role in ROLES:
            ids = part.loc[part["role"] == role, "subject_id"]
            if ids.empty:
                raise SplitError(f"{source}: fold {fold} has no {role} subjects.")
        train_classes = set(per_subject.loc[part.loc[part["role"] == "train", "subject_id"]])
        unseen = [classes[i] for i in range(len(classes)) if i not in train_classes]
        if unseen:
            raise SplitError(
                f"{source}: fold {fold} has no training subjects of class(es) {unseen}."
            )


def fold_subjects(split: pd.DataFrame, fold: int) -> tuple[list[str], list[str]]:
    """Sorted training and validation subject ids of one fold."""
    part = split[split["fold"].astype(int) == fold]
    train = sorted(part.loc[part["role"] == "train", "subject_id"].astype(str))
    val = sorted(part.loc[part["role"] == "val", "subject_id"].astype(str))
    return train, val


def rows_of(subject_ids: Sequence[str], manifest_subjects: pd.Series) -> np.ndarray:
    """Cache rows (all sessions) of the given subjects, in row order."""
    return np.flatnonzero(manifest_subjects.isin(set(subject_ids)).to_numpy())
