"""Find subjects and their files on disk, and fingerprint files so reruns can tell what changed.

Layout (see data/README.md): ``<root>/<subject_id>/…any depth…/files`` with any file names
(``.dcm``, ``.IMA``, none at all), or a top-level NIfTI ``<root>/<subject_id>.nii[.gz]``. Hidden
folders (``.git``, ``.Trash``) are not walked; hidden files inside subject folders are still
looked at, and counted as non-DICOM when they are (``.DS_Store``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from pipeline.preprocess.rejection import Rejection

NIFTI_SUFFIXES = (".nii.gz", ".nii")

#: Top-level files that belong to an export, not to a subject: skipped without a rejection row.
EXPORT_INDEX_FILES = frozenset({"DICOMDIR"})


def is_nifti(path: Path) -> bool:
    """True for ``.nii`` and ``.nii.gz`` files (any letter case)."""
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: Path) -> str:
    """The file name without ``.nii``/``.nii.gz``: ``sub-01_T1w.nii.gz`` -> ``sub-01_T1w``."""
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def relative_path(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> str:
    """``path`` relative to ``root`` with forward slashes (the path itself if outside root)."""
    # String work, not Path.relative_to: this runs for every file of a cohort.
    text, prefix = os.fspath(path), os.fspath(root).rstrip(os.sep) + os.sep
    if text.rstrip(os.sep) + os.sep == prefix:
        return "."
    if text.startswith(prefix):
        text = text[len(prefix) :]
    return text.replace(os.sep, "/")


def relative_reason(reason: str, root: str | os.PathLike[str]) -> str:
    """``reason`` with every path under ``root`` written relative to it, as ``path`` is.

    Library messages (nibabel's, the OS's) name files by their full path; a reason must not.
    """
    for prefix in {os.fspath(root), os.path.realpath(root)}:
        prefix = prefix.rstrip(os.sep) + os.sep
        reason = reason.replace(prefix, "")
    return reason


def discover_subjects(root: Path) -> tuple[list[tuple[str, Path]], list[Rejection]]:
    """Subject folders ``<root>/<subject_id>/`` and top-level ``<subject_id>.nii[.gz]`` files.

    Returns ``(subjects, rejections)``: ``subjects`` sorted by id as ``(subject_id, path)`` where
    path is the folder (or the NIfTI file); stray top-level files and a NIfTI file whose id also
    names a folder become rejection rows. Raises FileNotFoundError if ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"data.root {root} is not a folder; point data.root at the folder holding one "
            "sub-folder (or one .nii/.nii.gz file) per subject"
        )
    folders: dict[str, Path] = {}
    nifti_files: dict[str, Path] = {}
    rejections: list[Rejection] = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue  # .DS_Store, .git, editor droppings: not part of the cohort
        if entry.is_dir():
            folders[entry.name] = entry
        elif is_nifti(entry):
            nifti_files[nifti_stem(entry)] = entry
        elif entry.name not in EXPORT_INDEX_FILES:
            rejections.append(
                Rejection(
                    subject_id="",
                    session_id="",
                    path=entry.name,
                    level="file",
                    reason="file at the top of data.root, outside any subject folder: move it "
                    "into <subject_id>/ or name a NIfTI volume <subject_id>.nii.gz",
                )
            )
    for subject_id, path in nifti_files.items():
        if subject_id in folders:
            rejections.append(
                Rejection(
                    subject_id=subject_id,
                    session_id="",
                    path=path.name,
                    level="file",
                    reason=f"subject {subject_id} also has a folder {subject_id}/, which is used; "
                    "move this volume into the folder to use both",
                )
            )
        else:
            folders[subject_id] = path
    subjects = sorted(folders.items(), key=lambda item: item[0])
    return subjects, rejections


def list_files(subject_path: Path) -> list[Path]:
    """Every file under a subject folder (any depth, sorted), or ``[subject_path]`` for a file."""
    subject_path = Path(subject_path)
    if subject_path.is_file():
        return [subject_path]
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(subject_path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        folder = Path(dirpath)  # parsed once: a child path costs a third of a new one
        files.extend(folder / name for name in sorted(filenames))
    return files


def source_fingerprint(
    paths: Iterable[Path],
    root: Path,
    length: int = 16,
    known: Mapping[str, tuple[int, int]] | None = None,
) -> str:
    """Hash of the files' relative paths, sizes and modification times: changes when input does.

    ``known``: ``(st_size, st_mtime_ns)`` by path string of files already looked at (the header
    reader's ``fstat``); the other files are stat'ed here.
    """
    return _fingerprint(sorted(os.fspath(p) for p in paths), root, length, known)


def folder_fingerprint(subject_path: str | os.PathLike[str], root: Path, length: int = 16) -> str:
    """``source_fingerprint(list_files(subject_path), root)``, computed without Path objects.

    Why: deciding that a cohort is up to date fingerprints every file of every subject; on
    2,000 demo subjects (92,000 files) the Path-based walk took most of the "up to date" answer.
    """
    top = os.fspath(subject_path)
    if not os.path.isdir(top):
        return source_fingerprint([Path(top)], root, length)
    files: list[str] = []
    folders = [top]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if not entry.is_dir():
                    files.append(entry.path)
                elif not entry.is_symlink() and not entry.name.startswith("."):
                    folders.append(entry.path)  # as os.walk: linked folders are not walked
    return _fingerprint(sorted(files), root, length)


def _fingerprint(
    files: list[str], root: Path, length: int, known: Mapping[str, tuple[int, int]] | None = None
) -> str:
    """The fingerprint of ``files`` (sorted path strings): one line a file hashed as one string,
    its path relative to ``root`` (as :func:`relative_path` writes it), size and mtime."""
    prefix = os.fspath(root).rstrip(os.sep) + os.sep
    cut = len(prefix)
    relatives = [
        path[cut:] if path.startswith(prefix) else relative_path(path, root) for path in files
    ]
    if os.sep != "/":
        relatives = [relative.replace(os.sep, "/") for relative in relatives]  # as relative_path
    known = known or {}
    stats = [known.get(path) or _size_and_mtime(path) for path in files]
    lines = [
        f"{relative}\0{size}\0{mtime_ns}\n"
        for relative, (size, mtime_ns) in zip(relatives, stats, strict=True)
    ]
    return hashlib.sha256("".join(lines).encode()).hexdigest()[:length]


def _size_and_mtime(path: str) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_size, status.st_mtime_ns
