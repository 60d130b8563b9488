"""Encodings refused or misread before issue 11, each read right or refused at the header scan:
a VR encoding the file meta misstates, deflated datasets, files without preamble or file meta,
and a Modality LUT Sequence (LUTData encoded OW; with MONOCHROME1, LUT first, then inversion).

Made with pydicom's own writer (and its bundled files), so the files are what a real writer
produces; every accepted stack must give the written volume back exactly."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

import pipeline.preprocess.dicom_headers as headers

from .test_generated_cases import assert_same_volume, scan
from .test_real_files import bundled, reference, series_from_file


def rewrite(path: Path, **encoding) -> None:
    """Write ``path`` again with pydicom, in the given encoding, file meta kept as it is."""
    ds = pydicom.dcmread(path)
    pydicom.dcmwrite(path, ds, force_encoding=True, **encoding)
    assert path.read_bytes()[128:132] == b"DICM"


def misstated(paths: list[Path], implicit_vr: bool) -> None:
    """Rewrite each file's dataset in the other VR encoding than its file meta names."""
    for path in paths:
        rewrite(path, implicit_vr=implicit_vr, little_endian=True)
    with pytest.warns(UserWarning, match="Expected (explicit|implicit) VR, but found"):
        pydicom.dcmread(paths[0])  # pydicom sees the mismatch, and switches


# --- Defect 1: the dataset's VR encoding differs from its file meta's transfer syntax ------


@pytest.mark.parametrize(
    ("declared", "implicit_vr"),
    [(ExplicitVRLittleEndian, True), (ImplicitVRLittleEndian, False), (RLELossless, True)],
    ids=["explicit-meta-implicit-data", "implicit-meta-explicit-data", "rle-implicit-data"],
)
def test_vr_encoding_is_sniffed_not_taken_from_the_file_meta(
    tmp_path, dicom_writer, truth_volume, series_cfg, declared, implicit_vr
):
    paths = dicom_writer.series(tmp_path / "S1", truth_volume, transfer_syntax=declared)
    misstated(paths, implicit_vr)
    result = scan(tmp_path / "S1", series_cfg)
    assert_same_volume(result, truth_volume)
    assert result.rejections == []


