"""The preprocessed cohort as training sees it: opened by recipe hash, labels checked, indexed."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from pipeline.cache import PreprocessedCohort, cohort_dir, load_cohort
from pipeline.config import RECIPE_KEYS, recipe_hash
from pipeline.train.errors import TrainError

log = logging.getLogger(__name__)

#: Rows checked at a time for NaN/Inf pixels: bounds memory on big caches.
_FINITE_CHUNK = 256


def rebuild_command(name: str, root: object, labels: object, overrides: Sequence[str] = ()) -> str:
    """The preprocess command that (re)builds cache ``name`` with this run's recipe."""
    root_text = "DIR" if root in (None, "???") else str(root)
    labels_text = "FILE" if labels in (None, "???") else str(labels)
    parts = [
        "python -m pipeline.preprocess",
        f"data.name={name}",
        f"data.root={root_text}",
        f"data.labels={labels_text}",
        *overrides,
    ]
    return " ".join(parts)


def open_cohort(
    cache_root: str | Path, name: str, expected_hash: str, rebuild_hint: str
) -> PreprocessedCohort:
    """Open ``cache_root/name``; a missing cache or another recipe raises ``CacheError``."""
    return load_cohort(
        cohort_dir(cache_root, name), expected_hash=expected_hash, rebuild_hint=rebuild_hint
    )


#: Top-level config keys whose overrides decide where the cache is and what it holds.
_CACHE_KEYS = ("paths", *RECIPE_KEYS)


def open_training_cohort(cfg: DictConfig, overrides: Sequence[str]) -> PreprocessedCohort:
    """The cache ``cfg`` trains on, with its recipe checked; ``CacheError`` names the preprocess
    command that builds the right one. Needs neither torch nor Lightning, so
    ``python -m pipeline.train`` answers a missing or stale cache at once."""

    # The overrides that change where the cache lives or what it holds must be repeated: the
    # paths and the recipe, and the cohort's config group and class names (preprocess checks
    # the labels against them).
    def key(override: str) -> str:
        return override.split("=", 1)[0].lstrip("+~")

    recipe = [
        o
        for o in overrides
        if key(o).split(".", 1)[0] in _CACHE_KEYS or key(o) in ("data", "data.classes")
    ]
    hint = rebuild_command(str(cfg.data.name), cfg.data.get("root"), cfg.data.get("labels"), recipe)
    return open_cohort(cfg.paths.cache, str(cfg.data.name), recipe_hash(cfg), hint)


def class_indices(manifest: pd.DataFrame, classes: Sequence[str], source: str) -> np.ndarray:
    """Class index of each manifest row, in ``classes`` order.

    Raises :class:`TrainError` for unlabeled rows, labels outside ``classes``, and configured
    classes with no rows at all (a model cannot learn a class it never sees).
    """
    labels = manifest["label"].astype(str)
    unlabeled = manifest.loc[labels.str.strip() == "", "subject_id"].tolist()
    if unlabeled:
        raise TrainError(
            f"{source}: {len(unlabeled)} row(s) have no label (e.g. {unlabeled[:5]}); "
            "training needs a labelled cohort. Preprocess it with data.labels=<labels table>."
        )
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise TrainError(
            f"{source}: labels {unknown} are not in data.classes={list(classes)}. Set data.classes "
            "to the cohort's class names, in the order the model should output them."
        )
    counts = labels.value_counts()
    empty = [c for c in classes if counts.get(c, 0) == 0]
    if empty:
        found = ", ".join(f"{c}={int(counts.get(c, 0))}" for c in classes)
        raise TrainError(
            f"{source}: class(es) {empty} have no subjects ({found}). Add subjects of that class "
            "or drop it from data.classes."
        )
    lookup = {name: i for i, name in enumerate(classes)}
    return labels.map(lookup).to_numpy(dtype=np.int64)


def check_finite(images: np.ndarray, manifest: pd.DataFrame, source: str) -> None:
    """Raise :class:`TrainError` naming the subjects whose cached pixels hold NaN or Inf."""
    bad: list[int] = []
    for start in range(0, len(images), _FINITE_CHUNK):
        chunk = np.asarray(images[start : start + _FINITE_CHUNK])
        finite = np.isfinite(chunk).reshape(len(chunk), -1).all(axis=1)
        bad.extend(start + np.flatnonzero(~finite))
    if bad:
        rows = manifest.iloc[bad]
        named = [
            f"{r.subject_id}/{r.session_id}" if r.session_id else r.subject_id
            for r in rows.itertuples()
        ]
        raise TrainError(
            f"{source}: {len(bad)} row(s) have NaN/Inf pixels ({named[:10]}); "
            "the cache is damaged. Rebuild it with preprocess.force=true."
        )


@dataclass(frozen=True)
class ClassCounts:
    """Subjects and rows (subject sessions) per class."""

    classes: tuple[str, ...]
    subjects: tuple[int, ...]
    rows: tuple[int, ...]

    def table(self) -> str:
        """A small aligned text table for the console."""
        width = max(len(c) for c in (*self.classes, "class"))
        lines = [f"{'class':<{width}}  subjects  sessions"]
        for name, n_subjects, n_rows in zip(self.classes, self.subjects, self.rows, strict=True):
            lines.append(f"{name:<{width}}  {n_subjects:>8}  {n_rows:>8}")
        lines.append(f"{'total':<{width}}  {sum(self.subjects):>8}  {sum(self.rows):>8}")
        return "\n".join(lines)


def count_classes(
    subject_ids: Sequence[str], labels: np.ndarray, classes: Sequence[str]
) -> ClassCounts:
    """Per-class subject and row counts (a subject counts under each class its rows carry)."""
    frame = pd.DataFrame({"subject_id": list(subject_ids), "label": labels})
    subjects = frame.drop_duplicates().groupby("label")["subject_id"].nunique()
    rows = frame.groupby("label").size()
    return ClassCounts(
        classes=tuple(classes),
        subjects=tuple(int(subjects.get(i, 0)) for i in range(len(classes))),
        rows=tuple(int(rows.get(i, 0)) for i in range(len(classes))),
    )
