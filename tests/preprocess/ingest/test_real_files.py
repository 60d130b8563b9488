"""Real files bundled with pydicom and nibabel: transfer syntaxes, a truncated file, a Philips
enhanced (multi-frame) MR file, a Siemens DTI pair, NIfTI-1/NIfTI-2 volumes in several
orientations. Pixels must equal what the libraries decode themselves, with rescale applied."""

from __future__ import annotations

import copy
import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut, pixel_array
from pydicom.uid import generate_uid

from pipeline.preprocess.ingest import IngestContext, scan_subject
from pipeline.preprocess.pixels import SliceReadError

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"
NICOM_DATA = Path(nib.__file__).parent / "nicom" / "tests" / "data"


def scan(subject_id, path, root, series_cfg, expected=None, **kwargs):
    """``scan_subject`` under the context of a ``series:`` section and ``slices.expected``."""
    context = IngestContext.from_recipe(
        root, {"series": series_cfg, "slices": {"expected": expected}}
    )
    return scan_subject(subject_id, path, context, **kwargs)


def bundled(name: str) -> Path:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed")
    return Path(path)


def series_from_file(source: Path, folder: Path, n: int = 3, spacing: float = 5.0) -> None:
    """``n`` copies of one real file as one axial MR series, pixel data left encoded as it is."""
    ds = pydicom.dcmread(source)
    uid, study = generate_uid(), generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        item = copy.deepcopy(ds)
        item.Modality, item.SeriesInstanceUID, item.StudyInstanceUID = "MR", uid, study
        item.SOPInstanceUID = item.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        item.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        item.ImagePositionPatient = [0, 0, (n - k) * spacing]  # files in feet-first order
        item.PixelSpacing = [0.8, 0.8]
        item.SeriesDescription = "T1"
        item.save_as(folder / f"{k:02d}")


def reference(source: Path) -> np.ndarray:
    ds = pydicom.dcmread(source)
    return apply_modality_lut(pixel_array(ds), ds).astype(np.float32)


@pytest.mark.parametrize(
    "name",
    [
        "MR_small.dcm",  # explicit VR little endian
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_expb.dcm",
        "MR_small_padded.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
    ],
)
def test_lossless_transfer_syntaxes_decode_to_the_same_pixels(tmp_path, name, series_cfg):
    series_from_file(bundled(name), tmp_path / "S1")
    result = scan("S1", tmp_path / "S1", tmp_path, series_cfg, 3)
    assert result.rejections == []
    [stack] = result.stacks
    np.testing.assert_array_equal(stack.positions_mm, [5.0, 10.0, 15.0])
    expected = reference(bundled("MR_small.dcm"))
    np.testing.assert_array_equal(stack.read([0, 2]), np.stack([expected, expected]))


@pytest.mark.parametrize(
    "name",
    ["JPGExtended.dcm", "JPEG2000.dcm", "JPEGLSNearLossless_16.dcm", "693_J2KI.dcm"],
)
def test_lossy_and_signed_transfer_syntaxes_match_pydicom(tmp_path, name, series_cfg):
    series_from_file(bundled(name), tmp_path / "S1")
    [stack] = scan("S1", tmp_path / "S1", tmp_path, series_cfg, None).stacks
    np.testing.assert_array_equal(stack.read([1])[0], reference(bundled(name)))


def test_undecodable_pixels_raise_an_error_naming_the_file(tmp_path, series_cfg):
    # pydicom ships this JPEG with a broken scan header: no decoder can read it.
    series_from_file(bundled("JPEG-lossy.dcm"), tmp_path / "S1")
    [stack] = scan("S1", tmp_path / "S1", tmp_path, series_cfg, None).stacks
    with pytest.raises(SliceReadError, match=r"cannot decode the pixels of .*S1/0[0-2]"):
        stack.read([1])


def test_colour_jpeg_is_rejected_as_not_greyscale(tmp_path, series_cfg):
    series_from_file(bundled("SC_rgb_jpeg_gdcm.dcm"), tmp_path / "S1")  # JPEG lossless, RGB
    result = scan("S1", tmp_path / "S1", tmp_path, series_cfg, None)
    assert result.stacks == []
    assert result.rejections[0].reason.startswith(
        "colour or palette image (PhotometricInterpretation RGB"
    )


