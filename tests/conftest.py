"""Fixtures shared by every stage's tests; stage fixtures live in tests/<stage>/conftest.py,
plain helpers in tests/helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.synthetic.phantom import DicomWriter, Volume, make_volume

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (where conf/ and pyproject.toml live)."""
    return REPO_ROOT


@pytest.fixture
def quick_freeze(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip the ``pip freeze`` subprocess (a second or two per run) where a test doesn't need it."""
    monkeypatch.setattr("pipeline.provenance.pip_freeze", lambda: "fake==1.0\n")


@pytest.fixture
def dicom_writer() -> DicomWriter:
    """Writes DICOM series / enhanced MR / NIfTI exports of a known volume (one study)."""
    return DicomWriter()


@pytest.fixture
def truth_volume() -> Volume:
    """A small 8-slice axial volume (24 x 20 pixels) with distinct per-slice intensities."""
    return make_volume()
