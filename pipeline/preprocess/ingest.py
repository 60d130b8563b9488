"""Ingestion: one subject's files on disk -> geometrically sorted :class:`SliceStack` objects.

The public entry of the preprocess stage's reading side::

    subjects, stray = discover_subjects(root)
    for subject_id, path in subjects:
        result = scan_subject(subject_id, path, root, cfg.series, cfg.slices.expected)
        for stack in result.stacks:             # one per session, sorted by session_id
            pixels = stack.read([21, 22, 23])   # decodes just these slices
        rows = [r.as_row() for r in result.rejections]

What happens to a subject's files, and where each rule lives:

- every file under the subject folder is looked at (:mod:`.discover`); files that are not DICOM
  images (text, ``.DS_Store``, DICOMDIR, structured reports) are counted, not rejected;
- DICOM headers only, no pixels (:mod:`.dicom_headers`, with :mod:`.dicom_raw` as the fast
  path for classic files); a corrupt or truncated file is a ``file`` rejection with the reason,
  and a second copy of one SOP instance is rejected as a duplicate while the first copy is used;
- frames are grouped into series by SeriesInstanceUID, series into sessions (:mod:`.sessions`);
- each series is checked and sorted by ImagePositionPatient along the slice normal
  (:mod:`.series_select`, :mod:`.geometry`), NIfTI files likewise (:mod:`.nifti`);
- each session keeps one series by a stated rule; every other series, and every session or
  subject left without a stack, gets a rejection row saying why.

Privacy: nothing returned holds a header name, ID, date or UID (UIDs are hashed).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.preprocess.dicom_headers import (
    DicomFileError,
    FrameHeader,
    NotDicomImageError,
    read_frame_headers,
)
from pipeline.preprocess.discover import (
    discover_subjects,
    is_nifti,
    list_files,
    relative_path,
    source_fingerprint,
)
from pipeline.preprocess.series_select import (
    AmbiguousSession,
    Candidate,
    SeriesOptions,
    SeriesRejected,
    choose,
    dicom_candidate,
    nifti_candidate,
    series_location,
)
from pipeline.preprocess.sessions import SessionUnit, assign_sessions
from pipeline.preprocess.stack import Rejection, SliceStack

__all__ = [
    "ScanResult",
    "SeriesOptions",
    "discover_subjects",
    "list_files",
    "scan_subject",
    "source_fingerprint",
]


@dataclass
class ScanResult:
    """What one subject's folder gave: its stacks, and everything not used with the reason."""

    stacks: list[SliceStack] = field(default_factory=list)  # one per accepted session
    rejections: list[Rejection] = field(default_factory=list)
    n_files: int = 0  # files looked at
    n_non_dicom: int = 0  # not DICOM images (text, .DS_Store, DICOMDIR, reports): counted only


@dataclass
class _Inventory:
    """A subject's files sorted into DICOM series and NIfTI volumes."""

    series: dict[str, list[FrameHeader]] = field(default_factory=dict)
    nifti: dict[str, Path] = field(default_factory=dict)  # unit key -> file
    bad_files: list[tuple[Path, str]] = field(default_factory=list)
    n_non_dicom: int = 0


def _take_inventory(files: list[Path]) -> _Inventory:
    inventory = _Inventory()
    first_copy: dict[str, Path] = {}
    for path in files:
        if is_nifti(path):
            inventory.nifti[f"nifti:{path}"] = path
            continue
        try:
            frames = read_frame_headers(path)
        except NotDicomImageError:
            inventory.n_non_dicom += 1
            continue
        except (DicomFileError, OSError) as err:
            inventory.bad_files.append((path, str(err)))
            continue
        original = first_copy.get(frames[0].instance_key)
        if original is not None:
            inventory.bad_files.append(
                (
                    path,
                    f"duplicate copy of {original.name} (same SOPInstanceUID); that copy is used",
                )
            )
            continue
        for frame in frames:
            first_copy.setdefault(frame.instance_key, path)
        inventory.series.setdefault(frames[0].series_key, []).extend(frames)
    return inventory


def _folders(path: Path, subject_dir: Path) -> tuple[str, ...]:
    try:
        return path.relative_to(subject_dir).parts[:-1]
    except ValueError:
        return ()