def test_pydicom_truncated_file_is_a_file_rejection(tmp_path, series_cfg):
    series_from_file(bundled("MR_small.dcm"), tmp_path / "S1", n=4)
    shutil.copy(bundled("MR_truncated.dcm"), tmp_path / "S1" / "cut.dcm")
    result = scan("S1", tmp_path / "S1", tmp_path, series_cfg, None)
    assert len(result.stacks) == 1
    [bad] = result.rejections
    assert (bad.level, bad.path) == ("file", "S1/cut.dcm")
    assert "before the end of its pixel data (truncated copy?)" in bad.reason


def test_non_image_dicom_files_are_counted(tmp_path, series_cfg):
    folder = tmp_path / "S1"
    series_from_file(bundled("MR_small.dcm"), folder)
    for name in ("test-SR.dcm", "rtplan.dcm"):
        shutil.copy(bundled(name), folder / name)
    dicomdir = Path(bundled("MR_small.dcm")).parent / "dicomdirtests" / "DICOMDIR"
    if dicomdir.exists():
        shutil.copy(dicomdir, folder / "DICOMDIR")
    result = scan("S1", folder, tmp_path, series_cfg, None)
    assert result.rejections == [] and len(result.stacks) == 1
    assert result.n_non_dicom == 2 + dicomdir.exists()


@pytest.fixture(scope="module")
def philips_enhanced(tmp_path_factory) -> Path:
    """nibabel's Philips 3D T1 enhanced MR file: 176 sagittal frames, rescale in shared groups."""
    source = NICOM_DATA / "philips_mprage.dcm.gz"
    if not source.exists():
        pytest.skip("nibabel's philips_mprage.dcm.gz is not installed")
    folder = tmp_path_factory.mktemp("philips") / "P1"
    folder.mkdir()
    with gzip.open(source) as src, open(folder / "IM_0001", "wb") as dst:
        shutil.copyfileobj(src, dst)
    return folder


def test_real_enhanced_mr_frames_sorted_by_functional_group_positions(philips_enhanced, series_cfg):
    root = philips_enhanced.parent
    cfg = {**series_cfg, "plane": None}
    result = scan("P1", philips_enhanced, root, cfg, None)
    assert result.rejections == []
    [stack] = result.stacks
    assert stack.n_slices == 176 and stack.shape == (256, 256)
    assert stack.spacing_mm == pytest.approx(1.0, abs=0.01)
    assert np.all(np.diff(stack.positions_mm) > 0)

    ds = pydicom.dcmread(philips_enhanced / "IM_0001", stop_before_pixels=True)
    x = [
        float(f.PlanePositionSequence[0].ImagePositionPatient[0])
        for f in ds.PerFrameFunctionalGroupsSequence
    ]
    frame_of = np.argsort(x)  # sagittal: positions increase towards the patient's left (+x)
    # Its rows already run head -> feet and its columns front -> back: the canonical sagittal
    # view, so the pixels come back unflipped.
    for k in (0, 90, 175):
        frame = int(frame_of[k])
        raw = pixel_array(philips_enhanced / "IM_0001", index=frame)
        lut = ds.PerFrameFunctionalGroupsSequence[frame].PixelValueTransformationSequence[0]
        expected = raw * float(lut.RescaleSlope) + float(lut.RescaleIntercept)
        np.testing.assert_allclose(stack.read([k])[0], expected, rtol=1e-6)


@pytest.mark.filterwarnings("ignore:The DICOM readers are highly experimental")
@pytest.mark.filterwarnings("ignore:Unable to find Philips private scale factor")
def test_real_sagittal_3d_volume_is_resliced_to_axial_as_nibabel_reads_it(
    philips_enhanced, series_cfg
):
    """The default recipe takes the axial slices of the sagittal MP-RAGE: the same voxels, in
    the same places, as nibabel.nicom's own volume reoriented by as_closest_canonical."""
    from nibabel.nicom import dicomwrappers

    result = scan("P1", philips_enhanced, philips_enhanced.parent, series_cfg, None)
    assert result.rejections == []
    [stack] = result.stacks
    assert (stack.plane, stack.acquired_plane, stack.resliced) == ("axial", "sagittal", True)
    wrapper = dicomwrappers.wrapper_from_file(philips_enhanced / "IM_0001")
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    volume = nib.Nifti1Image(wrapper.get_data(), lps_to_ras @ wrapper.affine)
    image = nib.as_closest_canonical(volume)
    data = image.get_fdata()
    assert stack.n_slices == data.shape[2] and stack.shape == (data.shape[1], data.shape[0])
    for k in (0, 128, stack.n_slices - 1):
        # RAS voxels -> rows anterior-to-posterior, columns right-to-left.
        np.testing.assert_allclose(stack.read([k])[0], data[::-1, ::-1, k].T, rtol=1e-5)
    # The volume is slightly oblique: positions are along the true normal of the axial planes.
    affine = image.affine
    normal = np.cross(affine[:3, 0], affine[:3, 1])
    normal *= np.sign(normal[2]) / np.linalg.norm(normal)
    origins = affine[:3, 3] + np.arange(data.shape[2])[:, None] * affine[:3, 2]
    np.testing.assert_allclose(stack.positions_mm, origins @ normal, atol=1e-3)


