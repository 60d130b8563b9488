"""Which series can be a stack, and which one each session uses.

A DICOM series (or a NIfTI file) qualifies when it passes every check below; the first check it
fails is its rejection reason, phrased so a person knows what to change:

1. greyscale pixels (one sample, MONOCHROME1/2);
2. ``series.modality`` (MR);
3. not a localizer/scout by description (``series.description_exclude``) or by its ImageType;
4. description matches ``series.description_include`` when set (NIfTI: the file name);
5. geometry present in every slice (ImagePositionPatient, ImageOrientationPatient, PixelSpacing);
6. one orientation, one pixel shape, one pixel spacing;
7. a plane allowed by ``series.plane`` (a 3-slice localizer in another plane fails here too);
8. no repeated positions (4D/fMRI, multi-echo, or a duplicated slice);
9. at least 3 slices; even spacing (``series.spacing_tolerance``), so no gap;
10. exactly ``slices.expected`` slices when that is set.

Several qualifying series in one session: original images before DERIVED ones (reformats,
computed maps), then by SeriesNumber, lowest first (``series.prefer: first``, the first
acquisition) or highest (``last``, e.g. a repeat after motion), then by series hash so the choice
is stable. The others are rejected naming the rule. When several original series qualify and
one of them has no SeriesNumber (every NIfTI file: a BIDS ``anat/`` folder holding T1w, T2w and
FLAIR), nothing but chance would order them, so the session is rejected as ambiguous and the
message says how to name the one to use (``series.description_include``).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.preprocess.dicom_headers import FrameHeader, hash_uid
from pipeline.preprocess.discover import nifti_stem, relative_path, source_fingerprint
from pipeline.preprocess.geometry import (
    SAME_POSITION_MM,
    GeometryError,
    positions_along,
    same_orientation,
    spacing_problem,
    stack_frame,
)
from pipeline.preprocess.nifti import NiftiError, NiftiSliceReader, open_nifti
from pipeline.preprocess.pixels import DicomSlice, DicomSliceReader
from pipeline.preprocess.stack import SliceStack

MIN_SLICES = 3
DEFAULT_SPACING_TOLERANCE = 0.05


class SeriesRejected(ValueError):
    """A series that cannot be a stack; the message is the reason for rejected.csv."""


@dataclass(frozen=True)
class SeriesOptions:
    """The ``series:`` config section, read once (missing keys take their documented defaults)."""

    modality: str | None = "MR"
    description_include: str | None = None
    description_exclude: str | None = None
    plane: str | None = "axial"
    spacing_tolerance: float = DEFAULT_SPACING_TOLERANCE
    prefer: str = "first"

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> SeriesOptions:
        cfg = cfg or {}
        options = cls(
            modality=cfg.get("modality", cls.modality) or None,
            description_include=cfg.get("description_include") or None,
            description_exclude=cfg.get("description_exclude") or None,
            plane=cfg.get("plane", cls.plane) or None,
            spacing_tolerance=float(cfg.get("spacing_tolerance", cls.spacing_tolerance)),
            prefer=str(cfg.get("prefer", cls.prefer)),
        )
        if options.prefer not in ("first", "last"):
            raise ValueError(f"series.prefer must be 'first' or 'last', got {options.prefer!r}")
        if options.plane is not None and options.plane not in ("axial", "coronal", "sagittal"):
            raise ValueError(
                f"series.plane must be axial, coronal, sagittal or null, got {options.plane!r}"
            )
        for key in ("description_include", "description_exclude"):
            pattern = getattr(options, key)
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as err:
                    raise ValueError(
                        f"series.{key} {pattern!r} is not a valid regex: {err}"
                    ) from err
        return options


@dataclass
class Candidate:
    """A qualifying series: its stack (ids filled in later) and what the choice rule looks at."""

    stack: SliceStack
    paths: tuple[Path, ...]
    series_number: int | None = None
    derived: bool = False


def _check_description(description: str, options: SeriesOptions, what: str) -> None:
    if options.description_exclude and re.search(options.description_exclude, description):
        raise SeriesRejected(
            f"localizer/scout by its {what} {description!r} (series.description_exclude)"
        )
    if options.description_include and not re.search(options.description_include, description):
        raise SeriesRejected(
            f"{what} {description!r} does not match series.description_include "
            f"{options.description_include!r}"
        )


def _check_count(n: int, expected: int | None) -> None:
    if n < MIN_SLICES:
        raise SeriesRejected(
            f"{n} slice(s): too few for a stack (a localizer?); at least {MIN_SLICES} are needed"
        )
    if expected is not None and n != expected:
        raise SeriesRejected(f"{n} slices, expected {expected} (slices.expected)")


def _check_plane(plane: str, options: SeriesOptions) -> None:
    if options.plane is not None and plane != options.plane:
        raise SeriesRejected(
            f"{plane} slices, but series.plane requires {options.plane} (a localizer, or a "
            "reformat in another plane; set series.plane=null to accept any plane)"
        )


def _sorted_positions(positions: np.ndarray) -> np.ndarray:
    """Sort order of the positions, after checking that no two slices share a position."""
    order = np.argsort(positions, kind="stable")
    ordered = positions[order]
    same = np.diff(ordered) < SAME_POSITION_MM
    if same.any():
        # Slices at one position form a run in sorted order; equal runs everywhere mean 4D.
        run_starts = np.flatnonzero(np.concatenate([[True], ~same]))
        runs = set(np.diff(np.append(run_starts, len(ordered))).tolist())
        distinct = len(run_starts)
        if len(runs) == 1 and distinct > 1:
            raise SeriesRejected(
                f"{len(ordered)} slices at {distinct} distinct positions, {runs.pop()} "
                "at each: a 4D series (fMRI, DWI, multi-echo) rather than one volume"
            )
        raise SeriesRejected(
            f"repeated slice positions: {len(ordered)} slices at {distinct} distinct positions "
            f"(first repeat at {ordered[1:][same][0]:.2f} mm; a duplicated slice or mixed "
            "acquisitions in one series)"
        )
    return order


def _mixed(values: Sequence[Any], label: str, fmt: Any = str) -> None:
    counts = Counter(values)
    if len(counts) > 1:
        detail = ", ".join(f"{fmt(v)} in {n}" for v, n in counts.most_common(4))
        raise SeriesRejected(f"mixed {label} ({detail} slices)")


def series_location(paths: Sequence[Path], root: Path) -> str:
    """Where a series lives, for rejected.csv: its file, or the folder holding all its files."""
    unique = sorted(set(paths))
    if len(unique) == 1:
        return relative_path(unique[0], root)
    common = Path(os.path.commonpath([p.parent for p in unique]))
    return relative_path(common, root) + "/"


def dicom_candidate(
    frames: Sequence[FrameHeader], root: Path, options: SeriesOptions, expected: int | None
) -> Candidate:
    """Check one DICOM series and build its lazily-decoding stack (SeriesRejected if unusable)."""
    first = frames[0]
    if first.samples_per_pixel != 1 or first.photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise SeriesRejected(
            f"colour or palette image (PhotometricInterpretation {first.photometric or '?'}, "
            f"{first.samples_per_pixel} samples per pixel): a greyscale MR series is needed"
        )
    modalities = sorted({f.modality for f in frames})
    if options.modality and modalities != [options.modality.upper()]:
        raise SeriesRejected(
            f"modality {'/'.join(m or '(none)' for m in modalities)}, but series.modality "
            f"requires {options.modality}"
        )
    _check_description(first.description, options, "SeriesDescription")
    if any(f.localizer for f in frames):
        raise SeriesRejected("localizer/scout by its ImageType (LOCALIZER)")
    for attribute, keyword in (
        ("position", "ImagePositionPatient"),
        ("orientation", "ImageOrientationPatient"),
        ("pixel_spacing", "PixelSpacing"),
    ):
        missing = sum(getattr(f, attribute) is None for f in frames)
        if missing:
            raise SeriesRejected(
                f"missing geometry: no valid {keyword} in {missing} of {len(frames)} slices "
                "(cannot order the slices by position)"
            )
    reference = first.orientation
    assert reference is not None
    odd = [f for f in frames if not same_orientation(f.orientation, reference)]  # type: ignore[arg-type]
    if odd:
        planes = Counter(np.round(f.orientation, 2).tobytes() for f in frames)  # type: ignore[arg-type]
        raise SeriesRejected(
            f"mixed orientation: {len(planes)} different ImageOrientationPatient values in one "
            "series (a multi-plane localizer or a mixed export)"
        )
    _mixed([(f.rows, f.cols) for f in frames], "pixel shape", lambda s: f"{s[0]}x{s[1]}")
    _mixed(
        [tuple(round(v, 3) for v in f.pixel_spacing) for f in frames],  # type: ignore[union-attr]
        "pixel spacing",
        lambda s: f"{s[0]}x{s[1]} mm",
    )
    try:
        frame = stack_frame(reference)
    except GeometryError as err:
        raise SeriesRejected(str(err)) from err
    _check_plane(frame.plane, options)
    positions = positions_along(frame.normal, np.array([f.position for f in frames]))
    order = _sorted_positions(positions)
    _check_count(len(frames), None)
    problem = spacing_problem(positions[order], options.spacing_tolerance)
    if problem:
        raise SeriesRejected(problem)
    _check_count(len(frames), expected)

    ordered = [frames[i] for i in order]
    rows, cols = frame.transform.shape(first.rows, first.cols)
    reader = DicomSliceReader(
        slices=tuple(DicomSlice.from_frame(f) for f in ordered),
        transform=frame.transform,
        shape=(rows, cols),
    )
    paths = tuple(sorted({f.path for f in frames}))
    sorted_positions = positions[order]
    stack = SliceStack(
        subject_id="",
        session_id="",
        source_format="dicom",
        series_hash=first.series_key,
        source_hash=source_fingerprint(paths, root),
        positions_mm=sorted_positions,
        spacing_mm=float(np.median(np.diff(sorted_positions))),
        pixel_spacing_mm=frame.transform.spacing(*first.pixel_spacing),  # type: ignore[misc]
        shape=(rows, cols),
        reader=reader,
        description=first.description,
    )
    return Candidate(stack, paths, first.series_number, first.derived)


def nifti_candidate(
    path: Path, root: Path, options: SeriesOptions, expected: int | None
) -> Candidate:
    """Check one NIfTI file and build its lazily-read axial stack (SeriesRejected if unusable)."""
    _check_description(nifti_stem(path), options, "file name")
    try:
        geometry, positions, spacing, shape = open_nifti(path)
    except NiftiError as err:
        raise SeriesRejected(str(err)) from err
    if np.any(np.diff(positions) <= 0):
        raise SeriesRejected("the affine does not give increasing axial positions (sheared?)")
    _check_count(len(positions), expected)
    stack = SliceStack(
        subject_id="",
        session_id="",
        source_format="nifti",
        series_hash=hash_uid(relative_path(path, root)),
        source_hash=source_fingerprint([path], root),
        positions_mm=positions,
        spacing_mm=float(np.median(np.diff(positions))),
        pixel_spacing_mm=spacing,
        shape=shape,
        reader=NiftiSliceReader(path, geometry),
        description=nifti_stem(path),
    )
    return Candidate(stack, (path,))


class AmbiguousSession(Exception):
    """Several series of a session qualify and no rule orders them."""


def choose(
    candidates: Sequence[Candidate], prefer: str
) -> tuple[Candidate, list[tuple[Candidate, str]]]:
    """The series a session uses and, for each other qualifying series, why it was not used.

    Raises :class:`AmbiguousSession` when two or more original (not DERIVED) series qualify and
    one lacks a SeriesNumber.
    """
    originals = [c for c in candidates if not c.derived]
    if len(originals) > 1 and any(c.series_number is None for c in originals):
        names = ", ".join(repr(c.stack.description) for c in originals)
        raise AmbiguousSession(
            f"{len(originals)} series qualify ({names}) and nothing orders them (NIfTI files and "
            "series without SeriesNumber cannot be ranked); name the one to use with "
            "series.description_include, e.g. series.description_include='(?i)t1w'"
        )

    def rank(c: Candidate) -> tuple[bool, float, str]:
        number = float("inf") if c.series_number is None else float(c.series_number)
        return (c.derived, number if prefer == "first" else -number, c.stack.series_hash)

    ranked = sorted(candidates, key=rank)
    chosen = ranked[0]
    label = f"SeriesNumber {chosen.series_number}" if chosen.series_number is not None else "series"
    reason = (
        f"another qualifying series of this session was used ({label} {chosen.stack.description!r},"
        f" hash {chosen.stack.series_hash}); rule: original before derived, then "
        f"series.prefer={prefer} by SeriesNumber. Set series.description_include to pick another"
    )
    return chosen, [(c, reason) for c in ranked[1:]]
