"""A chosen series that fails at decoding falls back to the next qualifying series of its
session; every reason names its files relative to data.root."""

from __future__ import annotations

import os

import pytest
from pydicom.uid import RLELossless

from pipeline.config import recipe_config
from pipeline.preprocess.record import SubjectContext
from pipeline.preprocess.subject import StepClock, extract_session
from pipeline.preprocess.transforms import SliceNormalizer
from pipeline.synthetic.phantom import new_uid

from .test_generated_cases import scan


def break_rle_header(path) -> None:
    """Say 9 RLE segments, the first far past the frame: every RLE decoder fails."""
    data = bytearray(path.read_bytes())
    at = data.rfind(b"\xfe\xff\x00\xe0")  # the frame's fragment item
    data[at + 8 : at + 16] = b"\x09\x00\x00\x00\xff\xff\xff\x7f"
    path.write_bytes(bytes(data))


@pytest.fixture
def recipe(preprocess_cfg):
    return recipe_config(preprocess_cfg)


def extract(result, stack, recipe, root):
    context = SubjectContext.from_recipe(root, recipe, "recipe-hash", root / "cache")
    return extract_session(
        result, stack, context, SliceNormalizer(recipe["normalize"]), StepClock()
    )


def write_session(root, dicom_writer, broken_first: bool):
    """Three qualifying series in one visit: SeriesNumber 2 (RLE, its frames broken when
    ``broken_first``), 5 and 7. Returns their folders' paths by SeriesNumber."""
    study = new_uid()
    folders = {n: root / "S1" / f"series{n}" for n in (2, 5, 7)}
    for n, folder in folders.items():
        volume = dicom_writer.make_volume(seed=n)
        paths = dicom_writer.series(
            folder,
            volume,
            study_uid=study,
            series_number=n,
            description=f"T1 run {n}",
            transfer_syntax=RLELossless,
        )
        if broken_first and n == 2:
            for path in paths:
                break_rle_header(path)
    return folders


def test_session_falls_back_to_the_next_qualifying_series(
    tmp_path, dicom_writer, series_cfg, recipe
):
    write_session(tmp_path, dicom_writer, broken_first=True)
    result = scan(tmp_path / "S1", series_cfg)
    [chosen] = result.stacks
    assert chosen.description == "T1 run 2"

    pixels, record = extract(result, chosen, recipe, tmp_path)

    assert pixels.shape[0] == recipe["slices"]["count"]
    used = [r for r in result.rejections if "series5" in r.path]
    assert used == [], "the series used must lose its 'not used' row"
    rows = {(r.level, r.path): r.reason for r in result.rejections}
    [(_, broken_file)] = [key for key in rows if key[0] == "file"]
    assert broken_file.startswith("S1/series2/")
    assert rows["file", broken_file].startswith("pixels cannot be decoded (RuntimeError")
    assert rows["series", "S1/series2/"].startswith(
        f"slices could not be extracted: cannot decode the pixels of {broken_file} ("
    )
    assert "SeriesNumber 5 'T1 run 5'" in rows["series", "S1/series7/"]
    assert record.series_hash != chosen.series_hash


def test_session_without_a_decodable_series_gives_none(tmp_path, dicom_writer, series_cfg, recipe):
    folder = tmp_path / "S1"
    paths = dicom_writer.series(folder, dicom_writer.make_volume(), transfer_syntax=RLELossless)
    for path in paths:
        break_rle_header(path)
    result = scan(folder, series_cfg)
    assert extract(result, result.stacks[0], recipe, tmp_path) is None
    assert sorted(r.level for r in result.rejections) == ["file", "series"]
    assert all(str(tmp_path) not in r.reason for r in result.rejections)


def test_unreadable_file_reason_has_no_absolute_path(
    tmp_path, dicom_writer, truth_volume, series_cfg
):
    folder = tmp_path / "S1"
    dicom_writer.series(folder, truth_volume)
    os.symlink(tmp_path / "gone.dcm", folder / "link.dcm")  # a dangling link in an export
    [bad] = [r for r in scan(folder, series_cfg).rejections if r.level == "file"]
    assert (bad.path, bad.reason) == ("S1/link.dcm", "cannot be read (No such file or directory)")


def test_library_message_naming_a_file_is_made_relative(tmp_path, series_cfg):
    folder = tmp_path / "S1"
    folder.mkdir()
    (folder / "T1w.nii").write_bytes(b"not a NIfTI header" * 40)  # nibabel names the full path
    [row] = [r for r in scan(folder, series_cfg).rejections if r.level == "series"]
    assert row.path == "S1/T1w.nii"
    assert str(tmp_path) not in row.reason
