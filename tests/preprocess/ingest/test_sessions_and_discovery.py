"""Subjects on disk, and how several visits of one subject become sessions."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.uid import generate_uid

from pipeline.preprocess.discover import (
    discover_subjects,
    folder_fingerprint,
    list_files,
    source_fingerprint,
)
from pipeline.preprocess.ingest import IngestContext, scan_subject
from pipeline.preprocess.sessions import SessionUnit, assign_sessions


def scan(subject_id, path, root, series_cfg, expected=None, **kwargs):
    """``scan_subject`` under the context of a ``series:`` section and ``slices.expected``."""
    context = IngestContext.from_recipe(
        root, {"series": series_cfg, "slices": {"expected": expected}}
    )
    return scan_subject(subject_id, path, context, **kwargs)


def test_discover_subject_folders_nifti_files_and_strays(tmp_path):
    for name in ("sub-02", "sub-01", ".git"):
        (tmp_path / name).mkdir()
    (tmp_path / "sub-03.nii.gz").write_bytes(b"")
    (tmp_path / "sub-01.nii").write_bytes(b"")  # clashes with the folder sub-01/
    (tmp_path / "labels.csv").write_text("subject_id,label\n")
    (tmp_path / "DICOMDIR").write_bytes(b"")  # index of a CD export: skipped quietly
    (tmp_path / ".DS_Store").write_bytes(b"")
    subjects, rejected = discover_subjects(tmp_path)
    assert [(s, p.name) for s, p in subjects] == [
        ("sub-01", "sub-01"),
        ("sub-02", "sub-02"),
        ("sub-03", "sub-03.nii.gz"),
    ]
    assert sorted((r.path, r.level) for r in rejected) == [
        ("labels.csv", "file"),
        ("sub-01.nii", "file"),
    ]
    stray = next(r.reason for r in rejected if r.path == "labels.csv")
    assert "outside any subject folder" in stray


def test_discover_missing_root_says_what_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data\.root .* is not a folder"):
        discover_subjects(tmp_path / "nope")


def test_fingerprint_changes_with_content_not_with_listing_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"1")
    b.write_bytes(b"22")
    before = source_fingerprint([a, b], tmp_path)
    assert source_fingerprint([b, a], tmp_path) == before
    b.write_bytes(b"333")
    assert source_fingerprint([a, b], tmp_path) != before


def test_fingerprint_takes_the_sizes_and_times_it_is_given_and_stats_the_rest(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"1")
    b.write_bytes(b"22")
    expected = source_fingerprint([a, b], tmp_path)
    seen = {str(a): (a.stat().st_size, a.stat().st_mtime_ns)}
    assert source_fingerprint([a, b], tmp_path, known=seen) == expected
    stale = {str(a): (5, a.stat().st_mtime_ns)}  # taken as given: a differs from what is on disk
    assert source_fingerprint([a, b], tmp_path, known=stale) != expected


def test_folder_fingerprint_is_the_fingerprint_of_the_listed_files(tmp_path):
    subject = tmp_path / "S1"
    (subject / "series b").mkdir(parents=True)
    (subject / ".hidden").mkdir()
    for name, size in (("IM2", 3), ("IM10", 1), ("series b/IM1", 2), (".hidden/x", 4)):
        (subject / name).write_bytes(b"x" * size)
    expected = source_fingerprint(list_files(subject), tmp_path)
    assert folder_fingerprint(subject, tmp_path) == expected
    (subject / "series b" / "IM1").write_bytes(b"changed")
    assert folder_fingerprint(subject, tmp_path) != expected


def test_empty_subject_folder_gets_a_subject_rejection(tmp_path, series_cfg):
    (tmp_path / "S1" / "empty_dir").mkdir(parents=True)
    result = scan("S1", tmp_path / "S1", tmp_path, series_cfg, None)
    assert [(r.level, r.reason) for r in result.rejections] == [
        ("subject", "no files in the subject folder")
    ]


def unit(key, group, *folders, order=""):
    return SessionUnit(key, group, tuple(tuple(f.split("/")) for f in folders), order)


def test_single_study_is_the_empty_session():
    assigned, conflicts = assign_sessions([unit("a", "s1", "x"), unit("b", "s1", "y")])
    assert assigned == {"a": "", "b": ""} and conflicts == {}


def test_studies_named_by_the_folder_that_tells_them_apart():
    units = [unit("a", "s1", "T1/bl/1"), unit("b", "s1", "scout/bl/2"), unit("c", "s2", "T1/m12/3")]
    assigned, _ = assign_sessions(units)
    assert assigned == {"a": "bl", "b": "bl", "c": "m12"}


def test_date_folders_become_ordinals_by_study_date():
    units = [
        unit("a", "s1", "MPRAGE/2012-03-01_10_00_00.0/I1", order="20120301100000"),
        unit("b", "s2", "MPRAGE/2010-05-12_09_30_00.0/I2", order="20100512093000"),
    ]
    assigned, _ = assign_sessions(units)
    assert assigned == {"a": "ses-2", "b": "ses-1"}  # ordered by date; the date is not written


def test_labelled_sessions_match_folder_names_at_any_depth():
    units = [
        unit("a", "s1", "visits/m06/T1"),
        unit("b", "s2", "visits/bl/T1"),
        unit("c", "s3", "other/T1"),
        unit("d", "s4", "visits/bl/T1", "visits/m06/T1"),
    ]
    assigned, conflicts = assign_sessions(units, sessions=["bl", "m06"])
    assert assigned == {"a": "m06", "b": "bl", "c": ""}
    assert "several session folders (bl, m06)" in conflicts["d"]


def test_two_visits_give_two_stacks(tmp_path, dicom_writer, series_cfg):
    subject = tmp_path / "S1"
    first, second = dicom_writer.make_volume(seed=1), dicom_writer.make_volume(seed=2)
    dicom_writer.series(subject / "m12" / "t1", second, study_uid=generate_uid())
    dicom_writer.series(subject / "bl" / "t1", first, study_uid=generate_uid())
    result = scan("S1", subject, tmp_path, series_cfg, 8)
    assert [s.session_id for s in result.stacks] == ["bl", "m12"]
    np.testing.assert_array_equal(result.stacks[0].read([0]), first.values[:1])
    np.testing.assert_array_equal(result.stacks[1].read([0]), second.values[:1])
    assert result.stacks[0].source_hash != result.stacks[1].source_hash

    labelled = scan("S1", subject, tmp_path, series_cfg, 8, sessions=["m12"])
    assert [s.session_id for s in labelled.stacks] == ["", "m12"]  # bl/ is not in the table


def test_session_without_a_usable_series_is_reported(tmp_path, dicom_writer, series_cfg):
    subject = tmp_path / "S1"
    dicom_writer.series(subject / "bl", dicom_writer.make_volume(), study_uid=generate_uid())
    dicom_writer.series(subject / "m12", dicom_writer.make_volume(n=5), study_uid=generate_uid())
    result = scan("S1", subject, tmp_path, series_cfg, 8)
    assert [s.session_id for s in result.stacks] == ["bl"]
    assert [(r.session_id, r.level, r.path) for r in result.rejections] == [
        ("m12", "series", "S1/m12/"),
        ("m12", "session", "S1/m12/"),
    ]


@pytest.mark.parametrize(
    ("path", "root", "expected"),
    [
        ("/data/cohort/S1/a/b.dcm", "/data/cohort", "S1/a/b.dcm"),
        ("/data/cohort/S1", "/data/cohort/", "S1"),
        ("/data/cohort", "/data/cohort", "."),
        ("/elsewhere/x.dcm", "/data/cohort", "/elsewhere/x.dcm"),
        ("/data/cohort2/x.dcm", "/data/cohort", "/data/cohort2/x.dcm"),
    ],
)
def test_relative_path(path, root, expected):
    from pipeline.preprocess.discover import relative_path

    assert relative_path(path, root) == expected
