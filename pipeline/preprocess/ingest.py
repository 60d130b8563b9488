"""Ingestion: one subject's files on disk -> :class:`SliceStack` objects of the output plane.

The public entry of the preprocess stage's reading side::

    subjects, stray = discover_subjects(root)
    context = IngestContext.from_recipe(root, recipe)   # series.*, slices.expected, data.root
    for subject_id, path in subjects:
        result = scan_subject(subject_id, path, context)
        for stack in result.stacks:             # one per session, sorted by session_id
            pixels = stack.read([21, 22, 23])   # decodes just what these slices need
        rows = [r.as_row() for r in result.rejections]

What happens to a subject's files, and where each rule lives:

- every file under the subject folder is looked at (:mod:`.discover`); files that are not DICOM
  images (text, ``.DS_Store``, DICOMDIR, structured reports) are counted, not rejected;
- DICOM headers only, no pixels (:mod:`.dicom_headers`, with :mod:`.dicom_raw` as the fast
  path for classic files, and :mod:`.dicom_siblings` for the files that repeat another's
  header); a corrupt or truncated file is a ``file`` rejection with the reason,
  and a second copy of one SOP instance is rejected as a duplicate while the first copy is used;
- frames are grouped into series by SeriesInstanceUID, series into sessions (:mod:`.sessions`);
- each series (or NIfTI file) is read into a volume by its format's reader
  (:mod:`.dicom_volume`, :mod:`.nifti`), then, format-free, given the slices of the output
  plane (:mod:`.series_select`, :mod:`.geometry`);
- each session keeps one series by a stated rule; every other series, and every session or
  subject left without a stack, gets a rejection row saying why. The other qualifying series
  wait in :attr:`ScanResult.fallbacks`, for a chosen series that fails at decoding
  (:mod:`.fallback`);
- every reason names files relative to ``data.root``, as the ``path`` column does.

Privacy: nothing returned holds a header name, ID, date or UID (UIDs are hashed).
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.preprocess.dicom_headers import DicomFileError, FrameHeader, NotDicomImageError
from pipeline.preprocess.dicom_siblings import SiblingReader
from pipeline.preprocess.dicom_volume import DicomSeries, DicomSeriesReader
from pipeline.preprocess.discover import (
    discover_subjects,
    is_nifti,
    list_files,
    relative_reason,
    source_fingerprint,
)
from pipeline.preprocess.fallback import Fallbacks
from pipeline.preprocess.nifti import NiftiReader
from pipeline.preprocess.options import IngestContext, SeriesOptions
from pipeline.preprocess.series_select import (
    AmbiguousSession,
    Candidate,
    SeriesRejected,
    choose,
    series_location,
    stack_from_volume,
)
from pipeline.preprocess.sessions import SessionUnit, assign_sessions
from pipeline.preprocess.stack import Rejection, SliceStack
from pipeline.preprocess.volume import VolumeReader

__all__ = [
    "IngestContext",
    "ScanResult",
    "SeriesOptions",
    "discover_subjects",
    "list_files",
    "scan_subject",
    "source_fingerprint",
]

#: One reader per format (MONAI's image_reader pattern): a new format is a new entry.
READERS: dict[str, VolumeReader] = {"dicom": DicomSeriesReader(), "nifti": NiftiReader()}


@dataclass
class ScanResult:
    """What one subject's folder gave: its stacks, and everything not used with the reason."""

    stacks: list[SliceStack] = field(default_factory=list)  # one per accepted session
    rejections: list[Rejection] = field(default_factory=list)
    n_files: int = 0  # files looked at
    n_non_dicom: int = 0  # not DICOM images (text, .DS_Store, DICOMDIR, reports): counted only
    # The qualifying series not chosen, for a session whose chosen series fails at decoding.
    fallbacks: Fallbacks = field(default_factory=lambda: Fallbacks("first"))


