"""Atomic writes: all or nothing, and files readable like any other."""

from __future__ import annotations

import stat

import pytest

from pipeline.utils.atomic import atomic_open, write_json, write_text


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

