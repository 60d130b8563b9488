"""Cohort-level behaviour: class mix, labels and defects, made-up identities, export mess,
determinism, and crash safety."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

import pipeline.synthetic.cohort as cohort_module
from pipeline.synthetic import (
    LABELS,
    STAMP,
    TRUTH,
    class_counts,
    generate_cohort,
    identity_columns,
    read_stamp,
)
from pipeline.synthetic.__main__ import out_of_date
from pipeline.synthetic.cohort import plan_cohort

TINY = {"matrix": [[32, 32]], "p_localizer": 0.5, "p_stray_file": 0.5}


@pytest.mark.parametrize(
    ("n", "mix", "expected"),
    [
        (240, {"CN": 0.45, "MCI": 0.35, "AD": 0.20}, {"CN": 108, "MCI": 84, "AD": 48}),
        (120, {"CN": 0.45, "MCI": 0.35, "AD": 0.20}, {"CN": 54, "MCI": 42, "AD": 24}),
        (7, {"CN": 1, "MCI": 1, "AD": 1}, {"CN": 3, "MCI": 2, "AD": 2}),
        (10, {"CN": 0.5, "AD": 0.5}, {"CN": 5, "AD": 5}),
        (0, {"CN": 0.45, "MCI": 0.35, "AD": 0.20}, {"CN": 0, "MCI": 0, "AD": 0}),
    ],
)
def test_class_counts_follow_the_mix_exactly(n: int, mix: dict, expected: dict) -> None:
    assert class_counts(n, mix) == expected


def test_class_counts_reject_bad_mixes() -> None:
    with pytest.raises(ValueError, match="class_mix"):
        class_counts(10, {"CN": 0.0, "AD": 0.0})
    with pytest.raises(ValueError, match="class_mix"):
        class_counts(10, {"CN": -1.0, "AD": 2.0})


def test_labels_table_has_the_configured_mix_and_defects(cohort_a: Path, read_truth) -> None:
    labels = pd.read_csv(cohort_a / LABELS, dtype=str)
    truth = read_truth(cohort_a)
    assert list(labels.columns) == ["subject_id", "label", "age", "sex", "site"]
    assert labels["subject_id"].is_unique
    assert set(labels["site"]) == {"A"}
    assert set(labels["sex"]) <= {"M", "F"}
    assert labels["age"].astype(float).between(55, 92).all()
    usable = truth[truth["defect"] == ""]
    assert len(usable) == 12
    assert usable["label"].value_counts().to_dict() == class_counts(
        12, {"CN": 0.45, "MCI": 0.35, "AD": 0.20}
    )
    assert all(s.startswith("A") for s in truth["subject_id"])
    dicom = cohort_a / "dicom"
    folders = {p.name for p in dicom.iterdir()}

    by_defect = {
        d: truth.loc[truth["defect"] == d, "subject_id"].tolist()
        for d in ("truncated", "unlabelled", "no_images")
    }
    assert all(len(v) == 1 for v in by_defect.values())
    (unlabelled,) = by_defect["unlabelled"]
    assert unlabelled in folders and unlabelled not in set(labels["subject_id"])
    (no_images,) = by_defect["no_images"]
    assert no_images not in folders and no_images in set(labels["subject_id"])
    (truncated,) = by_defect["truncated"]
    assert truncated in folders and truncated in set(labels["subject_id"])
    assert folders == set(truth["subject_id"]) - {no_images}

    stamp = read_stamp(cohort_a)
    assert stamp["counts"]["usable"] == 12
    assert stamp["counts"]["labelled_rows"] == len(labels) == 14


def test_truncated_subject_keeps_43_readable_slices(
    cohort_a: Path, read_subject, read_truth
) -> None:
    truth = read_truth(cohort_a)
    subject = truth.loc[truth["defect"] == "truncated", "subject_id"].item()
    series, other = read_subject(cohort_a / "dicom" / subject)
    t1 = [s for s in series.values() if "LOCALIZER" not in s.headers[0].ImageType]
    assert len(t1) == 1 and len(t1[0].headers) == 43
    cut = [p for p in other if p.stat().st_size == 512]
    assert len(cut) == 1
    with pytest.raises(Exception):  # noqa: B017 - any reader error will do: the file is unusable
        ds = pydicom.dcmread(cut[0])
        _ = ds.ImagePositionPatient


def test_headers_carry_made_up_identities_not_subject_ids(
    cohort_a: Path, read_subject, read_truth
) -> None:
    truth = read_truth(cohort_a)
    seen_ids = set()
    for _, row in truth[truth["defect"] == ""].iterrows():
        series, _ = read_subject(cohort_a / "dicom" / row.subject_id)
        for s in series.values():
            for h in s.headers:
                assert str(h.PatientName) == row.dicom_patient_name
                assert h.PatientID == row.dicom_patient_id
                assert h.PatientBirthDate == row.dicom_birth_date
                assert h.AccessionNumber == row.dicom_accession
                # the folder's subject id appears in no header value
                values = [str(e.value) for e in h.iterall() if e.VR not in ("OB", "OW")]
                assert not any(row.subject_id in v for v in values)
        assert row.dicom_patient_id != row.subject_id
        # a birth date consistent with the age (PatientAge is in whole years)
        study = pd.Timestamp(series[next(iter(series))].headers[0].StudyDate)
        born = pd.Timestamp(row.dicom_birth_date)
        assert abs((study - born).days / 365.25 - float(row.age)) < 0.1
        seen_ids.add(row.dicom_patient_id)
    assert len(seen_ids) == (truth["defect"] == "").sum()
    assert set(identity_columns()) <= set(truth.columns)


def test_export_mess_layouts_extensions_and_stray_files(
    cohort_a: Path, cohort_b: Path, read_subject, read_truth
) -> None:
    layouts, extensions, strays = set(), set(), 0
    for root in (cohort_a, cohort_b):
        truth = read_truth(root)
        for _, row in truth[truth["defect"] == ""].iterrows():
            subject_dir = root / "dicom" / row.subject_id
            series, other = read_subject(subject_dir)
            t1 = next(s for s in series.values() if "LOCALIZER" not in s.headers[0].ImageType)
            folder = {p.parent for p in t1.paths}
            assert folder == {subject_dir / row.t1_folder if row.t1_folder else subject_dir}
            depth = len(Path(row.t1_folder).parts) if row.t1_folder else 0
            assert depth == {"adni": 3, "pacs": 3, "flat": 0}[row.layout]
            assert {p.suffix for p in t1.paths} == {row.extension}
            names = [p.name for p in t1.paths]
            assert len(set(names)) == 44
            if row.stray_file:
                assert [p.name for p in other] == [row.stray_file]
                strays += 1
            else:
                assert other == []
            layouts.add(row.layout)
            extensions.add(row.extension)
    assert len(layouts) >= 2 and len(extensions) >= 2 and strays >= 1


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != STAMP
    }


def test_deterministic_for_a_seed_whatever_the_workers(tmp_path: Path) -> None:
    one = generate_cohort(tmp_path / "one", n_subjects=4, seed=3, workers=1, **TINY)
    two = generate_cohort(tmp_path / "two", n_subjects=4, seed=3, workers=2, **TINY)
    other = generate_cohort(tmp_path / "other", n_subjects=4, seed=4, workers=1, **TINY)
    tree_one, tree_two = _tree(one), _tree(two)
    assert len(tree_one) > 4 * 44
    assert tree_one == tree_two
    assert read_stamp(one)["settings_hash"] == read_stamp(two)["settings_hash"]
    assert read_stamp(one)["settings_hash"] != read_stamp(other)["settings_hash"]
    assert (one / TRUTH).read_bytes() != (other / TRUTH).read_bytes()


def test_cohorts_of_two_sites_never_share_subject_ids(
    cohort_a: Path, cohort_b: Path, read_truth
) -> None:
    a, b = set(read_truth(cohort_a)["subject_id"]), set(read_truth(cohort_b)["subject_id"])
    assert a and b and not a & b


def test_a_crash_leaves_no_cohort_and_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "cohort"
    generate_cohort(out, n_subjects=2, seed=1, **TINY)
    before = _tree(out)
    real = cohort_module.generate_subject
    calls = []

    def flaky(task):
        calls.append(task.subject_id)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return real(task)

    monkeypatch.setattr(cohort_module, "generate_subject", flaky)
    with pytest.raises(RuntimeError, match="simulated crash"):
        generate_cohort(out, n_subjects=3, seed=2, **TINY)
    assert _tree(out) == before  # the old, complete cohort is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort"]  # no temporary folder left
    with pytest.raises(RuntimeError, match="simulated crash"):
        calls.clear()
        generate_cohort(tmp_path / "fresh", n_subjects=3, seed=2, **TINY)
    assert not (tmp_path / "fresh").exists()


def test_stamp_decides_what_a_rerun_makes(tmp_path: Path) -> None:
    plan = plan_cohort(tmp_path / "c", n_subjects=2, seed=1, **TINY)
    assert out_of_date([plan]) == [plan]
    cohort_module.run_plans([plan])
    same = plan_cohort(tmp_path / "c", n_subjects=2, seed=1, **TINY)
    assert out_of_date([same]) == []
    assert out_of_date([same], force=True) == [same]
    changed = plan_cohort(tmp_path / "c", n_subjects=2, seed=1, **{**TINY, "noise_sd": [0, 0]})
    assert out_of_date([changed]) == [changed]


def test_unknown_options_and_classes_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="unknown generator option"):
        plan_cohort(tmp_path, n_subjects=1, seed=0, no_such_knob=1)
    with pytest.raises(ValueError, match="lacks"):
        plan_cohort(tmp_path, n_subjects=1, seed=0, class_mix={"CN": 1, "FTD": 1})
    with pytest.raises(ValueError, match="defect"):
        plan_cohort(tmp_path, n_subjects=1, seed=0, defects={"exploded": 1})
    with pytest.raises(ValueError, match="transfer syntax"):
        plan_cohort(tmp_path, n_subjects=1, seed=0, transfer_syntax={"NoSuchSyntax": 1})
    with pytest.raises(FileNotFoundError, match="site_z"):
        plan_cohort(tmp_path, n_subjects=1, seed=0, site="Z")


def test_label_order_is_shuffled_but_ids_are_sequential(tmp_path: Path) -> None:
    plan = plan_cohort(tmp_path / "c", n_subjects=40, seed=9)
    ids = [t.subject_id for t in plan.tasks]
    assert ids == [f"A{i:04d}" for i in range(1, 41)]
    labels = np.array([t.label for t in plan.tasks])
    assert not (labels[:18] == "CN").all()  # not sorted by class
