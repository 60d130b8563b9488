"""Reading a file as a sibling of a file read before gives exactly what reading it alone gives,
whatever the file: the same series, another series, or one that differs in one element."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.sequence import Sequence

import pipeline.preprocess.dicom_headers as headers
from pipeline.preprocess.dicom_siblings import SiblingReader, header_elements
from tests.helpers import bundled_dicom_files

Outcome = list[headers.FrameHeader] | tuple[str, str]


def alone(path: Path) -> Outcome:
    try:
        return headers.read_frame_headers(path)
    except (headers.DicomFileError, headers.NotDicomImageError) as err:
        return type(err).__name__, str(err)


def through(reader: SiblingReader, path: Path) -> Outcome:
    try:
        return reader.read(path)
    except (headers.DicomFileError, headers.NotDicomImageError) as err:
        return type(err).__name__, str(err)


def test_every_bundled_file_reads_the_same_after_any_other():
    files = bundled_dicom_files()
    assert len(files) > 80
    expected = {path: alone(path) for path in files}
    for order in (files, files[::-1]):  # each file after a different one, twice
        reader = SiblingReader()
        for path in order:
            assert through(reader, path) == expected[path], path.name


def _uids_of_every_length(ds: pydicom.Dataset, k: int) -> None:
    """Instance UIDs of growing length (the offsets after them move), and a slice location."""
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.{7 ** (k + 1)}"
    ds.SliceLocation = str(1.5 * k)


SYNTAXES = [pydicom.uid.ExplicitVRLittleEndian, pydicom.uid.ImplicitVRLittleEndian]
COMPRESSED = pydicom.uid.RLELossless


def write_series(
    folder: Path, dicom_writer, n: int = 6, slope: float = 1.0, intercept: float = 0.0, **options
) -> list[Path]:
    volume = dicom_writer.make_volume(n=n, slope=slope, intercept=intercept)
    return dicom_writer.series(
        folder, volume, edit=_uids_of_every_length, slope=slope, intercept=intercept, **options
    )


@pytest.mark.parametrize("syntax", [*SYNTAXES, COMPRESSED], ids=["explicit", "implicit", "rle"])
def test_a_series_is_read_as_siblings_of_its_first_file(tmp_path, dicom_writer, syntax):
    paths = write_series(tmp_path / "S", dicom_writer, n=12, transfer_syntax=syntax)
    reader = SiblingReader()
    frames = [reader.read(path) for path in paths]
    assert frames == [headers.read_frame_headers(path) for path in paths]
    assert reader.stats == {"full": 1, "sibling": 11}
    assert len({frame.instance_key for [frame] in frames}) == 12
    assert len({frame.position for [frame] in frames}) == 12
    # The siblings' sizes and times, as the series fingerprint would stat them.
    assert reader.file_stats == {
        str(path): (path.stat().st_size, path.stat().st_mtime_ns) for path in paths[1:]
    }


def _comment(ds: pydicom.Dataset) -> None:
    ds.ImageComments = "inserted"


def _no_slice_location(ds: pydicom.Dataset) -> None:
    del ds.SliceLocation


def _other_description(ds: pydicom.Dataset) -> None:
    ds.SeriesDescription = ds.SeriesDescription[::-1]  # the same length


def _longer_description(ds: pydicom.Dataset) -> None:
    ds.SeriesDescription = "a much longer description than the others"


def _other_series(ds: pydicom.Dataset) -> None:
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()


def _other_bits_stored(ds: pydicom.Dataset) -> None:
    ds.BitsStored, ds.HighBit = 10, 9


def _a_sequence(ds: pydicom.Dataset) -> None:
    item = pydicom.Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7"
    ds.ReferencedImageSequence = Sequence([item])
    ds["ReferencedImageSequence"].is_undefined_length = True


def _rescaled(ds: pydicom.Dataset) -> None:
    ds.RescaleSlope, ds.RescaleIntercept = "2.5", "-10"


def _turned(ds: pydicom.Dataset) -> None:
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]


def _thicker(ds: pydicom.Dataset) -> None:
    ds.SliceThickness, ds.PixelSpacing = "3.25", ["0.5", "0.5"]


def _other_syntax(ds: pydicom.Dataset) -> None:
    implicit = ds.file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    ds.file_meta.TransferSyntaxUID = SYNTAXES[0] if implicit else SYNTAXES[1]


def _moved(ds: pydicom.Dataset) -> None:
    ds.SliceLocation = "-17.25"  # not read; longer than the others'


#: Changes the fast reader takes only for the recomputed fields, or does not read at all.
PER_FILE_CHANGES = [_rescaled, _turned, _thicker, _moved]
#: Changes after which the file is read in full.
OTHER_CHANGES = [
    _comment,
    _no_slice_location,
    _other_description,
    _longer_description,
    _other_series,
    _other_bits_stored,
    _a_sequence,
    _other_syntax,
]


@pytest.mark.parametrize("change", PER_FILE_CHANGES + OTHER_CHANGES)
@pytest.mark.parametrize("syntax", SYNTAXES, ids=["explicit", "implicit"])
def test_a_file_that_differs_in_one_element_reads_as_itself(
    tmp_path, dicom_writer, syntax, change: Callable[[pydicom.Dataset], None]
):
    paths = write_series(  # with rescale elements, which _rescaled changes
        tmp_path / "S", dicom_writer, n=4, transfer_syntax=syntax, slope=1.5, intercept=-3.0
    )
    ds = pydicom.dcmread(paths[3])
    change(ds)
    ds.save_as(paths[3], enforce_file_format=True)
    expected = alone(paths[3])
    reader = SiblingReader()
    for path in paths[:3]:
        reader.read(path)
    assert through(reader, paths[3]) == expected
    assert reader.stats["full"] == (1 if change in PER_FILE_CHANGES else 2)


def test_a_different_length_of_per_file_value_is_a_sibling(tmp_path, dicom_writer):
    paths = write_series(tmp_path / "S", dicom_writer, n=4)
    ds = pydicom.dcmread(paths[3])
    ds.ImagePositionPatient = [-120.123456, 3.5, 1000.25]  # longer than the others
    ds.save_as(paths[3], enforce_file_format=True)
    reader = SiblingReader()
    assert [through(reader, path) for path in paths] == [alone(path) for path in paths]
    assert reader.stats == {"full": 1, "sibling": 3}
    assert alone(paths[3])[0].position == (-120.123456, 3.5, 1000.25)


def _rewrite(path: Path, edit: Callable[[bytearray], bytes | bytearray]) -> None:
    path.write_bytes(edit(bytearray(path.read_bytes())))


def _truncated(data: bytearray) -> bytes:
    return bytes(data[:-100])


def _new_preamble(data: bytearray) -> bytearray:
    data[:128] = bytes(range(128))
    return data


def _no_marker(data: bytearray) -> bytearray:
    data[128:132] = b"XXXX"
    return data


def _declared_big_endian(data: bytearray) -> bytes:
    """The file meta names Explicit VR Big Endian, for the same bytes (pydicom reads it)."""
    explicit, big = b"1.2.840.10008.1.2.1\0", b"1.2.840.10008.1.2.2\0"
    assert explicit in data
    return bytes(data).replace(explicit, big, 1)


def _longer_pixel_data(data: bytearray) -> bytes:
    return bytes(data + bytes(2))  # pixel data element's length unchanged: trailing bytes


@pytest.mark.parametrize(
    ("edit", "sibling"),
    [
        (_truncated, False),
        (_new_preamble, True),
        (_no_marker, False),
        (_declared_big_endian, False),
        (_longer_pixel_data, True),
    ],
)
def test_a_file_changed_outside_its_elements_reads_as_itself(tmp_path, dicom_writer, edit, sibling):
    paths = write_series(tmp_path / "S", dicom_writer, n=3)
    _rewrite(paths[2], edit)
    reader = SiblingReader()
    assert [through(reader, path) for path in paths] == [alone(path) for path in paths]
    assert reader.stats["sibling"] == (2 if sibling else 1)


@pytest.mark.parametrize("syntax", [SYNTAXES[0], COMPRESSED], ids=["native", "rle"])
def test_a_truncated_sibling_is_rejected_with_the_reason_of_a_full_read(
    tmp_path, dicom_writer, syntax
):
    paths = write_series(tmp_path / "S", dicom_writer, n=3, transfer_syntax=syntax)
    _rewrite(paths[2], _truncated)
    reader = SiblingReader()
    reader.read(paths[0])
    with pytest.raises(headers.DicomFileError, match="truncated copy"):
        reader.read(paths[2])
    assert through(reader, paths[2]) == alone(paths[2])
    assert reader.stats == {"full": 3}


def test_interleaved_series_are_each_read_against_their_own_first_file(tmp_path, dicom_writer):
    axial = write_series(tmp_path / "A", dicom_writer, n=5)
    localizer = write_series(tmp_path / "L", dicom_writer, n=5, description="localizer")
    files = [path for pair in zip(axial, localizer, strict=True) for path in pair]
    reader = SiblingReader()
    assert [through(reader, path) for path in files] == [alone(path) for path in files]
    assert reader.stats == {"full": 2, "sibling": 8}


def test_header_elements_end_at_the_pixel_data_header(tmp_path, dicom_writer):
    [path] = write_series(tmp_path / "S", dicom_writer, n=1)
    data = path.read_bytes()
    elements = header_elements(data, implicit=False)
    assert elements is not None
    assert elements[0].tag == 0x00020000 and elements[0].start == 132
    assert elements[-1].tag == 0x7FE00010
    assert elements[-1].value == len(data) - 24 * 20 * 2  # the phantom's 24 x 20 16-bit pixels
    starts = [element.start for element in elements]
    assert starts[1:] == [element.end for element in elements[:-1]]  # contiguous
    assert not elements[-1].free
    assert header_elements(data[: elements[-1].start], implicit=False) is None
