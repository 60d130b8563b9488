"""The written DICOM reads back with pydicom, with consistent geometry and 44 slices a series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from pipeline.synthetic import generate_cohort


def _t1(series: dict) -> object:
    t1 = [s for s in series.values() if "LOCALIZER" not in s.headers[0].ImageType]
    assert len(t1) == 1, f"expected one T1 series, found {len(t1)}"
    return t1[0]


def _sorted_positions(headers: list[pydicom.Dataset]) -> tuple[np.ndarray, np.ndarray]:
    """Positions along the head-pointing normal, sorted, and the sort order."""
    iop = np.array(headers[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    up = normal if normal[2] > 0 else -normal
    pos = np.array([np.array(h.ImagePositionPatient, dtype=float) @ up for h in headers])
    order = np.argsort(pos)
    return pos[order], order


@pytest.mark.parametrize("cohort", ["cohort_a", "cohort_b"])
def test_t1_series_geometry_matches_truth(
    cohort: str, request: pytest.FixtureRequest, read_subject, read_truth
) -> None:
    root: Path = request.getfixturevalue(cohort)
    truth = read_truth(root)
    usable = truth[truth["defect"].isin(["", "unlabelled"])]
    assert len(usable) > 0
    sop_uids: set[str] = set()
    for _, row in usable.iterrows():
        series, _ = read_subject(root / "dicom" / row.subject_id)
        t1 = _t1(series)
        headers = t1.headers
        assert len(headers) == 44 == row.n_slices
        assert {h.SOPClassUID for h in headers} == {pydicom.uid.MRImageStorage}
        assert {h.Modality for h in headers} == {"MR"}
        # one orientation, orthonormal direction cosines, one pixel grid
        iops = {tuple(h.ImageOrientationPatient) for h in headers}
        assert len(iops) == 1
        iop = np.array(next(iter(iops)), dtype=float)
        assert np.allclose(np.linalg.norm(iop[:3]), 1, atol=1e-5)
        assert np.allclose(np.linalg.norm(iop[3:]), 1, atol=1e-5)
        assert abs(iop[:3] @ iop[3:]) < 1e-5
        assert {(h.Rows, h.Columns) for h in headers} == {(row.rows, row.cols)}
        assert {tuple(float(v) for v in h.PixelSpacing) for h in headers} == {
            (row.pixel_spacing_mm, row.pixel_spacing_mm)
        }
        # slices equally spaced along the normal, at the positions the truth file lists
        pos, _ = _sorted_positions(headers)
        steps = np.diff(pos)
        assert np.allclose(steps, row.slice_spacing_mm, atol=1e-3)
        assert 3.5 - 1e-6 <= row.slice_spacing_mm <= 5.0 + 1e-6
        assert np.allclose(float(headers[0].SpacingBetweenSlices), steps.mean(), atol=1e-3)
        assert float(headers[0].SliceThickness) <= row.slice_spacing_mm + 1e-6
        expected = np.array(row.slice_positions_mm.split(";"), dtype=float)
        assert np.allclose(pos, expected, atol=1e-3)
        # the brain centre lies inside the stack, and the stack centre near it
        assert pos[0] < row.brain_center_mm < pos[-1]
        assert abs(row.stack_offset_mm) <= {"A": 10.0, "B": 12.0}[row.site] + 1e-3
        sop_uids.update(h.SOPInstanceUID for h in headers)
        # InstanceNumber is a permutation of 1..44, whatever the geometric order
        assert sorted(int(h.InstanceNumber) for h in headers) == list(range(1, 45))
    assert len(sop_uids) == 44 * len(usable), "SOPInstanceUIDs must be unique"


@pytest.mark.parametrize("cohort", ["cohort_a", "cohort_b"])
def test_pixels_decode_with_anatomy_in_the_middle(
    cohort: str, request: pytest.FixtureRequest, read_subject, read_truth
) -> None:
    root: Path = request.getfixturevalue(cohort)
    truth = read_truth(root)
    syntaxes = set()
    for _, row in truth[truth["defect"] == ""].iterrows():
        series, _ = read_subject(root / "dicom" / row.subject_id)
        t1 = _t1(series)
        _, order = _sorted_positions(t1.headers)
        paths = [t1.paths[i] for i in order]
        files = [pydicom.dcmread(paths[i]) for i in (0, row.brain_center_index, len(paths) - 1)]
        syntaxes.add(row.transfer_syntax)
        assert files[0].file_meta.TransferSyntaxUID == getattr(pydicom.uid, row.transfer_syntax)
        images = [
            f.pixel_array.astype(float) * float(f.RescaleSlope) + float(f.RescaleIntercept)
            for f in files
        ]
        assert all(im.shape == (row.rows, row.cols) for im in images)
        assert all(f.pixel_array.max() < 2 ** int(f.BitsStored) for f in files)
        middle = images[1]
        # the brain-centre slice is mostly head: bright tissue near white-matter intensity
        head = middle > 0.3 * row.wm_value
        assert head.mean() > 0.25
        assert 0.6 * row.wm_value < np.percentile(middle[head], 75) < 1.6 * row.wm_value
        # and carries more head than the lowest slice of the stack (below the brain or at its base)
        assert head.mean() > (images[0] > 0.3 * row.wm_value).mean()
    if cohort == "cohort_b":  # the fixture asks for three syntaxes with equal weights
        assert len(syntaxes) >= 2


def test_feet_first_export_gives_the_same_head(tmp_path: Path, read_subject, read_truth) -> None:
    """Same subject, head-first vs feet-first (mirrored rows, normal to the feet) and reversed
    InstanceNumbers: after sorting by position and mirroring columns, the pixels agree."""
    common = {
        "n_subjects": 1,
        "seed": 5,
        "site": "A",
        "matrix": [[48, 48]],
        "noise_sd": [0.0, 0.0],
        "p_localizer": 0.0,
        "p_stray_file": 0.0,
    }
    head_first = generate_cohort(
        tmp_path / "hf", p_feet_first=0.0, instance_order={"ascending": 1}, **common
    )
    feet_first = generate_cohort(
        tmp_path / "ff", p_feet_first=1.0, instance_order={"descending": 1}, **common
    )
    stacks = []
    for root in (head_first, feet_first):
        subject = read_truth(root).subject_id.iloc[0]
        t1 = _t1(read_subject(root / "dicom" / subject)[0])
        pos, order = _sorted_positions(t1.headers)
        files = [pydicom.dcmread(t1.paths[i]) for i in order]
        iop = np.array(files[0].ImageOrientationPatient, dtype=float)
        pixels = np.stack([f.pixel_array.astype(float) for f in files])
        numbers = [int(f.InstanceNumber) for f in files]
        stacks.append((pos, iop, pixels, numbers, files[0].PatientPosition))
    (pos_h, iop_h, pix_h, num_h, pp_h), (pos_f, iop_f, pix_f, num_f, pp_f) = stacks
    assert (pp_h, pp_f) == ("HFS", "FFS")
    assert iop_h[0] == 1.0 and iop_f[0] == -1.0
    assert np.cross(iop_f[:3], iop_f[3:])[2] < 0  # the written normal points to the feet
    assert num_h == list(range(1, 45)) and num_f == list(range(44, 0, -1))
    assert np.allclose(pos_h, pos_f, atol=1e-3)
    mirrored = pix_f[:, :, ::-1]
    scale = np.percentile(pix_h, 99)
    assert np.mean(np.abs(mirrored - pix_h)) < 0.01 * scale
    assert np.corrcoef(mirrored.ravel(), pix_h.ravel())[0, 1] > 0.99


def test_localizer_is_a_three_plane_scout(cohort_a: Path, read_subject, read_truth) -> None:
    truth = read_truth(cohort_a)
    with_scout = truth[(truth["localizer"]) & (truth["defect"] == "")]
    assert len(with_scout) > 0, "fixture should have drawn at least one localizer"
    for subject in with_scout.subject_id:
        series, _ = read_subject(cohort_a / "dicom" / subject)
        scouts = [s for s in series.values() if "LOCALIZER" in s.headers[0].ImageType]
        assert len(scouts) == 1
        headers = scouts[0].headers
        assert len(headers) == 3
        normals = {
            tuple(
                np.round(
                    np.cross(
                        np.array(h.ImageOrientationPatient[:3], dtype=float),
                        np.array(h.ImageOrientationPatient[3:], dtype=float),
                    ),
                    3,
                )
            )
            for h in headers
        }
        assert len(normals) == 3  # sagittal, coronal, axial
        assert "localizer" in headers[0].SeriesDescription.lower()
        # same study and frame of reference as the T1
        t1 = _t1(series)
        assert headers[0].StudyInstanceUID == t1.headers[0].StudyInstanceUID
        assert headers[0].FrameOfReferenceUID == t1.headers[0].FrameOfReferenceUID
