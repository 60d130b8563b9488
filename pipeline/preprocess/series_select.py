"""Which volumes can give a stack, in which plane, and which one each session uses.

A DICOM series (or a NIfTI file) qualifies when it passes every check below; the first check it
fails is its rejection reason, phrased so a person knows what to change. Checks 1-3 and 5-8 are
DICOM's (:mod:`.dicom_volume`; a NIfTI file has its own header checks in :mod:`.nifti`), the
others apply to both formats alike (:func:`stack_from_volume`):

1. greyscale pixels (one sample, MONOCHROME1/2);
2. ``series.modality`` (MR);
3. not a localizer/scout by description (``series.description_exclude``) or by its ImageType;
4. description matches ``series.description_include`` when set (NIfTI: the file name);
5. geometry present in every slice (ImagePositionPatient, ImageOrientationPatient, PixelSpacing);
6. one orientation, one pixel shape, one pixel spacing;
7. no repeated positions (4D/fMRI, multi-echo, or a duplicated slice);
8. at least 3 slices; even spacing (``series.spacing_tolerance``), so no gap;
9. the output plane (``series.plane``; null keeps the acquired plane): a 3D volume acquired in
   another plane is resliced; a 2D (thick-slice) series in another plane is refused unless
   ``series.reslice_2d=true``, because reslicing it would blur; a volume too oblique to name
   its plane is refused (:mod:`.geometry`);
10. exactly ``slices.expected`` acquired slices when that is set.

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.preprocess.discover import relative_path
from pipeline.preprocess.geometry import GeometryError, plane_view
from pipeline.preprocess.options import IngestContext, SeriesOptions
from pipeline.preprocess.stack import SliceStack
from pipeline.preprocess.volume import Volume

MIN_SLICES = 3


class SeriesRejected(ValueError):
    """A series that cannot be a stack; the message is the reason for rejected.csv."""


@dataclass(frozen=True)
class Candidate:
    """A qualifying series: its stack (ids filled in later) and what the choice rule looks at."""

    stack: SliceStack
    paths: tuple[Path, ...]
    series_number: int | None = None
    derived: bool = False


def check_description(description: str, options: SeriesOptions, what: str) -> None:
    """Checks 3 (by description) and 4; ``what`` names the field ("SeriesDescription")."""
    if options.description_exclude and re.search(options.description_exclude, description):
        raise SeriesRejected(
            f"localizer/scout by its {what} {description!r} (series.description_exclude)"
        )
    if options.description_include and not re.search(options.description_include, description):
        raise SeriesRejected(
            f"{what} {description!r} does not match series.description_include "
            f"{options.description_include!r}"
        )


def check_min_count(n: int) -> None:
    """Check 8's first half: enough slices to be a stack."""
    if n < MIN_SLICES:
        raise SeriesRejected(
            f"{n} slice(s): too few for a stack (a localizer?); at least {MIN_SLICES} are needed"
        )


def _check_expected(n: int, expected: int | None, acquisition: str) -> None:
    if expected is not None and n != expected:
        hint = ""
        if acquisition == "3D":
            hint = "; a 3D volume: slices.expected=null accepts any count"
        raise SeriesRejected(f"{n} slices, expected {expected} (slices.expected){hint}")


def output_plane(volume: Volume, options: SeriesOptions) -> str:
    """Check 9: the plane the stack's slices are taken in (SeriesRejected for a 2D series that
    would have to be resliced)."""
    geometry = volume.geometry
    try:
        geometry.check_obliquity()
    except GeometryError as err:
        raise SeriesRejected(str(err)) from err
    acquired = geometry.acquired_plane
    wanted = options.plane or acquired
    if wanted != acquired and geometry.acquisition == "2D" and not options.reslice_2d:
        raise SeriesRejected(
            f"2D {acquired} series, {geometry.slice_spacing_mm:.1f} mm slices: reslicing to "
            f"{wanted} would blur; set series.reslice_2d=true to accept (or series.plane=null "
            f"to keep its {acquired} slices)"
        )
    return wanted


def stack_from_volume(volume: Volume, context: IngestContext) -> Candidate:
    """Checks 9 and 10, then the volume's stack in the output plane (SeriesRejected if unusable)."""
    geometry = volume.geometry
    plane = output_plane(volume, context.series)
    _check_expected(
        geometry.shape[geometry.slice_axis], context.expected_slices, geometry.acquisition
    )
    try:
        view = plane_view(geometry, plane)
    except GeometryError as err:
        raise SeriesRejected(str(err)) from err
    check_min_count(view.n_slices)
    stack = SliceStack(
        subject_id="",
        session_id="",
        source_format=volume.source_format,
        series_hash=volume.series_hash,
        source_hash=volume.source_hash,
        view=view,
        voxels=volume.voxels,
        acquired_plane=geometry.acquired_plane,
        acquisition=geometry.acquisition,
        description=volume.description,
    )
    return Candidate(stack, volume.paths, volume.series_number, volume.derived)


def series_location(paths: Sequence[Path], root: Path) -> str:
    """Where a series lives, for rejected.csv: its file, or the folder holding all its files."""
    unique = {os.fspath(p) for p in paths}  # strings: Path objects compare and hash slowly
    if len(unique) == 1:
        return relative_path(unique.pop(), root)
    folders = {os.path.dirname(p) for p in unique}  # one, in the usual case
    common = folders.pop() if len(folders) == 1 else os.path.commonpath(sorted(folders))
    return relative_path(common, root) + "/"


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
    reason = not_chosen_reason(chosen, prefer)
    return chosen, [(c, reason) for c in ranked[1:]]


def not_chosen_reason(chosen: Candidate, prefer: str) -> str:
    """Why a qualifying series was not used, when ``chosen`` was."""
    label = f"SeriesNumber {chosen.series_number}" if chosen.series_number is not None else "series"
    return (
        f"another qualifying series of this session was used ({label} {chosen.stack.description!r},"
        f" hash {chosen.stack.series_hash}); rule: original before derived, then "
        f"series.prefer={prefer} by SeriesNumber. Set series.description_include to pick another"
    )
