"""Walking a header along the previous file's layout gives exactly what a fresh walk gives,
whatever the next file is: the same series, another series, or a file that differs in one
element."""

from __future__ import annotations

import struct
from pathlib import Path

import nibabel as nib
import pydicom
import pytest
from pydicom.sequence import Sequence

import pipeline.preprocess.dicom_headers as headers
import pipeline.preprocess.dicom_raw as raw
from pipeline.preprocess.dicom_layout import Layout

NICOM_DATA = Path(nib.__file__).parent / "nicom" / "tests" / "data"
PYDICOM_DATA = Path(pydicom.data.__file__).parent / "test_files"


def read(path: Path) -> list[headers.FrameHeader] | tuple[str, str]:
    try:
        return headers.read_frame_headers(path)
    except (headers.DicomFileError, headers.NotDicomImageError) as err:
        return type(err).__name__, str(err)


def cold(path: Path) -> list[headers.FrameHeader] | tuple[str, str]:
    """The file read with no layout to walk along."""
    raw._layouts.clear()
    return read(path)


def bundled_files() -> list[Path]:
    """Every DICOM test file pydicom bundles (its own folder: no download), and nibabel's."""
    return sorted(PYDICOM_DATA.rglob("*.dcm")) + sorted(NICOM_DATA.glob("*.dcm"))


def test_every_bundled_file_reads_the_same_after_any_other():
    files = bundled_files()
    assert len(files) > 80
    expected = {path: cold(path) for path in files}
    raw._layouts.clear()
    for order in (files, files[::-1]):  # each file after a different one, twice
        for path in order:
            assert read(path) == expected[path], path.name


def element(tag: int, vr: bytes, value: bytes) -> bytes:
    """An explicit VR little-endian element with a 2-byte length."""
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


ROWS = element(0x00280010, b"US", bytes([64, 0])) + bytes(4)  # where the layouts below stop


def layout_of(data: bytes) -> Layout:
    return Layout.of(data, 0, False, lambda tag: True, lambda tag: tag == 0x00280010)


def test_a_run_that_repeats_is_taken_from_the_template():
    first = element(0x00080060, b"CS", b"MR") + element(0x00200013, b"IS", b"1 ") + ROWS
    layout = layout_of(first)
    values: dict[int, bytes] = {}
    assert layout.walk(first, 0, values) == (len(first) - len(ROWS), True)
    assert values == {0x00080060: b"MR", 0x00200013: b"1 "}
    assert layout.varying == [False, False]


def test_an_element_that_changes_is_learned_and_then_decoded_alone():
    def file(number: bytes) -> bytes:
        return element(0x00080060, b"CS", b"MR") + element(0x00200013, b"IS", number) + ROWS

    layout = layout_of(file(b"1 "))
    for number in (b"2 ", b"10", b"123 "):  # the last one longer: the next offsets move
        values: dict[int, bytes] = {}
        data = file(number)
        assert layout.walk(data, 0, values) == (len(data) - len(ROWS), True)
        assert values[0x00200013] == number
    assert layout.varying == [False, True]
    assert [values is None for _, _, values in layout.runs] == [False, True]


def test_a_file_that_parts_ways_stops_the_walk_at_an_element_boundary():
    modality = element(0x00080060, b"CS", b"MR")
    layout = layout_of(modality + element(0x00200013, b"IS", b"1 ") + ROWS)
    other = modality + element(0x00200011, b"IS", b"5 ") + ROWS  # another element in its place
    values: dict[int, bytes] = {}
    assert layout.walk(other, 0, values) == (len(modality), False)
    assert values == {0x00080060: b"MR"}


def test_a_layout_most_of_whose_elements_change_is_stale():
    def file(k: int) -> bytes:
        return b"".join(element(0x00200013 + i, b"IS", b"%d " % (k % 10)) for i in range(4)) + ROWS

    layout = layout_of(file(0))
    assert not layout.stale
    layout.walk(file(1), 0, {})
    assert layout.stale


def _insert_comment(ds: pydicom.Dataset) -> None:
    ds.ImageComments = "inserted"


def _drop_slice_location(ds: pydicom.Dataset) -> None:
    ds.SliceLocation = "1"
    del ds.SliceLocation


def _longer_description(ds: pydicom.Dataset) -> None:
    ds.SeriesDescription = "a much longer description than the others"


def _another_sequence(ds: pydicom.Dataset) -> None:
    item = pydicom.Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7"
    ds.ReferencedImageSequence = Sequence([item])
    ds["ReferencedImageSequence"].is_undefined_length = True


def _sequenced(ds: pydicom.Dataset, k: int) -> None:
    item = pydicom.Dataset()
    item.ReferencedSOPInstanceUID = f"1.2.3.{k}"
    ds.ReferencedImageSequence = Sequence([item])
    ds["ReferencedImageSequence"].is_undefined_length = True


@pytest.mark.parametrize(
    "change", [_insert_comment, _drop_slice_location, _longer_description, _another_sequence]
)
@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_a_file_that_differs_in_one_element_reads_as_itself(tmp_path, dicom_writer, change,
                                                             implicit):
    options = {"transfer_syntax": pydicom.uid.ImplicitVRLittleEndian} if implicit else {}
    paths = dicom_writer.series(
        tmp_path / "S", dicom_writer.make_volume(n=4), edit=_sequenced, **options
    )
    ds = pydicom.dcmread(paths[3])
    change(ds)
    ds.save_as(paths[3])
    expected = cold(paths[3])
    assert expected != cold(paths[2])
    raw._layouts.clear()
    for path in paths[:3]:  # the layout learns what changes from slice to slice
        read(path)
    learned = [layout for key, layout in raw._layouts.items() if key != ("meta",)]
    assert len(learned) == 1 and 0 < sum(learned[0].varying) < len(learned[0].tags) / 4
    assert read(paths[3]) == expected
    assert read(paths[2]) == cold(paths[2])


def test_a_sequence_of_undefined_length_is_skipped_not_kept_as_a_value():
    sequence = (
        struct.pack("<HH2sHL", 0x0008, 0x1140, b"SQ", 0, 0xFFFFFFFF)
        + struct.pack("<HHL", 0xFFFE, 0xE000, 0)  # one empty item
        + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)  # the sequence delimiter
    )
    data = sequence + element(0x00080060, b"CS", b"MR") + ROWS
    layout = layout_of(data)
    assert layout.tags == [0x00081140, 0x00080060]
    for _ in range(2):  # from the template's runs, then again
        values: dict[int, bytes] = {}
        assert layout.walk(data, 0, values) == (len(data) - len(ROWS), True)
        assert values == {0x00080060: b"MR"}  # what the ordinary walk keeps