def test_real_sagittal_volume_keeps_its_plane_when_asked(philips_enhanced, series_cfg):
    for plane in ("sagittal", None):
        cfg = {**series_cfg, "plane": plane}
        [stack] = scan("P1", philips_enhanced, philips_enhanced.parent, cfg, None).stacks
        assert (stack.plane, stack.resliced, stack.n_slices) == ("sagittal", False, 176)


def test_siemens_dti_pair_is_too_short(tmp_path, series_cfg):
    folder = tmp_path / "S1"
    folder.mkdir()
    for name in ("0.dcm", "1.dcm"):
        shutil.copy(NICOM_DATA / name, folder / name)
    result = scan("S1", folder, tmp_path, {**series_cfg, "description_exclude": None}, None)
    assert result.rejections[0].reason.startswith("2 slice(s): too few for a stack")


def test_real_decimal_rescale_is_applied(tmp_path, series_cfg):
    source = NICOM_DATA / "decimal_rescale.dcm"
    series_from_file(source, tmp_path / "S1")
    [stack] = scan("S1", tmp_path / "S1", tmp_path, series_cfg, None).stacks
    np.testing.assert_allclose(stack.read([0])[0], reference(source), rtol=1e-6)


def test_nifti_las_volume_is_reoriented_to_canonical(tmp_path, series_cfg):
    source = NIBABEL_DATA / "anatomical.nii"  # stored L-A-S (x runs right to left)
    shutil.copy(source, tmp_path / "N1.nii")
    [stack] = scan("N1", tmp_path / "N1.nii", tmp_path, series_cfg, None).stacks
    canonical = nib.as_closest_canonical(nib.load(source))
    data = canonical.get_fdata()
    assert stack.n_slices == data.shape[2] and stack.shape == (data.shape[1], data.shape[0])
    for k in (0, 12, 24):
        # RAS voxels -> rows anterior-to-posterior, columns right-to-left.
        np.testing.assert_allclose(stack.read([k])[0], data[::-1, ::-1, k].T, rtol=1e-6)
    z = canonical.affine[2, 3] + canonical.affine[2, 2] * np.arange(data.shape[2])
    np.testing.assert_allclose(stack.positions_mm, z)
    assert stack.pixel_spacing_mm == (2.0, 2.0) and stack.spacing_mm == 2.0


@pytest.mark.parametrize(
    ("name", "volumes"),
    [("functional.nii", 20), ("example4d.nii.gz", 2), ("example_nifti2.nii.gz", 2)],
)
def test_4d_nifti_is_rejected(tmp_path, series_cfg, name, volumes):
    shutil.copy(NIBABEL_DATA / name, tmp_path / name)
    result = scan("X", tmp_path / name, tmp_path, series_cfg, None)
    assert result.stacks == []
    assert f"holds {volumes} volumes" in result.rejections[0].reason


def test_nifti_inside_subject_folder_with_expected_count(tmp_path, series_cfg):
    folder = tmp_path / "S1" / "anat"
    folder.mkdir(parents=True)
    # 25 axial slices of 2 mm voxels, stored left to right
    shutil.copy(NIBABEL_DATA / "anatomical.nii", folder / "S1_T1w.nii")
    ok = scan("S1", tmp_path / "S1", tmp_path, series_cfg, 25)
    assert [s.n_slices for s in ok.stacks] == [25] and ok.stacks[0].source_format == "nifti"
    assert ok.stacks[0].description == "S1_T1w" and ok.stacks[0].session_id == ""
    bad = scan("S1", tmp_path / "S1", tmp_path, series_cfg, 44)
    assert bad.rejections[0].reason.startswith("25 slices, expected 44 (slices.expected)")
    assert bad.rejections[0].path == "S1/anat/S1_T1w.nii"
