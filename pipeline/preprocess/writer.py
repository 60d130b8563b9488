"""Assemble per-subject results into the cohort cache that ``train`` and ``evaluate`` read.

The files are those of :mod:`pipeline.cache`. The order of writing is the crash contract:
``provenance.json`` is removed first and written last, each file is written atomically, so a
cache that has a provenance file is complete and consistent, and one that lacks it is never
opened by :func:`pipeline.cache.load_cohort`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import cache
from pipeline.labels import lookup, row_index
from pipeline.preprocess.qc import write_qc_montage
from pipeline.preprocess.record import StackRecord, SubjectRecord
from pipeline.preprocess.rejection import REJECTION_LEVELS, Rejection
from pipeline.preprocess.results import ResultStore
from pipeline.utils.atomic import atomic_path, write_csv

#: Manifest columns after :data:`pipeline.cache.MANIFEST_COLUMNS`.
EXTRA_MANIFEST_COLUMNS = ("pixel_spacing_mm", "rows", "cols", "acquired_plane", "resliced")
MANIFEST_COLUMNS = cache.MANIFEST_COLUMNS + EXTRA_MANIFEST_COLUMNS


@dataclass
class Assembly:
    """The manifest, where each row's pixels come from, and the rejections found on the way."""

    manifest: pd.DataFrame
    sources: list[tuple[Path, int]]  # per manifest row: (result file, index in its images)
    rejections: list[Rejection] = field(default_factory=list)


def build_manifest(
    results: Sequence[tuple[Path, SubjectRecord]],
    labels: pd.DataFrame | None,
) -> Assembly:
    """Join the subjects' records with the labels table.

    ``results`` are ``(result file, record)`` pairs in subject order. With a labels table, an
    accepted session without a labelling row, and a labelled session without an accepted stack,
    become rejections; without one, every stack is accepted with label ``""``.
    """
    index = row_index(labels) if labels is not None else None
    session_lines = _session_lines(labels) if labels is not None else {}
    rows: list[dict[str, Any]] = []
    sources: list[tuple[Path, int]] = []
    rejections: list[Rejection] = []
    for path, record in results:
        rejections.extend(record.rejections)
        produced: set[str] = set()
        for k, stack in sorted(enumerate(record.stacks), key=lambda e: e[1].session_id):
            produced.add(stack.session_id)
            entry = None if index is None else lookup(index, stack.subject_id, stack.session_id)
            if index is not None and entry is None:
                rejections.append(_unlabelled_session(stack))
                continue
            covariates = {c: (entry or {}).get(c, "") for c in ("label", "site", "age", "sex")}
            rows.append({"row": len(rows), **stack.as_row(), **covariates})
            sources.append((path, k))
        if index is not None:
            wanted = session_lines.get(record.subject_id, [])
            rejections.extend(_labelled_but_missing(record.subject_id, produced, wanted))
    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    return Assembly(manifest=manifest, sources=sources, rejections=rejections)


def _unlabelled_session(stack: StackRecord) -> Rejection:
    what = (
        f"session {stack.session_id!r}"
        if stack.session_id
        else "a series outside the labelled session folders"
    )
    return Rejection(
        stack.subject_id,
        stack.session_id,
        stack.subject_id,
        "session",
        f"{what} has usable images but no row in the labels table "
        "(add its subject_id + session_id to data.labels)",
    )


def _session_lines(labels: pd.DataFrame) -> dict[str, list[tuple[str, int]]]:
    """Per subject, the ``(session_id, line)`` of its rows that name a session."""
    out: dict[str, list[tuple[str, int]]] = {}
    for entry in labels[labels["session_id"] != ""].itertuples(index=False):
        out.setdefault(entry.subject_id, []).append((entry.session_id, int(entry.line)))
    return out


def _labelled_but_missing(
    subject_id: str, produced: set[str], session_lines: Sequence[tuple[str, int]]
) -> list[Rejection]:
    """Labelled sessions of this subject that no accepted stack answers."""
    return [
        Rejection(
            subject_id,
            session_id,
            subject_id,
            "session",
            f"labels table line {line} names session {session_id!r}, but no usable series was "
            "found for it (see the other rows of this subject)",
        )
        for session_id, line in session_lines
        if session_id not in produced
    ]


def rejected_frame(rejections: Sequence[Rejection]) -> pd.DataFrame:
    """``rejected.csv`` content: one row per rejection, by subject, session, then level order."""
    frame = pd.DataFrame([r.as_row() for r in rejections], columns=list(cache.REJECTED_COLUMNS))
    if frame.empty:
        return frame
    level_order = {level: i for i, level in enumerate(REJECTION_LEVELS)}
    frame["_level"] = frame["level"].map(level_order).fillna(len(level_order))
    frame = frame.sort_values(["subject_id", "session_id", "_level", "path"], kind="stable")
    return frame.drop(columns="_level").drop_duplicates().reset_index(drop=True)


def top_reasons(rejected: pd.DataFrame, n: int = 5) -> list[tuple[str, int]]:
    """The ``n`` most frequent rejection reasons (exact text) with their counts."""
    return Counter(rejected["reason"]).most_common(n) if len(rejected) else []


def write_images(path: Path, assembly: Assembly, shape: tuple[int, int, int]) -> None:
    """Fill ``images.npy`` row by row from the result files: memory stays at one subject."""
    with atomic_path(path, suffix=".npy") as tmp:
        out = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.float32, shape=(len(assembly.sources), *shape)
        )
        loaded: tuple[Path | None, np.ndarray | None] = (None, None)
        for row, (source, k) in enumerate(assembly.sources):
            if loaded[0] != source:  # sources are grouped by subject: one load per file
                loaded = (source, ResultStore.load_images(source))
            out[row] = loaded[1][k]
        out.flush()
        del out


def write_cohort(
    directory: Path,
    assembly: Assembly,
    rejected: pd.DataFrame,
    image_shape: tuple[int, int, int],
    qc_samples: int,
) -> None:
    """Write the cache's data files, after removing ``provenance.json``.

    The caller writes the provenance file last (it marks the cache complete); until then
    :func:`pipeline.cache.load_cohort` refuses the folder.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / cache.PROVENANCE).unlink(missing_ok=True)
    write_images(directory / cache.IMAGES, assembly, image_shape)
    write_csv(directory / cache.MANIFEST, assembly.manifest)
    write_csv(directory / cache.REJECTED, rejected)
    images = np.load(directory / cache.IMAGES, mmap_mode="r")
    qc = write_qc_montage(directory / cache.QC_MONTAGE, images, assembly.manifest, qc_samples)
    if qc is None:
        (directory / cache.QC_MONTAGE).unlink(missing_ok=True)