@dataclass
class _Inventory:
    """A subject's files sorted into DICOM series and NIfTI volumes."""

    series: dict[str, list[FrameHeader]] = field(default_factory=dict)
    nifti: dict[str, Path] = field(default_factory=dict)  # unit key -> file
    bad_files: list[tuple[Path, str]] = field(default_factory=list)
    n_non_dicom: int = 0
    file_stats: dict[str, tuple[int, int]] = field(default_factory=dict)  # see DicomSeries


def _take_inventory(files: list[Path]) -> _Inventory:
    inventory = _Inventory()
    first_copy: dict[str, Path] = {}
    headers = SiblingReader()  # most files repeat most of the previous one's header
    for path in files:
        if is_nifti(path):
            inventory.nifti[f"nifti:{path}"] = path
            continue
        try:
            frames = headers.read(path)
        except NotDicomImageError:
            inventory.n_non_dicom += 1
            continue
        except DicomFileError as err:
            inventory.bad_files.append((path, str(err)))
            continue
        except OSError as err:  # its message would name the file by its full path
            inventory.bad_files.append((path, f"cannot be read ({err.strerror or err})"))
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
    inventory.file_stats = headers.file_stats
    return inventory


def _folders(path: Path, subject_dir: Path) -> tuple[str, ...]:
    """The folders between ``subject_dir`` and the file ``path``."""
    return _folder_parts(path.parent, subject_dir)


def _folder_parts(folder: Path, subject_dir: Path) -> tuple[str, ...]:
    if folder == subject_dir:  # the common case, without relative_to's parsing
        return ()
    try:
        return folder.relative_to(subject_dir).parts
    except ValueError:
        return ()


def _frame_folders(frames: list[FrameHeader], subject_dir: Path) -> tuple[tuple[str, ...], ...]:
    """The folders (below ``subject_dir``) that hold ``frames``' files, sorted."""
    # Folder names as strings first: a Path's parent is a new Path, ~5 us a file.
    parents = {os.path.dirname(frame.path) for frame in frames}
    return tuple(sorted({_folder_parts(Path(parent), subject_dir) for parent in parents}))


