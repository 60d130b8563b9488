"""The worker's contract: one frozen :class:`SubjectContext` in, one :class:`SubjectRecord` out.

The cohort builds the context once (the validated recipe, where the cohort and its cache are)
and hands it with each :class:`~pipeline.preprocess.results.SubjectTask` to
:func:`pipeline.preprocess.subject.process_subject`. The worker returns a :class:`SubjectRecord`
and stores it, as JSON, beside the subject's pixels in its result file
(:mod:`pipeline.preprocess.results`); the cache writer turns its :class:`StackRecord` entries
into manifest rows and its rejections into ``rejected.csv`` rows.
:meth:`SubjectRecord.to_json` and :meth:`SubjectRecord.from_json` are the one place the record
is written and read; nothing reads it by key.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.preprocess.options import IngestContext
from pipeline.preprocess.rejection import Rejection

if TYPE_CHECKING:  # the compute path (torch, MONAI): imported where a worker builds it
    from pipeline.preprocess.transforms import SliceNormalizer


@dataclass(frozen=True)
class SubjectContext:
    """What every subject of one run shares; picklable, built once per run."""

    ingest: IngestContext  # data.root and the series rules: the reading side's context
    slices: Mapping[str, Any]  # the recipe's slices section (which slices to keep)
    normalize: Mapping[str, Any]  # the recipe's normalize section (the MONAI chain)
    recipe_hash: str
    cohort_dir: Path  # ${paths.cache}/${data.name}: results go to its subjects/ folder

    @classmethod
    def from_recipe(
        cls, root: Path, recipe: Mapping[str, Any], recipe_hash: str, cohort_dir: Path
    ) -> SubjectContext:
        """The context of a recipe; ``ValueError`` names a bad ``series`` option."""
        return cls(
            IngestContext.from_recipe(root, recipe),
            recipe["slices"],
            recipe["normalize"],
            recipe_hash,
            cohort_dir,
        )

    @functools.cached_property
    def normalizer(self) -> SliceNormalizer:
        """The ``normalize`` chain, built once per context: a worker unpickles one context per
        call of up to 16 subjects, and building the chain anew for each subject cost 20-60 us
        (the recipe's JSON key into :func:`.transforms.build_chain`'s memo). Not pickled."""
        from pipeline.preprocess.transforms import SliceNormalizer

        return SliceNormalizer(self.normalize)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("normalizer", None)  # built again where it is used
        return state

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(S, size, size)`` of one accepted stack's normalized slices."""
        size = int(self.normalize["size"])
        return int(self.slices["count"]), size, size


@dataclass(frozen=True)
class StackRecord:
    """The manifest fields of one accepted stack (``row`` and the labels table's columns are
    added when the cache is assembled). Positions and spacings are ``;``-joined text, as the
    manifest stores them."""

    subject_id: str
    session_id: str
    source_format: str  # dicom | nifti
    series_hash: str
    source_hash: str
    n_slices: int
    slice_spacing_mm: float
    slice_indices: str  # chosen indices in the sorted stack
    slice_positions_mm: str  # their positions along the slice normal
    pixel_spacing_mm: str  # (row, column) spacing of the source pixels
    rows: int
    cols: int
    acquired_plane: str  # the plane the series was acquired in
    resliced: bool  # a 3D volume resliced to series.plane

    def as_row(self) -> dict[str, Any]:
        return _fields_of(self)


def _fields_of(record: Any) -> dict[str, Any]:
    """A flat dataclass's fields by name: ``dataclasses.asdict`` without its recursive deep
    copy, which made a subject record's JSON cost 53 against 18 us (50 demo records, best of 3)."""
    return {f.name: getattr(record, f.name) for f in fields(record)}


#: Per-step CPU seconds of one subject, in the order the steps run; ``other`` is the rest of
#: the subject's CPU time (bookkeeping between the steps), so that the steps sum to the whole.
STEPS = ("scan", "decode", "normalize", "save", "other")


@dataclass(frozen=True)
class SubjectRecord:
    """One subject's outcome: its accepted stacks, what was not used and why, and its cost."""

    subject_id: str
    key: str  # the result's identity (:meth:`SubjectTask.key`)
    stacks: tuple[StackRecord, ...] = ()  # one per accepted session, by session id
    rejections: tuple[Rejection, ...] = ()
    n_files: int = 0  # files looked at
    n_non_dicom: int = 0  # of which not DICOM images: counted, not rejected
    seconds: float = 0.0  # wall time in the worker
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds per step (STEPS)
    peak_rss_mb: float = 0.0  # peak memory of the process that ran it

    def to_json(self) -> str:
        data = _fields_of(self)
        data["stacks"] = [_fields_of(stack) for stack in self.stacks]
        data["rejections"] = [rejection.as_row() for rejection in self.rejections]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SubjectRecord:
        """The record :meth:`to_json` wrote. ``KeyError``/``TypeError``/``ValueError`` when the
        text is not one (a damaged or foreign result)."""
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown record fields {sorted(unknown)}")
        data["stacks"] = tuple(StackRecord(**s) for s in data["stacks"])
        data["rejections"] = tuple(Rejection(**r) for r in data["rejections"])
        return cls(**data)
