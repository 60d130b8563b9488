"""Crash-safe writes: write to a temporary file in the target's folder, then rename.

A rename within one filesystem is atomic on POSIX, so a reader sees either the old file or the
complete new one, never a half-written file left by a crash or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _default_file_mode() -> int:
    """The mode ``open()`` would give a new file under the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


# mkstemp creates files readable by their owner only; the final file should look like any
# other file the user writes (shared cohorts on a cluster are read by a group).
_FILE_MODE = _default_file_mode()


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], suffix: str = "", durable: bool = True
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds.

    ``suffix`` keeps an extension on the temporary name for writers that insist on one
    (``np.save`` appends ``.npy``, matplotlib picks the format from it). ``durable=False`` skips
    the ``fsync``: still atomic against a crash of the program, but after a crash of the whole
    machine the file may be damaged, so use it only for files the reader verifies (and can
    rebuild), where the fsync would cost more than the write.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


#: Temporary names of :func:`write_bytes`: this process's id and a counter (see there).
_TEMPORARY_NUMBERS = itertools.count()


def write_bytes(path: str | os.PathLike[str], data: bytes | memoryview) -> None:
    """Atomically write ``data`` to ``path``, without ``fsync`` (``atomic_path``'s
    ``durable=False``: a file the reader verifies and can rebuild).

    The same guarantee as :func:`atomic_path` in four system calls (create, write, close,
    rename) instead of nine: the temporary file is created with its final mode, named by this
    process's id and a counter rather than by ``mkstemp``, and the folder is made only when
    missing. Why: the preprocess workers write one small result per subject, and on a 50 KB
    result this took 0.28-0.29 ms against 0.40 ms through ``atomic_path`` (2-core machine,
    ext4; 1,000 writes each).
    """
    target = os.fspath(path)
    folder, name = os.path.split(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = os.path.join(folder, f".{name}.{os.getpid()}-{next(_TEMPORARY_NUMBERS)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)  # the umask applies, as for open()
            break
        except FileExistsError:  # left by a killed process that had this id: the next number
            continue
        except FileNotFoundError:
            os.makedirs(folder or ".", exist_ok=True)
    try:
        try:
            view = memoryview(data)
            while view:  # os.write may write less than asked
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; it replaces ``path`` when the block exits cleanly."""
    if not mode.startswith(("w", "x")):
        raise ValueError(f"atomic_open writes whole files; mode {mode!r} is not supported")
    with atomic_path(path) as tmp, open(tmp, mode.replace("x", "w"), **kwargs) as fh:
        yield fh


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write a UTF-8 text file."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (NaN is written as ``null``-safe ``NaN``)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_csv(path: str | os.PathLike[str], frame: Any, **kwargs: Any) -> None:
    """Atomically write a pandas DataFrame as CSV (no index unless asked)."""
    kwargs.setdefault("index", False)
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        frame.to_csv(fh, **kwargs)
