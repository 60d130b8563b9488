"""The labels table: delimiter sniffing, string ids, and errors that name the row."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.labels import LabelsError, lookup, read_labels, row_index, sessions_by_subject

CLASSES = ["CN", "MCI", "AD"]


def write(tmp_path: Path, text: str, name: str = "labels.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_keeps_ids_as_strings_and_fills_optional_columns(tmp_path):
    path = write(tmp_path, "subject_id,label,age\n007,CN,71.5\n010,AD,\n")
    labels = read_labels(path, CLASSES)
    assert labels["subject_id"].tolist() == ["007", "010"]
    assert labels["label"].tolist() == ["CN", "AD"]
    assert labels["age"].tolist() == ["71.5", ""]
    assert labels["session_id"].tolist() == ["", ""]
    assert labels["line"].tolist() == [2, 3]


def test_tsv_is_sniffed_without_the_extension(tmp_path):
    path = write(tmp_path, "subject_id\tlabel\tsite\nsub-01\tMCI\tA\n", name="labels.txt")
    labels = read_labels(path, CLASSES)
    assert labels.loc[0, "subject_id"] == "sub-01"
    assert labels.loc[0, "site"] == "A"


def test_unknown_label_names_the_line_and_the_allowed_classes(tmp_path):
    path = write(tmp_path, "subject_id,label\ns1,CN\ns2,Dementia\ns3,ad\n")
    with pytest.raises(LabelsError) as err:
        read_labels(path, CLASSES)
    message = str(err.value)
    assert "line 3" in message and "'Dementia'" in message and "['CN', 'MCI', 'AD']" in message
    assert "line 4" in message and "did you mean 'AD'" in message


def test_line_numbers_count_blank_lines(tmp_path):
    path = write(tmp_path, "subject_id,label\ns1,CN\n\n\ns2,Dementia\ns1,AD\n")
    with pytest.raises(LabelsError) as err:
        read_labels(path, CLASSES)
    message = str(err.value)
    assert "line 5" in message and "'Dementia'" in message
    assert "line 6: duplicate subject 's1' (first on line 2)" in message
    ok = read_labels(write(tmp_path, "subject_id,label\n\ns1,CN\n\n"), CLASSES)
    assert ok["subject_id"].tolist() == ["s1"] and ok["line"].tolist() == [3]


def test_duplicate_subject_and_duplicate_session(tmp_path):
    path = write(
        tmp_path,
        "subject_id,session_id,label\ns1,ses-1,CN\ns1,ses-2,MCI\ns1,ses-1,CN\ns2,,AD\ns2,,AD\n",
    )
    with pytest.raises(LabelsError) as err:
        read_labels(path, CLASSES)
    message = str(err.value)
    assert "line 4: duplicate subject 's1' session 'ses-1' (first on line 2)" in message
    assert "line 6: duplicate subject 's2' (first on line 5)" in message


def test_missing_column_and_empty_id(tmp_path):
    with pytest.raises(LabelsError, match=r"lacks column\(s\) \['label'\]"):
        read_labels(write(tmp_path, "subject_id,diagnosis\ns1,CN\n"), CLASSES)
    with pytest.raises(LabelsError, match="line 3: empty subject_id"):
        read_labels(write(tmp_path, "subject_id,label\ns1,CN\n,AD\n"), CLASSES)


def test_bad_age_and_missing_file(tmp_path):
    with pytest.raises(LabelsError, match="line 2: age 'old' is not a number"):
        read_labels(write(tmp_path, "subject_id,label,age\ns1,CN,old\n"), CLASSES)
    with pytest.raises(LabelsError, match="does not exist"):
        read_labels(tmp_path / "nope.csv", CLASSES)


def test_sessions_and_lookup(tmp_path):
    path = write(tmp_path, "subject_id,session_id,label\na,ses-2,MCI\na,ses-1,CN\nb,,AD\n")
    labels = read_labels(path, CLASSES)
    assert sessions_by_subject(labels) == {"a": ("ses-1", "ses-2"), "b": ()}
    index = row_index(labels)
    assert lookup(index, "a", "ses-2")["label"] == "MCI"
    assert lookup(index, "a", "ses-3") is None
    assert lookup(index, "b", "ses-9")["label"] == "AD"  # a subject-wide row covers any session
    assert lookup(index, "c", "") is None


def test_subject_wide_row_mixed_with_session_rows_is_ambiguous(tmp_path):
    path = write(tmp_path, "subject_id,session_id,label\na,,CN\na,ses-1,CN\n")
    with pytest.raises(LabelsError, match="line 2: subject 'a' has a row without session_id"):
        read_labels(path, CLASSES)
