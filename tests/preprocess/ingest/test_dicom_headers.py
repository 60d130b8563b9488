"""The fast raw header reader agrees with pydicom on every file it accepts, and hands the rest
(enhanced MR, big endian, no preamble, corrupt files) to pydicom."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nibabel as nib
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian, RLELossless

import pipeline.preprocess.dicom_headers as headers
from pipeline.preprocess.dicom_raw import NeedsPydicom, read_raw_header

NICOM_DATA = Path(nib.__file__).parent / "nicom" / "tests" / "data"


def via_pydicom(path: Path) -> list[headers.FrameHeader] | tuple[str, str]:
    """pydicom's reading of a file: its frames, or the error it raises."""
    try:
        with open(path, "rb") as fh:
            return headers._read_with_pydicom(fh, path, os.path.getsize(path))
    except (headers.DicomFileError, headers.NotDicomImageError) as err:
        return type(err).__name__, str(err)


def via_default(path: Path) -> list[headers.FrameHeader] | tuple[str, str]:
    try:
        return headers.read_frame_headers(path)
    except (headers.DicomFileError, headers.NotDicomImageError) as err:
        return type(err).__name__, str(err)


def uses_fast_path(path: Path) -> bool:
    with open(path, "rb") as fh:
        try:
            read_raw_header(fh, headers.WANTED_TAGS)
        except NeedsPydicom:
            return False
    return True


def nested_sequences(ds: Dataset, k: int) -> None:
    """Undefined-length sequences, items and a private UN sequence before the wanted tags end."""
    inner = Dataset()
    inner.CodeValue, inner.CodeMeaning = "121311", "Localizer"
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    item.PurposeOfReferenceCodeSequence = Sequence([inner])
    item.is_undefined_length_sequence_item = True
    ds.ReferencedImageSequence = Sequence([item, Dataset()])
    ds["ReferencedImageSequence"].is_undefined_length = True
    item["PurposeOfReferenceCodeSequence"].is_undefined_length = True
    ds.add_new(0x00190010, "LO", "ACME private")
    ds.add_new(0x00191010, "OB", bytes(5000))  # a big private block, skipped
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SeriesDescription = "Tête T1 ü"


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"edit": nested_sequences},
        {"edit": nested_sequences, "transfer_syntax": ImplicitVRLittleEndian},
        {"transfer_syntax": RLELossless, "signed": True, "slope": 0.5, "intercept": -300.0},
        {"monochrome1": True},
    ],
    ids=["plain", "sequences", "implicit-vr", "rle-signed-rescale", "monochrome1"],
)
def test_fast_reader_matches_pydicom_on_generated_files(tmp_path, dicom_writer, options):
    volume = dicom_writer.make_volume(
        n=3, slope=options.get("slope", 1.0), intercept=options.get("intercept", 0.0)
    )
    paths = dicom_writer.series(tmp_path / "S", volume, **options)
    for path in paths:
        assert uses_fast_path(path)
        assert headers.read_frame_headers(path) == via_pydicom(path)
    frame = headers.read_frame_headers(paths[0])[0]
    if "edit" in options:
        assert frame.description == "Tête T1 ü"
    if "slope" in options:
        assert frame.rescale == (0.5, -300.0) and frame.stored_range == (-32768, 32767)


@pytest.mark.parametrize(
    "name",
    [
        "MR_small.dcm",
        "MR_small_implicit.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_padded.dcm",
        "JPGExtended.dcm",
        "693_J2KI.dcm",
    ],
)
def test_fast_reader_matches_pydicom_on_bundled_files(name):
    path = Path(get_testdata_file(name))
    assert uses_fast_path(path)
    assert headers.read_frame_headers(path) == via_pydicom(path)


@pytest.mark.parametrize(
    ("name", "outcome"),
    [
        ("0.dcm", None),
        ("csa_slice_norm.dcm", "image header without pixel data"),  # pixels stripped
        ("decimal_rescale.dcm", "no SeriesInstanceUID"),  # anonymized away
    ],
)
def test_fast_reader_matches_pydicom_on_real_siemens_headers(name, outcome):
    path = NICOM_DATA / name  # Siemens files with CSA private headers
    assert uses_fast_path(path)
    fast = via_default(path)
    assert fast == via_pydicom(path)
    if outcome is None:
        assert fast[0].position is not None and fast[0].rescale is None
    else:
        assert fast[0] == "DicomFileError" and fast[1].startswith(outcome)


@pytest.mark.parametrize(
    "name", ["MR_small_bigendian.dcm", "MR_small_expb.dcm", "ExplVR_BigEnd.dcm"]
)
def test_big_endian_goes_to_pydicom(name, tmp_path):
    path = Path(get_testdata_file(name))
    assert not uses_fast_path(path)
    if name.startswith("MR"):
        frame = headers.read_frame_headers(path)[0]
        assert (frame.rows, frame.cols, frame.modality) == (64, 64, "MR")


def test_enhanced_file_goes_to_pydicom(tmp_path, dicom_writer):
    path = dicom_writer.enhanced(
        tmp_path / "E", dicom_writer.make_volume(n=4, slope=2.0, intercept=-10.0)
    )
    assert not uses_fast_path(path)
    frames = headers.read_frame_headers(path)
    assert [f.frame for f in frames] == [0, 1, 2, 3]
    assert {f.rescale for f in frames} == {(2.0, -10.0)}


def test_file_without_preamble_goes_to_pydicom(tmp_path, dicom_writer):
    [path] = dicom_writer.series(tmp_path / "S", dicom_writer.make_volume(n=1))
    ds = pydicom.dcmread(path)
    del ds.file_meta  # an old ACR-NEMA-like export: no preamble, no meta group
    ds.preamble = None
    bare = tmp_path / "bare"
    pydicom.dcmwrite(bare, ds, implicit_vr=True, little_endian=True)
    assert bare.read_bytes()[128:132] != b"DICM"
    assert not uses_fast_path(bare)
    frame = headers.read_frame_headers(bare)[0]
    assert frame.series_key == headers.read_frame_headers(path)[0].series_key


def test_corrupt_header_after_preamble_is_a_file_error(tmp_path):
    path = tmp_path / "bad.dcm"
    path.write_bytes(bytes(128) + b"DICM" + b"\x02\x00\x10\x00UI\xff\x7f" + bytes(40))
    with pytest.raises((headers.DicomFileError, headers.NotDicomImageError)):
        headers.read_frame_headers(path)


def test_structured_report_and_dicomdir_are_not_images(tmp_path):
    sr = Path(get_testdata_file("test-SR.dcm"))
    with pytest.raises(headers.NotDicomImageError, match="not an image"):
        headers.read_frame_headers(sr)
    dicomdir = Path(get_testdata_file("MR_small.dcm")).parent / "dicomdirtests" / "DICOMDIR"
    if dicomdir.exists():
        shutil.copy(dicomdir, tmp_path / "DICOMDIR")
        with pytest.raises(headers.NotDicomImageError, match="DICOMDIR"):
            headers.read_frame_headers(tmp_path / "DICOMDIR")
