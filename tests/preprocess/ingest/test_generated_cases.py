"""Generated export mess, one case each: every series is written from a known canonical volume,
so an accepted stack must give exactly that volume back, and a rejected one the stated reason."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from pipeline.preprocess.ingest import IngestContext, ScanResult, scan_subject


def scan(subject_dir: Path, cfg: dict, expected: int | None = None, **kwargs) -> ScanResult:
    context = IngestContext.from_recipe(
        subject_dir.parent, {"series": cfg, "slices": {"expected": expected}}
    )
    return scan_subject(subject_dir.name, subject_dir, context, **kwargs)


def assert_same_volume(result: ScanResult, volume) -> None:
    assert len(result.stacks) == 1, result.rejections
    stack = result.stacks[0]
    np.testing.assert_allclose(stack.positions_mm, volume.positions(), atol=1e-3)
    np.testing.assert_array_equal(stack.read(range(stack.n_slices)), volume.values.astype("f4"))


def reasons(result: ScanResult, level: str | None = None) -> list[str]:
    return [r.reason for r in result.rejections if level is None or r.level == level]


def test_shuffled_file_names_and_order(tmp_path, dicom_writer, truth_volume, series_cfg):
    dicom_writer.series(tmp_path / "S1" / "x", truth_volume, order="shuffled", names="random")
    result = scan(tmp_path / "S1", series_cfg, expected=truth_volume.n)
    assert_same_volume(result, truth_volume)
    assert result.rejections == [] and result.n_files == truth_volume.n


def test_shuffled_instance_numbers_are_not_used_for_order(
    tmp_path, dicom_writer, truth_volume, series_cfg
):
    dicom_writer.series(tmp_path / "S1", truth_volume, instance_numbers="shuffled", names="bare")
    assert_same_volume(scan(tmp_path / "S1", series_cfg), truth_volume)


def test_feet_first_export_gives_the_head_first_stack(
    tmp_path, dicom_writer, truth_volume, series_cfg
):
    dicom_writer.series(tmp_path / "HF", truth_volume)
    dicom_writer.series(
        tmp_path / "FF", truth_volume, layout=dicom_writer.FEET_FIRST, order="descending"
    )
    head_first, feet_first = scan(tmp_path / "HF", series_cfg), scan(tmp_path / "FF", series_cfg)
    assert_same_volume(head_first, truth_volume)
    assert_same_volume(feet_first, truth_volume)
    assert head_first.stacks[0].pixel_spacing_mm == feet_first.stacks[0].pixel_spacing_mm


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("flip_rows", [False, True])
@pytest.mark.parametrize("flip_cols", [False, True])
def test_every_in_plane_layout_comes_back_canonical(
    tmp_path, dicom_writer, series_cfg, transpose, flip_rows, flip_cols
):
    volume = dicom_writer.make_volume(n=4, rows=12, cols=9, spacing=(3.0, 0.9, 1.1))
    layout = dicom_writer.Layout(transpose, flip_rows, flip_cols)
    dicom_writer.series(tmp_path / "S", volume, layout=layout, order="shuffled")
    result = scan(tmp_path / "S", series_cfg)
    assert_same_volume(result, volume)
    assert result.stacks[0].shape == (12, 9)
    assert result.stacks[0].pixel_spacing_mm == pytest.approx((0.9, 1.1))


def test_oblique_series_is_sorted_along_its_normal(tmp_path, dicom_writer, series_cfg):
    angle = np.deg2rad(12.0)  # a tilted axial acquisition
    c, s = np.cos(angle), np.sin(angle)
    tilt = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    volume = dicom_writer.make_volume(n=6, axes=tilt)
    dicom_writer.series(tmp_path / "S", volume, order="shuffled", layout=dicom_writer.FEET_FIRST)
    result = scan(tmp_path / "S", series_cfg)
    assert_same_volume(result, volume)
    assert result.stacks[0].spacing_mm == pytest.approx(volume.spacing[0], abs=1e-3)


def test_localizer_in_the_same_folder_is_rejected_by_description(
    tmp_path, dicom_writer, truth_volume, series_cfg
):
    folder = tmp_path / "S1" / "mixed"
    dicom_writer.series(folder, truth_volume, names="random", seed=1)
    scout = dicom_writer.make_volume(n=3, rows=16, cols=16)
    dicom_writer.series(
        folder, scout, names="random", seed=2, description="AAHead_Scout", series_number=1
    )
    result = scan(tmp_path / "S1", series_cfg, expected=truth_volume.n)
    assert_same_volume(result, truth_volume)
    assert reasons(result) == [
        "localizer/scout by its SeriesDescription 'AAHead_Scout' (series.description_exclude)"
    ]


def test_localizer_by_image_type_is_rejected_whatever_its_description(
    tmp_path, dicom_writer, truth_volume, series_cfg
):
    """An axial scout named like a sequence, with a lower SeriesNumber: with slices.expected=null
    only its ImageType (ORIGINAL\\PRIMARY\\LOCALIZER) tells it apart from the T1."""
    folder = tmp_path / "S1"
    dicom_writer.series(folder / "t1", truth_volume, series_number=3)
    scout = dicom_writer.make_volume(n=3, rows=16, cols=16)

    def as_localizer(ds, _index):
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]

    dicom_writer.series(
        folder / "scout", scout, series_number=1, description="t1_fl2d", edit=as_localizer
    )
    result = scan(folder, series_cfg, expected=None)
    assert_same_volume(result, truth_volume)
    assert reasons(result, "series") == ["localizer/scout by its ImageType (LOCALIZER)"]


def test_localizer_without_telling_description_is_caught_by_geometry(
    tmp_path, dicom_writer, truth_volume, series_cfg
):
    folder = tmp_path / "S1"
    dicom_writer.series(folder, truth_volume, names="random", seed=1)
    # Index axes c, r, k run towards +y, -z, +x: a sagittal slice (columns are the axes).
    sagittal = np.array([[0.0, 1, 0], [0, 0, -1], [1, 0, 0]]).T
    scout = dicom_writer.make_volume(n=3, rows=16, cols=16, axes=sagittal)
    dicom_writer.series(folder, scout, names="random", seed=2, description="t1_fl2d")
    # One series with three orientations, like a tri-plane localizer.
    tri = [
        dicom_writer.make_volume(n=1, rows=16, cols=16, axes=a, seed=i)
        for i, a in enumerate(
            [np.eye(3), sagittal, np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]).T]
        )
    ]
    uid = generate_uid()
    for i, v in enumerate(tri):
        dicom_writer.series(folder / f"tri{i}", v, series_uid=uid, description="t1_fl2d")
    result = scan(folder, series_cfg, expected=truth_volume.n)
    assert_same_volume(result, truth_volume)
    found = sorted(reasons(result, "series"))
    assert len(found) == 2
    assert found[0].startswith(
        "2D sagittal series, 4.0 mm slices: reslicing to axial would blur; set "
        "series.reslice_2d=true to accept"
    )
    assert found[1].startswith("mixed orientation: 3 different ImageOrientationPatient values")


def test_junk_files_are_counted_not_rejected(tmp_path, dicom_writer, truth_volume, series_cfg):
    folder = tmp_path / "S1"
    dicom_writer.series(folder / "dcm", truth_volume)
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(200))
    (folder / "notes.txt").write_text("scanned twice, second run better\n")
    (folder / "dcm" / "._slice_000.dcm").write_bytes(b"\x00\x05\x16\x07" + bytes(80))
    (folder / "dcm" / "._slice_001.dcm").write_bytes(bytes(40))
    result = scan(folder, series_cfg)
    assert_same_volume(result, truth_volume)
    assert result.rejections == []
    assert (result.n_files, result.n_non_dicom) == (truth_volume.n + 4, 4)


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("IM0007", b"", "empty file"),
        ("slice.dcm", b"\x00" * 100, "only 100 bytes"),
        ("IM0008", b"\x00" * 64, "only 64 bytes"),  # the start of a preamble, no extension
        ("IM0009", b"\x00" * 300_000, "all 300000 bytes are zero"),  # a zero-filled copy
        ("slice.IMA", bytes(range(256)) * 40, "named like a DICOM file (.IMA) but does not"),
    ],
)
def test_file_cut_before_its_preamble_is_rejected_not_counted_as_junk(
    tmp_path, dicom_writer, truth_volume, series_cfg, name, content, says
):
    dicom_writer.series(tmp_path / "S1", truth_volume)
    (tmp_path / "S1" / name).write_bytes(content)
    result = scan(tmp_path / "S1", series_cfg)
    [bad] = [r for r in result.rejections if r.level == "file"]
    assert bad.path == f"S1/{name}" and says in bad.reason
    assert result.n_non_dicom == 0
    assert_same_volume(result, truth_volume)


def test_truncated_file_is_rejected_with_its_path_and_the_rest_goes_on(
    tmp_path, dicom_writer, truth_volume, series_cfg
):
    paths = dicom_writer.series(tmp_path / "S1", truth_volume)
    top = paths[-1]
    top.write_bytes(top.read_bytes()[:-50])  # a copy cut short: the most superior slice
    result = scan(tmp_path / "S1", series_cfg)
    [bad] = [r for r in result.rejections if r.level == "file"]
    assert bad.path == f"S1/{top.name}" and "truncated" in bad.reason
    assert result.stacks[0].n_slices == truth_volume.n - 1
    np.testing.assert_array_equal(result.stacks[0].read([0]), truth_volume.values[:1])

    strict = scan(tmp_path / "S1", series_cfg, expected=truth_volume.n)
    assert strict.stacks == []
    assert f"{truth_volume.n - 1} slices, expected {truth_volume.n} (slices.expected)" in reasons(
        strict, "series"
    )


def test_file_cut_inside_its_header_is_rejected(tmp_path, dicom_writer, truth_volume, series_cfg):
    paths = dicom_writer.series(tmp_path / "S1", truth_volume)
    paths[3].write_bytes(paths[3].read_bytes()[:400])
    result = scan(tmp_path / "S1", series_cfg)
    [bad] = [r for r in result.rejections if r.level == "file"]
    assert bad.path.endswith(paths[3].name)
    assert "gap" in reasons(result, "series")[0]  # the hole it leaves is reported too


def _flip_transfer_syntax_length(data: bytes) -> bytes:
    flipped = bytearray(data)
    flipped[data.find(b"\x02\x00\x10\x00UI") + 6] ^= 0x5A  # the UID swallows what follows
    return bytes(flipped)


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (_flip_transfer_syntax_length, "the file meta names no transfer syntax pydicom knows"),
        (lambda data: data[:132] + bytes(range(7, 250)) * 16, "names no SOP Class and no image"),
    ],
    ids=["transfer-syntax-length", "garbage-after-preamble"],
)
def test_damaged_header_after_the_preamble_is_a_file_rejection(
    tmp_path, dicom_writer, truth_volume, series_cfg, damage, says
):
    paths = dicom_writer.series(tmp_path / "S1", truth_volume)
    paths[3].write_bytes(damage(paths[3].read_bytes()))
    result = scan(tmp_path / "S1", series_cfg)
    [bad] = [r for r in result.rejections if r.level == "file"]
    assert bad.path.endswith(paths[3].name) and says in bad.reason
    assert result.n_non_dicom == 0


def test_43_slice_series_rejected_when_44_expected(tmp_path, dicom_writer, series_cfg):
    volume = dicom_writer.make_volume(n=43, rows=8, cols=8)
    dicom_writer.series(tmp_path / "S1", volume)
    result = scan(tmp_path / "S1", series_cfg, expected=44)
    assert result.stacks == []
    assert reasons(result, "series") == ["43 slices, expected 44 (slices.expected)"]
    assert [r.level for r in result.rejections] == ["series", "session", "subject"]


def test_exact_duplicate_file_is_ignored_and_reported(
    tmp_path, dicom_writer, truth_volume, series_cfg
):
    paths = dicom_writer.series(tmp_path / "S1", truth_volume)
    shutil.copy(paths[2], tmp_path / "S1" / "copy_of_slice.dcm")
    result = scan(tmp_path / "S1", series_cfg, expected=truth_volume.n)
    assert_same_volume(result, truth_volume)
    [dup] = result.rejections
    assert dup.level == "file" and "duplicate copy" in dup.reason and "SOPInstanceUID" in dup.reason


def test_duplicated_slice_position_rejects_the_series(
    tmp_path, dicom_writer, truth_volume, series_cfg
):
    uid = generate_uid()
    dicom_writer.series(tmp_path / "S1", truth_volume, series_uid=uid)
    extra = dicom_writer.Volume(
        truth_volume.values[4:5],
        truth_volume.spacing,
        tuple(truth_volume.coordinates()[4, 0, 0]),
    )
    dicom_writer.series(tmp_path / "S1" / "again", extra, series_uid=uid)
    result = scan(tmp_path / "S1", series_cfg)
    assert result.stacks == []
    [reason] = reasons(result, "series")
    assert reason.startswith("repeated slice positions: 9 slices at 8 distinct positions")


def test_4d_series_is_rejected(tmp_path, dicom_writer, series_cfg):
    uid = generate_uid()
    for t in range(3):
        volume = dicom_writer.make_volume(n=5, rows=8, cols=8, seed=t)
        dicom_writer.series(tmp_path / "S1" / f"t{t}", volume, series_uid=uid)
    result = scan(tmp_path / "S1", series_cfg)
    assert result.stacks == []
    assert reasons(result, "series") == [
        "15 slices at 5 distinct positions, 3 at each: a 4D series (fMRI, DWI, multi-echo) "
        "rather than one volume"
    ]


def test_mixed_orientation_is_rejected(tmp_path, dicom_writer, series_cfg):
    uid = generate_uid()
    straight = dicom_writer.make_volume(n=4, rows=8, cols=8)
    angle = np.deg2rad(20)
    turned = np.array(
        [[np.cos(angle), np.sin(angle), 0], [-np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    dicom_writer.series(tmp_path / "S1" / "a", straight, series_uid=uid)
    moved = dicom_writer.make_volume(n=4, rows=8, cols=8, axes=turned, origin=(-20.0, -18.0, -24.0))
    dicom_writer.series(tmp_path / "S1" / "b", moved, series_uid=uid)
    result = scan(tmp_path / "S1", series_cfg)
    assert reasons(result, "series")[0].startswith("mixed orientation: 2 different")


def test_mixed_pixel_shape_is_rejected(tmp_path, dicom_writer, series_cfg):
    uid = generate_uid()
    dicom_writer.series(
        tmp_path / "S1" / "a", dicom_writer.make_volume(n=4, rows=8, cols=8), series_uid=uid
    )
    dicom_writer.series(
        tmp_path / "S1" / "b",
        dicom_writer.make_volume(n=4, rows=10, cols=8, origin=(-20.0, -18.0, -24.0)),
        series_uid=uid,
    )
    [reason] = reasons(scan(tmp_path / "S1", series_cfg), "series")
    assert reason == "mixed pixel shape (8x8 in 4, 10x8 in 4 slices)"


def test_mixed_pixel_spacing_is_rejected(tmp_path, dicom_writer, series_cfg):
    uid = generate_uid()
    dicom_writer.series(
        tmp_path / "S1" / "a", dicom_writer.make_volume(n=4, rows=8, cols=8), series_uid=uid
    )
    dicom_writer.series(
        tmp_path / "S1" / "b",
        dicom_writer.make_volume(
            n=4, rows=8, cols=8, spacing=(4.0, 1.0, 1.5), origin=(-20.0, -18.0, -24.0)
        ),
        series_uid=uid,
    )
    [reason] = reasons(scan(tmp_path / "S1", series_cfg), "series")
    assert reason == "mixed pixel spacing (1.0x1.25 mm in 4, 1.0x1.5 mm in 4 slices)"


def test_gap_in_positions_is_rejected(tmp_path, dicom_writer, truth_volume, series_cfg):
    paths = dicom_writer.series(tmp_path / "S1", truth_volume)
    paths[4].unlink()
    [reason] = reasons(scan(tmp_path / "S1", series_cfg), "series")
    assert reason.startswith("a gap in the slice positions: 8.00 mm between")


def test_missing_geometry_is_rejected(tmp_path, dicom_writer, truth_volume, series_cfg):
    def drop_position(ds, k):
        if k == 2:
            del ds.ImagePositionPatient

    dicom_writer.series(tmp_path / "S1", truth_volume, edit=drop_position)
    [reason] = reasons(scan(tmp_path / "S1", series_cfg), "series")
    assert reason.startswith("missing geometry: no valid ImagePositionPatient in 1 of 8 slices")


def test_wrong_modality_and_include_pattern(tmp_path, dicom_writer, truth_volume, series_cfg):
    dicom_writer.series(tmp_path / "S1", truth_volume, modality="CT")
    assert reasons(scan(tmp_path / "S1", series_cfg), "series") == [
        "modality CT, but series.modality requires MR"
    ]
    dicom_writer.series(tmp_path / "S2", truth_volume, description="FLAIR")
    cfg = {**series_cfg, "description_include": "(?i)mprage|t1"}
    assert reasons(scan(tmp_path / "S2", cfg), "series") == [
        "SeriesDescription 'FLAIR' does not match series.description_include '(?i)mprage|t1'"
    ]


def test_monochrome1_is_inverted(tmp_path, dicom_writer, truth_volume, series_cfg):
    dicom_writer.series(tmp_path / "S1", truth_volume, monochrome1=True)
    assert_same_volume(scan(tmp_path / "S1", series_cfg), truth_volume)


def test_signed_pixels_with_rescale(tmp_path, dicom_writer, series_cfg):
    volume = dicom_writer.make_volume(slope=0.5, intercept=-300.0)  # negative physical values
    assert volume.values.min() < 0
    dicom_writer.series(tmp_path / "S1", volume, signed=True, slope=0.5, intercept=-300.0)
    assert_same_volume(scan(tmp_path / "S1", series_cfg), volume)


def test_several_qualifying_series_pick_by_rule(tmp_path, dicom_writer, truth_volume, series_cfg):
    study = generate_uid()
    dicom_writer.series(tmp_path / "S1" / "a", truth_volume, study_uid=study, series_number=5)
    other = dicom_writer.make_volume(seed=9)
    dicom_writer.series(
        tmp_path / "S1" / "b", other, study_uid=study, series_number=2, description="T1 repeat"
    )
    first = scan(tmp_path / "S1", series_cfg)
    assert_same_volume(first, other)
    [why] = first.rejections
    assert why.level == "series" and why.path == "S1/a/"
    assert "SeriesNumber 2 'T1 repeat'" in why.reason and "series.prefer=first" in why.reason
    last = scan(tmp_path / "S1", {**series_cfg, "prefer": "last"})
    assert_same_volume(last, truth_volume)


@pytest.mark.parametrize(
    "syntax",
    ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2.5"],
    ids=["native: read from the file", "RLE: decoded by pydicom"],
)
def test_scan_decodes_nothing_and_read_decodes_only_requested(
    tmp_path, dicom_writer, truth_volume, series_cfg, monkeypatch, syntax
):
    import pipeline.preprocess.dicom_volume as dicom_volume
    import pipeline.preprocess.pixels as pixels

    decoded: list[Path] = []
    real_decode, real_rows = pixels.pixel_array, dicom_volume.DicomVoxels._read_rows

    def spy_decode(src, **kwargs):
        decoded.append(Path(src))
        return real_decode(src, **kwargs)

    def spy_rows(self, item, *args):
        block = real_rows(self, item, *args)
        if block is not None:
            decoded.append(item.path)
        return block

    monkeypatch.setattr(pixels, "pixel_array", spy_decode)
    monkeypatch.setattr(dicom_volume.DicomVoxels, "_read_rows", spy_rows)
    volume = dicom_writer.make_volume(rows=40, cols=36)  # RLE via openjpeg-sized frames
    paths = dicom_writer.series(
        tmp_path / "S1", volume, order="shuffled", names="random", transfer_syntax=syntax
    )
    stack = scan(tmp_path / "S1", series_cfg).stacks[0]
    assert decoded == []
    block = stack.read([3, 4, 5])
    assert sorted(decoded) == sorted(paths[3:6])
    np.testing.assert_array_equal(block, volume.values[3:6])


def test_stack_pickles_and_reads_after(tmp_path, dicom_writer, truth_volume, series_cfg):
    dicom_writer.series(tmp_path / "S1", truth_volume)
    stack = pickle.loads(pickle.dumps(scan(tmp_path / "S1", series_cfg).stacks[0]))
    np.testing.assert_array_equal(stack.read([7, 0, 7]), truth_volume.values[[7, 0, 7]])
    assert stack.read([]).shape == (0, 24, 20)
    with pytest.raises(IndexError):
        stack.read([8])


def test_nothing_returned_holds_header_phi_or_uids(
    tmp_path, dicom_writer, truth_volume, series_cfg
):
    series_uid, study_uid = generate_uid(), generate_uid()
    dicom_writer.series(tmp_path / "S1", truth_volume, series_uid=series_uid, study_uid=study_uid)
    dicom_writer.series(
        tmp_path / "S1" / "scout",
        dicom_writer.make_volume(n=2),
        description="localizer",
        study_uid=study_uid,
    )
    result = scan(tmp_path / "S1", series_cfg)
    assert result.stacks and result.rejections
    blob = pickle.dumps(result) + repr(result).encode()
    for secret in [*dicom_writer.PHI.values(), series_uid, study_uid, "20200102"]:
        assert secret.encode() not in blob


@pytest.mark.parametrize("stray_top_level_position", [False, True])
def test_enhanced_mr_frames_sorted_by_per_frame_positions(
    tmp_path, dicom_writer, series_cfg, monkeypatch, stray_top_level_position
):
    import pipeline.preprocess.pixels as pixels

    volume = dicom_writer.make_volume(slope=2.0, intercept=-10.0)
    dicom_writer.enhanced(
        tmp_path / "S1" / "multi",
        volume,
        order="shuffled",
        layout=dicom_writer.Layout(True, False, True),
        stray_top_level_position=stray_top_level_position,
    )
    result = scan(tmp_path / "S1", series_cfg, expected=volume.n)
    assert_same_volume(result, volume)

    import pipeline.preprocess.dicom_volume as dicom_volume

    frames: set[int] = set()  # the file's frames read, natively or by pydicom
    real_decode, real_rows = pixels.iter_pixels, dicom_volume.DicomVoxels._read_rows

    def spy_decode(src, indices, **kwargs):
        frames.update(indices)
        return real_decode(src, indices=indices, **kwargs)

    def spy_rows(self, item, *args):
        frames.add(item.frame)
        return real_rows(self, item, *args)

    monkeypatch.setattr(pixels, "iter_pixels", spy_decode)
    monkeypatch.setattr(dicom_volume.DicomVoxels, "_read_rows", spy_rows)
    np.testing.assert_array_equal(result.stacks[0].read([2, 5, 2]), volume.values[[2, 5, 2]])
    assert len(frames) == 2  # two frames read, not the whole file


def test_classic_file_with_stray_empty_per_frame_sequence_is_not_enhanced(
    tmp_path, dicom_writer, truth_volume, series_cfg
):
    def stray(ds, k):
        ds.PerFrameFunctionalGroupsSequence = []
        ds.NumberOfFrames = 1

    dicom_writer.series(tmp_path / "S1", truth_volume, edit=stray, order="shuffled")
    assert_same_volume(scan(tmp_path / "S1", series_cfg, expected=truth_volume.n), truth_volume)


@pytest.mark.parametrize(
    "syntax", ["1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90"], ids=["RLE", "JPEG2000-lossless"]
)
def test_compressed_series_round_trip(tmp_path, dicom_writer, series_cfg, syntax):
    volume = dicom_writer.make_volume(n=4, rows=40, cols=36)  # openjpeg wants >= 32 pixels
    dicom_writer.series(
        tmp_path / "S1",
        volume,
        transfer_syntax=syntax,
        layout=dicom_writer.FEET_FIRST,
        order="shuffled",
    )
    assert_same_volume(scan(tmp_path / "S1", series_cfg), volume)


def test_truncated_compressed_file_is_rejected(tmp_path, dicom_writer, truth_volume, series_cfg):
    rle = "1.2.840.10008.1.2.5"
    paths = dicom_writer.series(tmp_path / "S1", truth_volume, transfer_syntax=rle)
    paths[0].write_bytes(paths[0].read_bytes()[:-300])
    result = scan(tmp_path / "S1", series_cfg)
    [bad] = [r for r in result.rejections if r.level == "file"]
    assert bad.path.endswith(paths[0].name) and "truncated" in bad.reason


def test_jpeg_baseline_greyscale_series(tmp_path, dicom_writer, series_cfg):
    """8-bit JPEG baseline (lossy), encoded by Pillow: our decode matches Pillow's own decode."""
    import io

    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    volume = dicom_writer.make_volume(n=3, rows=32, cols=40)
    volume.values[:] = np.clip(volume.values // 16, 0, 255)
    references = {}

    def to_jpeg(ds, k):
        buffer = io.BytesIO()
        Image.fromarray(volume.values[k].astype(np.uint8)).save(buffer, "JPEG", quality=90)
        references[k] = np.asarray(Image.open(io.BytesIO(buffer.getvalue())), dtype=np.float32)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.PixelData = encapsulate([buffer.getvalue()])
        ds["PixelData"].VR = "OB"

    paths = dicom_writer.series(tmp_path / "S1", volume, edit=to_jpeg, order="shuffled")
    assert all(p.read_bytes().count(b"\xff\xd8") for p in paths)  # JPEG streams inside
    [stack] = scan(tmp_path / "S1", series_cfg).stacks
    decoded = stack.read([0, 1, 2])
    for k in range(3):
        np.testing.assert_allclose(decoded[k], references[k], atol=2)


@pytest.mark.parametrize("signed", [False, True])
def test_bits_above_bits_stored_are_ignored_as_pydicom_does(
    tmp_path, dicom_writer, series_cfg, signed
):
    """12 bits stored in 16 with junk in the top 4: the native read gives pydicom's values
    (masked for unsigned data, sign-extended from bit 11 for signed)."""
    from pydicom import dcmread

    volume = dicom_writer.make_volume(n=3, rows=6, cols=5)
    rng = np.random.default_rng(3)

    def junk_high_bits(ds, k):
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = int(signed)
        stored = rng.integers(0, 1 << 16, size=(6, 5), dtype=np.uint16)
        ds.PixelData = stored.astype("<u2").tobytes()

    paths = dicom_writer.series(tmp_path / "S1", volume, edit=junk_high_bits)
    [stack] = scan(tmp_path / "S1", series_cfg).stacks
    decoded = stack.read([0, 1, 2])
    expected = [dcmread(p).pixel_array for p in paths]
    assert any((e < 0).any() for e in expected) == signed
    for k in range(3):  # the writer's files run along the stack, as the scan sorts them
        np.testing.assert_array_equal(decoded[k], expected[k].astype(np.float32))


def test_modality_lut_sequence_is_applied(tmp_path, dicom_writer, truth_volume, series_cfg):
    from pydicom.dataset import Dataset

    def with_lut(ds, k):
        item = Dataset()
        item.LUTDescriptor = [4096, 0, 16]
        item.LUTData = [2 * v + 5 for v in range(4096)]
        item["LUTData"].VR = "US"
        item.ModalityLUTType = "US"
        ds.ModalityLUTSequence = [item]

    dicom_writer.series(tmp_path / "S1", truth_volume, edit=with_lut)
    [stack] = scan(tmp_path / "S1", series_cfg).stacks
    np.testing.assert_array_equal(stack.read([0, 7]), 2 * truth_volume.values[[0, 7]] + 5)