def _session_units(inventory: _Inventory, subject_dir: Path, root: Path) -> list[SessionUnit]:
    units = [
        SessionUnit(
            key=key,
            group=frames[0].study_key,
            folders=tuple(sorted({_folders(f.path, subject_dir) for f in frames})),
            order=frames[0].study_order,
        )
        for key, frames in inventory.series.items()
    ]
    for key, path in inventory.nifti.items():
        folders = _folders(path, subject_dir)
        units.append(
            SessionUnit(
                key=key,
                group="nifti:" + "/".join(folders),
                folders=(folders,),
                order="",
            )
        )
    return units


def scan_subject(
    subject_id: str,
    subject_dir: Path,
    root: Path,
    series_cfg: Mapping[str, Any],
    expected_slices: int | None,
    sessions: Collection[str] | None = None,
) -> ScanResult:
    """Headers-only scan of one subject: its accepted stacks and the rejections.

    ``subject_dir`` is the subject's folder (or its top-level NIfTI file); ``root`` is
    ``data.root``, against which rejection paths are written. ``series_cfg`` is the ``series:``
    config (see :class:`SeriesOptions`), ``expected_slices`` is ``slices.expected`` (None: any
    stack of at least 3 slices), ``sessions`` the subject's session ids from the labels table, if
    it has any (see :mod:`.sessions` for how sessions are named otherwise).
    """
    options = SeriesOptions.from_config(series_cfg)
    subject_dir, root = Path(subject_dir), Path(root)
    files = list_files(subject_dir)
    inventory = _take_inventory(files)
    result = ScanResult(n_files=len(files), n_non_dicom=inventory.n_non_dicom)
    for path, reason in inventory.bad_files:
        result.rejections.append(
            Rejection(subject_id, "", relative_path(path, root), "file", reason)
        )

    units = _session_units(inventory, subject_dir, root)
    assigned, conflicts = assign_sessions(units, sessions)
    by_session: dict[str, list[Candidate]] = {}
    looked_at: Counter[str] = Counter()
    locations: dict[str, list[Path]] = {}
    for unit in units:
        is_dicom = unit.key in inventory.series
        paths = (
            [f.path for f in inventory.series[unit.key]]
            if is_dicom
            else [inventory.nifti[unit.key]]
        )
        where = series_location(paths, root)
        if unit.key in conflicts:
            result.rejections.append(
                Rejection(subject_id, "", where, "series", conflicts[unit.key])
            )
            continue
        session = assigned[unit.key]
        looked_at[session] += 1
        locations.setdefault(session, []).extend(paths)
        try:
            candidate = (
                dicom_candidate(inventory.series[unit.key], root, options, expected_slices)
                if is_dicom
                else nifti_candidate(paths[0], root, options, expected_slices)
            )
        except SeriesRejected as err:
            result.rejections.append(Rejection(subject_id, session, where, "series", str(err)))
            continue
        by_session.setdefault(session, []).append(candidate)

    def reject_session(session: str, reason: str) -> None:
        where = series_location(locations[session], root)
        result.rejections.append(Rejection(subject_id, session, where, "session", reason))

    for session in sorted(looked_at):
        candidates = by_session.get(session)
        if not candidates:
            reject_session(
                session,
                f"no usable series: none of the {looked_at[session]} series found qualified "
                "(see the series rows for why)",
            )
            continue
        try:
            chosen, others = choose(candidates, options.prefer)
        except AmbiguousSession as err:
            reject_session(session, str(err))
            continue
        result.stacks.append(
            dataclasses.replace(chosen.stack, subject_id=subject_id, session_id=session)
        )
        for other, reason in others:
            result.rejections.append(
                Rejection(subject_id, session, series_location(other.paths, root), "series", reason)
            )

    if not result.stacks:
        result.rejections.append(
            Rejection(
                subject_id,
                "",
                relative_path(subject_dir, root),
                "subject",
                _no_stack_reason(result, inventory),
            )
        )
    return result


def _no_stack_reason(result: ScanResult, inventory: _Inventory) -> str:
    if result.n_files == 0:
        return "no files in the subject folder"
    if not inventory.series and not inventory.nifti:
        return (
            f"no DICOM or NIfTI images among {result.n_files} file(s) "
            f"({result.n_non_dicom} not DICOM images, {len(inventory.bad_files)} unreadable)"
        )
    return "no usable image series (see the file/series rows of this subject for why)"
