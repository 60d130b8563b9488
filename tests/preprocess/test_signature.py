"""The signature of the input files: it changes with what the plan depends on, and only that."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.preprocess.signature import PROVENANCE_KEY, FoundSubjects, SourceSignature

SETTINGS = {"format": 1, "recipe": "abc", "classes": ["CN", "MCI", "AD"], "qc_samples": 12}


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    for subject in ("s1", "s2", "unlabelled"):
        folder = tmp_path / "root" / subject / "t1"
        folder.mkdir(parents=True)
        (folder / "IM0001").write_bytes(b"x" * 10)
    (tmp_path / "labels.csv").write_text("subject_id,label\ns1,CN\ns2,AD\n")
    return tmp_path / "root"


def stored(root: Path) -> dict:
    signature = SourceSignature.of(
        FoundSubjects.discover(root), ["s2", "s1"], SETTINGS, str(root.parent / "labels.csv")
    )
    assert signature.subjects == ("s1", "s2")
    return {PROVENANCE_KEY: signature.as_json()}


def matches(root: Path, provenance: dict, settings: dict = SETTINGS) -> bool:
    labels = str(root.parent / "labels.csv")
    return SourceSignature.matches(FoundSubjects.discover(root), settings, labels, provenance)


def test_unchanged_files_match(root: Path) -> None:
    assert matches(root, stored(root))


def test_only_planned_subjects_are_fingerprinted(root: Path) -> None:
    provenance = stored(root)
    os.utime(root / "unlabelled" / "t1" / "IM0001", ns=(1, 1))  # not planned: not looked at
    assert matches(root, provenance)
    os.utime(root / "s1" / "t1" / "IM0001", ns=(1, 1))
    assert not matches(root, provenance)


@pytest.mark.parametrize(
    "change",
    ["new folder", "removed subject", "stray file", "labels bytes", "settings", "old cache"],
)
def test_what_the_plan_depends_on_changes_it(root: Path, change: str) -> None:
    provenance, settings = stored(root), SETTINGS
    if change == "new folder":
        (root / "s3").mkdir()
    elif change == "removed subject":
        (root / "s2" / "t1" / "IM0001").unlink()
        (root / "s2" / "t1").rmdir()
        (root / "s2").rmdir()
    elif change == "stray file":
        (root / "notes.txt").write_text("stray")
    elif change == "labels bytes":
        labels = root.parent / "labels.csv"
        labels.write_bytes(labels.read_bytes().replace(b"\n", b"\r\n"))
    elif change == "settings":
        settings = SETTINGS | {"recipe": "other"}
    else:
        provenance = {}
    assert not matches(root, provenance, settings)
