"""3D volumes in any plane: one geometry path for DICOM (classic, enhanced, native or compressed)
and NIfTI, reslicing to the output plane, and what is refused (2D in another plane, a NIfTI
whose orientation is unknown)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from pipeline.preprocess.ingest import IngestContext, scan_subject

#: Index axes c, r, k of a sagittal volume run towards +y (back), -z (feet), +x (left), in LPS.
SAGITTAL = np.array([[0.0, 1, 0], [0, 0, -1], [1, 0, 0]]).T


def scan(path, root, series_cfg, expected=None, **options):
    series = {**series_cfg, **options}
    context = IngestContext.from_recipe(root, {"series": series, "slices": {"expected": expected}})
    return scan_subject(path.name, path, context)


def canonical_axial(path) -> tuple[np.ndarray, np.ndarray]:
    """nibabel's own reading of a NIfTI file: axial slices in the canonical view, positions."""
    image = nib.as_closest_canonical(nib.load(path))
    data = image.get_fdata()
    slices = np.stack([data[::-1, ::-1, k].T for k in range(data.shape[2])])
    affine = image.affine
    return slices, affine[2, 3] + affine[2, 2] * np.arange(data.shape[2])


@pytest.fixture
def sagittal_volume(dicom_writer):
    """A 1 mm isotropic sagittal volume: 9 slices of 12 x 10 pixels (stored * 2 - 10)."""
    return dicom_writer.make_volume(
        n=9, rows=12, cols=10, spacing=(1.0, 1.0, 1.0), axes=SAGITTAL, slope=2.0, intercept=-10.0
    )


@pytest.mark.parametrize("export", ["classic", "feet_first", "compressed", "enhanced"])
def test_sagittal_3d_dicom_is_resliced_like_its_nifti(
    tmp_path, dicom_writer, sagittal_volume, series_cfg, export
):
    folder = tmp_path / "S1"
    if export == "enhanced":
        dicom_writer.enhanced(folder / "IM1", sagittal_volume)
    else:
        dicom_writer.series(
            folder,
            sagittal_volume,
            order="shuffled",
            slope=2.0,
            intercept=-10.0,
            layout=dicom_writer.FEET_FIRST if export == "feet_first" else dicom_writer.Layout(),
            transfer_syntax=RLELossless if export == "compressed" else ExplicitVRLittleEndian,
        )
    nifti = dicom_writer.nifti(tmp_path / "N1.nii", sagittal_volume)
    [from_dicom] = scan(folder, tmp_path, series_cfg).stacks
    [from_nifti] = scan(nifti, tmp_path, series_cfg).stacks
    expected, positions = canonical_axial(nifti)
    for stack in (from_dicom, from_nifti):
        assert (stack.plane, stack.acquired_plane, stack.resliced) == ("axial", "sagittal", True)
        assert stack.n_slices == 12 and stack.shape == (10, 9)
        np.testing.assert_allclose(stack.positions_mm, positions, atol=1e-3)
        np.testing.assert_allclose(stack.read(range(12)), expected, rtol=1e-6)
        np.testing.assert_allclose(stack.read([7, 2]), expected[[7, 2]], rtol=1e-6)


def test_row_reads_match_a_whole_decode(tmp_path, dicom_writer, sagittal_volume, series_cfg):
    """Native files are read by rows; the result equals pydicom decoding every frame."""
    dicom_writer.series(
        tmp_path / "S1", sagittal_volume, signed=True, slope=2.0, intercept=-10.0, monochrome1=True
    )
    [stack] = scan(tmp_path / "S1", tmp_path, series_cfg).stacks
    rows = stack.read([3, 4, 5])
    layouts = [v for k, v in stack.voxels.cache.items() if k[0] == "layout"]
    assert len(layouts) == 9 and all(v is not None for v in layouts)  # every file by rows
    stack.voxels.cache.clear()
    stack.voxels.cache.update({("layout", p): None for p in sorted(tmp_path.rglob("*.dcm"))})
    np.testing.assert_array_equal(stack.read([3, 4, 5]), rows)  # now by a whole decode


def test_series_plane_is_honoured_by_both_formats(tmp_path, dicom_writer, series_cfg):
    volume = dicom_writer.make_volume(n=10, rows=12, cols=11, spacing=(1.0, 1.0, 1.0))
    dicom_writer.series(tmp_path / "D", volume)
    nifti = dicom_writer.nifti(tmp_path / "N.nii.gz", volume, voxel_order="kcr")
    for plane, n, shape in (("sagittal", 11, (10, 12)), ("coronal", 12, (10, 11))):
        [a] = scan(tmp_path / "D", tmp_path, series_cfg, plane=plane).stacks
        [b] = scan(nifti, tmp_path, series_cfg, plane=plane).stacks
        assert (a.plane, a.n_slices, a.shape, a.resliced) == (plane, n, shape, True)
        np.testing.assert_allclose(a.positions_mm, b.positions_mm, atol=1e-3)
        np.testing.assert_array_equal(a.read(range(n)), b.read(range(n)))


def test_2d_thick_sagittal_series_is_refused_unless_asked(tmp_path, dicom_writer, series_cfg):
    thick = dicom_writer.make_volume(n=6, rows=12, cols=10, spacing=(4.8, 1.0, 1.0), axes=SAGITTAL)
    dicom_writer.series(tmp_path / "S1", thick)
    refused = scan(tmp_path / "S1", tmp_path, series_cfg)
    assert refused.stacks == []
    assert refused.rejections[0].reason == (
        "2D sagittal series, 4.8 mm slices: reslicing to axial would blur; set "
        "series.reslice_2d=true to accept (or series.plane=null to keep its sagittal slices)"
    )
    [accepted] = scan(tmp_path / "S1", tmp_path, series_cfg, reslice_2d=True).stacks
    assert (accepted.resliced, accepted.acquisition) == (True, "2D")
    assert accepted.pixel_spacing_mm == pytest.approx((1.0, 4.8))  # rows A-P, columns R-L
    [kept] = scan(tmp_path / "S1", tmp_path, series_cfg, plane=None).stacks
    assert (kept.plane, kept.resliced, kept.n_slices) == ("sagittal", False, 6)


def test_declared_mr_acquisition_type_wins(tmp_path, dicom_writer, series_cfg):
    """A 2 mm sagittal series is near-isotropic enough only when it says it is 3D."""
    volume = dicom_writer.make_volume(n=6, rows=12, cols=10, spacing=(2.0, 1.0, 1.0), axes=SAGITTAL)

    def declare(ds, _k):
        ds.MRAcquisitionType = "3D"

    dicom_writer.series(tmp_path / "S1", volume)
    dicom_writer.series(tmp_path / "S2", volume, edit=declare)
    assert scan(tmp_path / "S1", tmp_path, series_cfg).stacks == []
    [stack] = scan(tmp_path / "S2", tmp_path, series_cfg).stacks
    assert (stack.acquisition, stack.resliced) == ("3D", True)


def test_nifti_without_orientation_is_refused(tmp_path, dicom_writer, series_cfg):
    path = dicom_writer.nifti(tmp_path / "N.nii", dicom_writer.make_volume(n=5))
    image = nib.load(path)
    image.set_qform(None, code=0)
    image.set_sform(None, code=0)
    nib.save(image, tmp_path / "bare.nii")
    result = scan(tmp_path / "bare.nii", tmp_path, series_cfg)
    assert result.stacks == []
    assert result.rejections[0].reason.startswith(
        "orientation unknown: qform_code and sform_code are both 0"
    )
    assert result.rejections[0].path == "bare.nii"