def test_bundled_file_with_a_misstated_vr_encoding_reads_like_pydicom(tmp_path, series_cfg):
    # SC_rgb_jpeg.dcm: the meta says JPEG Baseline (explicit VR), the dataset is implicit VR.
    path = bundled("SC_rgb_jpeg.dcm")
    with pytest.warns(UserWarning, match="Expected explicit VR, but found implicit VR"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    [frame] = headers.read_frame_headers(path)
    assert (frame.rows, frame.cols, frame.photometric) == (ds.Rows, ds.Columns, "RGB")
    assert frame.full_read_syntax == ds.file_meta.TransferSyntaxUID
    (tmp_path / "S1").mkdir()
    shutil.copy(path, tmp_path / "S1" / "rgb.dcm")
    [row] = scan(tmp_path / "S1", {**series_cfg, "modality": None}).rejections[:1]
    assert row.reason.startswith("colour or palette image (PhotometricInterpretation RGB")


# --- Defect 2: Deflated Explicit VR Little Endian ---------------------------------------------


def test_deflated_series_is_read(tmp_path, dicom_writer, truth_volume, series_cfg):
    paths = dicom_writer.series(
        tmp_path / "S1", truth_volume, transfer_syntax=DeflatedExplicitVRLittleEndian
    )
    assert b"T1 MPRAGE" not in paths[0].read_bytes()  # the dataset really is deflated
    result = scan(tmp_path / "S1", series_cfg)
    assert_same_volume(result, truth_volume)
    assert result.rejections == []


def test_deflated_enhanced_file_is_read(tmp_path, dicom_writer, series_cfg):
    volume = dicom_writer.make_volume(n=4, slope=2.0, intercept=-10.0)
    path = dicom_writer.enhanced(tmp_path / "E" / "mf.dcm", volume, order="shuffled")
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    assert_same_volume(scan(tmp_path / "E", series_cfg), volume)


def test_bundled_deflated_file_reads_like_pydicom(tmp_path, series_cfg):
    source = bundled("image_dfl.dcm")
    series_from_file(source, tmp_path / "S1")  # copies saved deflated again by pydicom
    result = scan(tmp_path / "S1", {**series_cfg, "modality": None})
    assert result.rejections == []
    [stack] = result.stacks
    np.testing.assert_array_equal(stack.read([1])[0], reference(source))


def test_truncated_deflated_file_is_a_file_rejection(
    tmp_path, dicom_writer, truth_volume, series_cfg
):
    paths = dicom_writer.series(
        tmp_path / "S1", truth_volume, transfer_syntax=DeflatedExplicitVRLittleEndian
    )
    paths[2].write_bytes(paths[2].read_bytes()[:-200])
    [bad] = [r for r in scan(tmp_path / "S1", series_cfg).rejections if r.level == "file"]
    assert bad.path == f"S1/{paths[2].name}"


# --- Defect 3: no preamble and no file meta -----------------------------------------------


def without_file_meta(paths: list[Path], implicit_vr: bool, little_endian: bool) -> None:
    """Rewrite the files as old ACR-NEMA-like exports: no preamble, no file meta group."""
    for path in paths:
        ds = pydicom.dcmread(path)
        if not little_endian:  # pydicom writes OW bytes as they are: swap them here
            ds.PixelData = ds.pixel_array.astype(">u2").tobytes()
        del ds.file_meta
        ds.preamble = None
        pydicom.dcmwrite(path, ds, implicit_vr=implicit_vr, little_endian=little_endian)
        assert path.read_bytes()[128:132] != b"DICM"


@pytest.mark.parametrize(
    ("implicit_vr", "little_endian"),
    [(True, True), (False, True), (False, False)],
    ids=["implicit-little", "explicit-little", "explicit-big"],
)
def test_files_without_file_meta_are_read(
    tmp_path, dicom_writer, truth_volume, series_cfg, implicit_vr, little_endian
):
    paths = dicom_writer.series(tmp_path / "S1", truth_volume, names="bare")
    without_file_meta(paths, implicit_vr, little_endian)
    result = scan(tmp_path / "S1", series_cfg)
    assert_same_volume(result, truth_volume)
    assert result.rejections == []
    expected = {
        (True, True): ImplicitVRLittleEndian,
        (False, True): ExplicitVRLittleEndian,
        (False, False): ExplicitVRBigEndian,
    }[implicit_vr, little_endian]
    assert headers.read_frame_headers(paths[0])[0].full_read_syntax == expected


def test_compressed_file_without_file_meta_is_rejected_at_the_header_scan(
    tmp_path, dicom_writer, truth_volume, series_cfg
):
    paths = dicom_writer.series(tmp_path / "S1", truth_volume, transfer_syntax=RLELossless)
    without_file_meta(paths[:1], implicit_vr=False, little_endian=True)
    result = scan(tmp_path / "S1", series_cfg)
    [bad] = [r for r in result.rejections if r.level == "file"]
    assert bad.path == f"S1/{paths[0].name}"
    assert bad.reason.startswith("no transfer syntax (no file meta information) for compressed")
    assert [s.n_slices for s in result.stacks] == [truth_volume.n - 1]


# --- Defect 4: Modality LUT Sequence ------------------------------------------------------


def lut_edit(encoding: str):
    """An edit adding a Modality LUT (physical = 3 * stored + 7) with LUTData as US or OW."""
    table = (3 * np.arange(4096) + 7).astype("<u2")

    def with_lut(ds: Dataset, _k: int) -> None:
        item = Dataset()
        item.LUTDescriptor = [4096, 0, 16]
        if encoding == "OW":
            item.add_new(0x00283006, "OW", table.tobytes())
        else:
            item.add_new(0x00283006, "US", table.tolist())
        item.ModalityLUTType = "US"
        ds.ModalityLUTSequence = [item]

    return with_lut


@pytest.mark.parametrize("encoding", ["US", "OW"])
@pytest.mark.parametrize("monochrome1", [False, True], ids=["MONOCHROME2", "MONOCHROME1"])
def test_modality_lut_then_inversion(
    tmp_path, dicom_writer, truth_volume, series_cfg, encoding, monochrome1
):
    paths = dicom_writer.series(
        tmp_path / "S1", truth_volume, edit=lut_edit(encoding), monochrome1=monochrome1
    )
    written_vr = pydicom.dcmread(paths[0]).ModalityLUTSequence[0]["LUTData"].VR
    assert written_vr == encoding
    [stack] = scan(tmp_path / "S1", series_cfg).stacks
    # MONOCHROME1 stores 4095 - v; the LUT maps it to 3 (4095 - v) + 7, and the inversion over
    # the LUT's output range [7, 3 * 4095 + 7] gives 3 v + 7 back: the MONOCHROME2 values.
    np.testing.assert_array_equal(stack.read([0, 7]), 3 * truth_volume.values[[0, 7]] + 7)
