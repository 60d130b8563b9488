"""Atomic writes: all or nothing, and files readable like any other."""

from __future__ import annotations

import stat

import pytest

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


@pytest.mark.parametrize("durable", [True, False])
def test_write_bytes_replaces_whole_files_and_cleans_up_a_failed_write(tmp_path, durable):
    target = tmp_path / "sub" / "result.npz"
    write_bytes(target, b"first", durable=durable)
    write_bytes(target, memoryview(b"second"), durable=durable)
    assert target.read_bytes() == b"second"
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    with pytest.raises(TypeError):
        write_bytes(target, "text is not bytes", durable=durable)  # type: ignore[arg-type]
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["result.npz"]
