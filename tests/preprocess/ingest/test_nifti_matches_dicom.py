"""A DICOM series and a NIfTI file of one volume give the same pixels and positions."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.preprocess.ingest import IngestContext, scan_subject


def scan(subject_id, path, root, series_cfg, expected=None, **kwargs):
    """``scan_subject`` under the context of a ``series:`` section and ``slices.expected``."""
    context = IngestContext.from_recipe(
        root, {"series": series_cfg, "slices": {"expected": expected}}
    )
    return scan_subject(subject_id, path, context, **kwargs)


def rotation(axis: int, degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != axis]
    out = np.eye(3)
    out[i, i], out[i, j], out[j, i], out[j, j] = c, -s, s, c
    return out


@pytest.mark.parametrize("voxel_order", ["crk", "kcr", "rck"])
@pytest.mark.parametrize(
    "axes",
    [np.eye(3), rotation(0, 10.0), rotation(2, -15.0)],
    ids=["straight", "tilted", "rotated"],
)
def test_dicom_and_nifti_of_one_volume_agree(tmp_path, dicom_writer, series_cfg, voxel_order, axes):
    volume = dicom_writer.make_volume(n=6, rows=14, cols=11, spacing=(3.5, 0.9, 1.2), axes=axes)
    dicom_writer.series(tmp_path / "D", volume, layout=dicom_writer.FEET_FIRST, order="shuffled")
    dicom_writer.nifti(tmp_path / "N.nii.gz", volume, voxel_order=voxel_order)
    [from_dicom] = scan("D", tmp_path / "D", tmp_path, series_cfg, 6).stacks
    [from_nifti] = scan("N", tmp_path / "N.nii.gz", tmp_path, series_cfg, 6).stacks
    assert from_nifti.shape == from_dicom.shape == (14, 11)
    np.testing.assert_allclose(from_nifti.positions_mm, from_dicom.positions_mm, atol=1e-4)
    np.testing.assert_allclose(from_nifti.positions_mm, volume.positions(), atol=1e-4)
    assert from_nifti.pixel_spacing_mm == pytest.approx(from_dicom.pixel_spacing_mm)
    # DICOM positions come from rounded header strings: equal to within a micrometre.
    assert from_nifti.spacing_mm == pytest.approx(from_dicom.spacing_mm, abs=1e-3)
    everything = range(6)
    np.testing.assert_array_equal(from_nifti.read(everything), from_dicom.read(everything))
    np.testing.assert_array_equal(from_nifti.read([4, 1]), volume.values[[4, 1]])


def test_nifti_reads_only_requested_slices(tmp_path, dicom_writer, monkeypatch):
    import nibabel.arrayproxy

    volume = dicom_writer.make_volume(n=10, rows=8, cols=8)
    path = dicom_writer.nifti(tmp_path / "N.nii", volume)
    [stack] = scan("N", path, tmp_path, {"plane": "axial"}, None).stacks
    shapes = []
    real = nibabel.arrayproxy.ArrayProxy.__getitem__

    def spy(self, index):
        out = real(self, index)
        shapes.append(np.shape(out))
        return out

    monkeypatch.setattr(nibabel.arrayproxy.ArrayProxy, "__getitem__", spy)
    np.testing.assert_array_equal(stack.read([5]), volume.values[5:6])
    assert shapes == [(8, 8, 1)]  # one slice read from disk, not the volume


def test_truncated_uncompressed_nifti_is_rejected(tmp_path, dicom_writer, series_cfg):
    path = dicom_writer.nifti(tmp_path / "N.nii", dicom_writer.make_volume(n=5))
    path.write_bytes(path.read_bytes()[:-200])
    result = scan("N", path, tmp_path, series_cfg, None)
    assert result.stacks == []
    assert "(truncated copy?)" in result.rejections[0].reason


def test_several_nifti_volumes_in_a_session_are_ambiguous_until_named(
    tmp_path, dicom_writer, series_cfg
):
    """A BIDS anat/ folder holds T1w, T2w and FLAIR: no rule orders NIfTI files, so the session
    is rejected with the fix in the message rather than taking whichever sorts first."""
    anat = tmp_path / "sub-01" / "ses-a" / "anat"
    for contrast in ("T1w", "T2w", "FLAIR"):
        volume = dicom_writer.make_volume(n=6, rows=14, cols=11)
        dicom_writer.nifti(anat / f"sub-01_ses-a_{contrast}.nii.gz", volume)
    result = scan("sub-01", tmp_path / "sub-01", tmp_path, series_cfg, 6)
    assert result.stacks == []
    [ambiguous] = [r for r in result.rejections if r.level == "session"]
    assert "3 series qualify" in ambiguous.reason
    assert "series.description_include" in ambiguous.reason

    named = scan(
        "sub-01", tmp_path / "sub-01", tmp_path, {**series_cfg, "description_include": "T1w"}, 6
    )
    [stack] = named.stacks
    assert stack.description == "sub-01_ses-a_T1w"