def _session_units(inventory: _Inventory, subject_dir: Path) -> list[SessionUnit]:
    units = [
        SessionUnit(
            key=key,
            group=frames[0].study_key,
            folders=_frame_folders(frames, subject_dir),
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


@dataclass(frozen=True)
class _Subject:
    """The subject being scanned, with its context: what every step below needs."""

    subject_id: str
    folder: Path
    context: IngestContext

    def reject(self, session: str, paths: Sequence[Path], level: str, reason: str) -> Rejection:
        where = series_location(paths, self.context.root)
        return Rejection(self.subject_id, session, where, level, reason)


@dataclass
class _Sessions:
    """Per session: the qualifying candidates, how many series were looked at, their files."""

    candidates: dict[str, list[Candidate]] = field(default_factory=dict)
    looked_at: Counter[str] = field(default_factory=Counter)
    paths: dict[str, list[Path]] = field(default_factory=dict)


def scan_subject(
    subject_id: str,
    subject_dir: Path,
    context: IngestContext,
    sessions: Collection[str] | None = None,
) -> ScanResult:
    """Headers-only scan of one subject: its accepted stacks and the rejections.

    ``subject_dir`` is the subject's folder (or its top-level NIfTI file); ``context`` holds
    ``data.root`` (rejection paths are relative to it) and the ``series``/``slices`` rules;
    ``sessions`` the subject's session ids from the labels table, if it has any (see
    :mod:`.sessions` for how sessions are named otherwise).
    """
    subject = _Subject(subject_id, Path(subject_dir), context)
    files = list_files(subject.folder)
    inventory = _take_inventory(files)
    result = ScanResult(
        n_files=len(files),
        n_non_dicom=inventory.n_non_dicom,
        fallbacks=Fallbacks(context.series.prefer),
    )
    result.rejections += _file_rejections(subject, inventory)
    found = _read_series(subject, inventory, sessions, result.rejections)
    _choose_per_session(subject, found, result)
    result.rejections = _relative_reasons(result.rejections, context.root)
    if not result.stacks:
        result.rejections.append(
            subject.reject("", [subject.folder], "subject", _no_stack_reason(result, inventory))
        )
    return result


def _file_rejections(subject: _Subject, inventory: _Inventory) -> list[Rejection]:
    return [subject.reject("", [path], "file", reason) for path, reason in inventory.bad_files]


def _unit_paths(inventory: _Inventory, key: str) -> list[Path]:
    if key in inventory.series:
        return [f.path for f in inventory.series[key]]
    return [inventory.nifti[key]]


def _read_unit(inventory: _Inventory, key: str, context: IngestContext) -> Candidate:
    """The unit's volume, by its format's reader, as a stack of the output plane."""
    if key in inventory.series:
        series = DicomSeries(inventory.series[key], inventory.file_stats)
        volume = READERS["dicom"].read(series, context)
    else:
        volume = READERS["nifti"].read(inventory.nifti[key], context)
    return stack_from_volume(volume, context)


def _read_series(
    subject: _Subject,
    inventory: _Inventory,
    sessions: Collection[str] | None,
    rejections: list[Rejection],
) -> _Sessions:
    """Assign every series to its session and read it; series rejections go to ``rejections``."""
    units = _session_units(inventory, subject.folder)
    assigned, conflicts = assign_sessions(units, sessions)
    found = _Sessions()
    for unit in units:
        paths = _unit_paths(inventory, unit.key)
        if unit.key in conflicts:
            rejections.append(subject.reject("", paths, "series", conflicts[unit.key]))
            continue
        session = assigned[unit.key]
        found.looked_at[session] += 1
        found.paths.setdefault(session, []).extend(paths)
        try:
            candidate = _read_unit(inventory, unit.key, subject.context)
        except SeriesRejected as err:
            rejections.append(subject.reject(session, paths, "series", str(err)))
            continue
        found.candidates.setdefault(session, []).append(candidate)
    return found


def _choose_per_session(subject: _Subject, found: _Sessions, result: ScanResult) -> None:
    """One stack per session by the choice rule; the other series and empty sessions rejected."""
    prefer = subject.context.series.prefer
    for session in sorted(found.looked_at):
        candidates = found.candidates.get(session)
        if not candidates:
            reason = (
                f"no usable series: none of the {found.looked_at[session]} series found "
                "qualified (see the series rows for why)"
            )
            result.rejections.append(
                subject.reject(session, found.paths[session], "session", reason)
            )
            continue
        try:
            chosen, others = choose(candidates, prefer)
        except AmbiguousSession as err:
            result.rejections.append(
                subject.reject(session, found.paths[session], "session", str(err))
            )
            continue
        chosen = _for_session(chosen, subject.subject_id, session)
        result.stacks.append(chosen.stack)
        result.fallbacks.add(chosen, series_location(chosen.paths, subject.context.root))
        for other, reason in others:
            row = subject.reject(session, other.paths, "series", reason)
            result.rejections.append(row)
            result.fallbacks.add(_for_session(other, subject.subject_id, session), row.path, row)


def _for_session(candidate: Candidate, subject_id: str, session: str) -> Candidate:
    stack = dataclasses.replace(candidate.stack, subject_id=subject_id, session_id=session)
    return dataclasses.replace(candidate, stack=stack)


def _relative_reasons(rows: list[Rejection], root: Path) -> list[Rejection]:
    """Library messages in reasons name files relative to ``data.root``, as ``path`` does."""
    out = []
    for row in rows:
        reason = relative_reason(row.reason, root)
        out.append(row if reason == row.reason else dataclasses.replace(row, reason=reason))
    return out


def _no_stack_reason(result: ScanResult, inventory: _Inventory) -> str:
    if result.n_files == 0:
        return "no files in the subject folder"
    if not inventory.series and not inventory.nifti:
        return (
            f"no DICOM or NIfTI images among {result.n_files} file(s) "
            f"({result.n_non_dicom} not DICOM images, {len(inventory.bad_files)} unreadable)"
        )
    return "no usable image series (see the file/series rows of this subject for why)"
