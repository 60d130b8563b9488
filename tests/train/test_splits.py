"""Subject splits: no subject on both sides, sessions together, stratified, clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.train.errors import SplitError
from pipeline.train.splits import (
    fold_subjects,
    make_split,
    read_split,
    rows_of,
    shuffle_subject_labels,
    subject_labels,
    validate_split,
    write_split,
)

CLASSES = ["CN", "MCI", "AD"]


def _cohort(counts=(27, 21, 12), max_sessions=3, seed=0) -> tuple[pd.Series, np.ndarray]:
    """Manifest-like rows: subject ids (with repeat sessions) and row labels."""
    rng = np.random.default_rng(seed)
    ids, labels = [], []
    for label, n in enumerate(counts):
        for i in range(n):
            sid = f"{CLASSES[label]}-{i:02d}"
            for _ in range(rng.integers(1, max_sessions + 1)):
                ids.append(sid)
                labels.append(label)
    order = rng.permutation(len(ids))
    return pd.Series(np.asarray(ids)[order]), np.asarray(labels)[order]


def test_split_keeps_sessions_together_and_stratifies() -> None:
    ids, labels = _cohort()
    per_subject = subject_labels(ids, labels)
    split = make_split(per_subject, CLASSES, val_fraction=0.25, seed=1)
    train, val = fold_subjects(split, 0)
    assert not set(train) & set(val)
    assert set(train) | set(val) == set(ids)
    train_rows, val_rows = rows_of(train, ids), rows_of(val, ids)
    assert not set(train_rows) & set(val_rows)
    assert len(train_rows) + len(val_rows) == len(ids)  # every session lands with its subject
    assert set(ids.iloc[val_rows]) == set(val)
    for label, total in enumerate((27, 21, 12)):
        in_val = int((per_subject.loc[val] == label).sum())
        assert abs(in_val - 0.25 * total) <= 1.0, (CLASSES[label], in_val, total)


def test_kfold_validates_every_subject_exactly_once() -> None:
    ids, labels = _cohort()
    per_subject = subject_labels(ids, labels)
    split = make_split(per_subject, CLASSES, folds=4, seed=0)
    validate_split(split, per_subject, CLASSES, "test")
    val_counts = split[split["role"] == "val"].groupby("subject_id").size()
    assert set(val_counts.index) == set(per_subject.index)
    assert (val_counts == 1).all()
    for fold in range(4):
        train, val = fold_subjects(split, fold)
        assert not set(train) & set(val)
        per_class = np.bincount(per_subject.loc[val], minlength=3)
        assert np.all(np.abs(per_class - np.array([27, 21, 12]) / 4) <= 1.0)


def test_split_depends_only_on_seed() -> None:
    ids, labels = _cohort()
    per_subject = subject_labels(ids, labels)
    a = make_split(per_subject, CLASSES, seed=3)
    b = make_split(per_subject.sample(frac=1.0, random_state=5).sort_index(), CLASSES, seed=3)
    c = make_split(per_subject, CLASSES, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert fold_subjects(a, 0)[1] != fold_subjects(c, 0)[1]


def test_too_few_subjects_for_kfold_names_the_class() -> None:
    ids, labels = _cohort(counts=(10, 8, 2), max_sessions=1)
    per_subject = subject_labels(ids, labels)
    with pytest.raises(SplitError, match=r"AD has 2.*CN=10, MCI=8, AD=2\)\. Set split.folds=2"):
        make_split(per_subject, CLASSES, folds=3)


def test_single_subject_class_cannot_be_split() -> None:
    ids, labels = _cohort(counts=(10, 8, 1), max_sessions=1)
    with pytest.raises(SplitError, match="AD has 1"):
        make_split(subject_labels(ids, labels), CLASSES, val_fraction=0.2)


def test_validation_too_small_for_every_class() -> None:
    ids, labels = _cohort(counts=(10, 8, 4), max_sessions=1)
    with pytest.raises(SplitError, match="at least one subject per class"):
        make_split(subject_labels(ids, labels), CLASSES, val_fraction=0.05)


def test_subject_label_is_the_majority_of_its_sessions() -> None:
    ids = pd.Series(["a", "a", "a", "b", "b"])
    labels = np.array([1, 2, 2, 0, 1])  # a: MCI then AD twice; b: a tie -> lower index
    per_subject = subject_labels(ids, labels)
    assert per_subject.to_dict() == {"a": 2, "b": 0}


def test_shuffled_labels_keep_class_counts_but_move() -> None:
    ids, labels = _cohort(max_sessions=1)
    per_subject = subject_labels(ids, labels)
    shuffled = shuffle_subject_labels(per_subject, seed=0)
    assert sorted(shuffled) == sorted(per_subject)
    assert list(shuffled.index) == list(per_subject.index)
    assert (shuffled != per_subject).mean() > 0.3


def test_split_file_round_trip_and_optional_fold(tmp_path) -> None:
    ids, labels = _cohort()
    per_subject = subject_labels(ids, labels)
    split = make_split(per_subject, CLASSES, folds=3, seed=0)
    path = write_split(tmp_path / "split.csv", split)
    again = read_split(path)
    pd.testing.assert_frame_equal(split.reset_index(drop=True), again, check_dtype=False)
    single = split[split["fold"] == 0][["subject_id", "role"]]
    single.to_csv(tmp_path / "single.csv", index=False)
    read_back = read_split(tmp_path / "single.csv")
    assert set(read_back["fold"]) == {0}
    validate_split(read_back, per_subject, CLASSES, "single.csv")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: pd.concat([s, s.iloc[[0]].assign(role="val")]), "more than once"),
        (
            lambda s: pd.concat(
                [s, pd.DataFrame([{"subject_id": "zz", "fold": 0, "role": "val"}])]
            ),
            "not in the cohort",
        ),
        (lambda s: s.iloc[1:], "leaves out"),
        (lambda s: s.assign(role="training"), "role must be"),
        (lambda s: s.assign(role="train"), "no val subjects"),
    ],
)
def test_bad_split_files_are_refused(change, message) -> None:
    ids, labels = _cohort(max_sessions=1)
    per_subject = subject_labels(ids, labels)
    split = make_split(per_subject, CLASSES, seed=0)
    with pytest.raises(SplitError, match=message):
        validate_split(change(split), per_subject, CLASSES, "split.csv")


def test_split_without_a_class_in_training_is_refused() -> None:
    ids, labels = _cohort(max_sessions=1)
    per_subject = subject_labels(ids, labels)
    split = make_split(per_subject, CLASSES, seed=0)
    ad = set(per_subject[per_subject == 2].index)
    split.loc[split["subject_id"].isin(ad), "role"] = "val"
    with pytest.raises(SplitError, match=r"no training subjects of class\(es\) \['AD'\]"):
        validate_split(split, per_subject, CLASSES, "split.csv")
