"""Atomic writes: all or nothing, and files readable like any other."""

from __future__ import annotations

import itertools
import os
import stat

import pytest

from pipeline.utils import atomic
from pipeline.utils.atomic import atomic_open, write_bytes, write_json, write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_written_files_follow_the_umask_not_mkstemps_0600(tmp_path):
    write_json(tmp_path / "a.json", {"x": 1})
    (tmp_path / "plain.txt").write_text("x")  # what open() gives under this process's umask
    mode = stat.S_IMODE((tmp_path / "a.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert mode != 0o600


def test_write_bytes_replaces_the_file_and_makes_the_folder(tmp_path):
    target = tmp_path / "new" / "deeper" / "result.npz"
    write_bytes(target, b"first")
    write_bytes(target, memoryview(b"second"))
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["result.npz"]
    (tmp_path / "plain").write_bytes(b"x")
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode)


def test_write_bytes_skips_a_temporary_name_left_by_a_killed_process(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_TEMPORARY_NUMBERS", itertools.count())
    stale = tmp_path / f".out.bin.{os.getpid()}-0.tmp"
    stale.write_bytes(b"left over")
    write_bytes(tmp_path / "out.bin", b"data")
    assert (tmp_path / "out.bin").read_bytes() == b"data"
    assert stale.read_bytes() == b"left over"  # not overwritten, not taken as the result


def test_a_failed_write_bytes_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    write_bytes(target, b"old")

    def failing_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk gone"):
        write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
