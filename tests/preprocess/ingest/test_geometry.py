"""The one geometry path: plane naming, canonical view, positions, obliquity, 2D or 3D."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.preprocess.geometry import (
    GeometryError,
    VolumeGeometry,
    acquisition_kind,
    cross,
    dicom_affine,
    median,
    plane_view,
    slice_normal,
    spacing_problem,
)


def dicom_grid(iop, rows=3, cols=4, n=5, spacing=(0.5, 0.7), step_mm=2.0, kind="2D"):
    """The stored grid of a DICOM series with this ImageOrientationPatient, frames along +normal."""
    normal = slice_normal(iop)
    affine = dicom_affine(iop, spacing, [10.0, -20.0, 30.0], step_mm * normal)
    return VolumeGeometry(affine, (rows, cols, n), 2, kind)


def stored_frames(rows=3, cols=4, n=5) -> np.ndarray:
    return np.arange(rows * cols * n, dtype=np.float32).reshape(rows, cols, n)


# (ImageOrientationPatient, plane, how one stored frame looks in the canonical view)
@pytest.mark.parametrize(
    ("iop", "plane", "to_view"),
    [
        ([1, 0, 0, 0, 1, 0], "axial", lambda f: f),
        ([-1, 0, 0, 0, 1, 0], "axial", lambda f: f[:, ::-1]),
        ([0, 1, 0, 1, 0, 0], "axial", lambda f: f.T),
        ([1, 0, 0, 0, 0, -1], "coronal", lambda f: f),
        ([0, 1, 0, 0, 0, -1], "sagittal", lambda f: f),
        ([0, -1, 0, 0, 0, 1], "sagittal", lambda f: f[::-1, ::-1]),
    ],
)
def test_acquired_plane_view_of_a_dicom_grid(iop, plane, to_view):
    geometry = dicom_grid(iop)
    assert geometry.acquired_plane == plane
    view = plane_view(geometry, plane)
    assert view.slice_axis == 2 and view.n_slices == 5
    block = stored_frames()
    k = view.stored_indices([1])
    np.testing.assert_array_equal(view.orient(block[:, :, k])[0], to_view(block[:, :, k[0]]))
    np.testing.assert_allclose(np.diff(view.positions_mm), 2.0)


def test_sagittal_grid_viewed_axially_takes_one_row_of_every_frame():
    # Sagittal frames: columns run anterior -> posterior, rows head -> feet, frames to the left.
    geometry = dicom_grid(
        [0, 1, 0, 0, 0, -1], rows=6, cols=4, n=5, spacing=(1.0, 1.0), step_mm=1.0, kind="3D"
    )
    view = plane_view(geometry, "axial")
    assert (view.slice_axis, view.n_slices, view.shape) == (0, 6, (4, 5))
    [row] = view.stored_indices([0])
    assert row == 5  # the lowest axial slice is the last (most inferior) row of each frame
    block = stored_frames(6, 4, 5)[[row]]
    # Axial view: rows anterior -> posterior (the frames' columns); columns right -> left, but
    # these frames run towards the patient's right (the normal of this IOP): reversed.
    np.testing.assert_array_equal(view.orient(block)[0], block[0][:, ::-1])
    np.testing.assert_allclose(np.diff(view.positions_mm), 1.0)
    assert view.pixel_spacing_mm == (1.0, 1.0)


def test_positions_are_along_the_true_normal_of_a_tilted_volume():
    a = np.deg2rad(13.0)
    iop = [1, 0, 0, 0, np.cos(a), np.sin(a)]  # an axial slab tilted 13 degrees
    view = plane_view(dicom_grid(iop, step_mm=3.0), "axial")
    np.testing.assert_allclose(np.diff(view.positions_mm), 3.0)


@pytest.mark.parametrize(
    ("iop", "message"),
    [
        ([1, 0, 0, 1, 0, 0], "not orthogonal"),
        ([0, 0, 0, 0, 1, 0], "zero-length"),
        ([1, 0, 0, 0, 1], "6 numbers"),
    ],
)
def test_unusable_orientations(iop, message):
    with pytest.raises(GeometryError, match=message):
        slice_normal(iop)


def test_a_volume_oblique_past_the_limit_is_refused():
    geometry = dicom_grid([0.7071, 0.7071, 0, -0.5, 0.5, 0.7071])
    with pytest.raises(GeometryError, match="too oblique"):
        plane_view(geometry, "axial")


@pytest.mark.parametrize(
    ("declared", "spacing", "pixel", "thickness", "kind"),
    [
        ("3D", 2.0, (1.0, 1.0), None, "3D"),  # the tag wins
        ("2D", 1.0, (1.0, 1.0), None, "2D"),
        (None, 1.2, (0.94, 0.94), 1.2, "3D"),  # near-isotropic, contiguous
        (None, 4.8, (0.9, 0.9), 4.0, "2D"),  # thick slices
        (None, 1.0, (1.0, 1.0), 0.5, "2D"),  # gaps between thin slices
    ],
)
def test_acquisition_kind(declared, spacing, pixel, thickness, kind):
    assert acquisition_kind(declared, spacing, pixel, thickness) == kind


def test_spacing_problem_finds_gaps_and_tolerates_rounding():
    even = np.arange(10) * 3.0 + np.array([0, 1e-4, -1e-4, 0, 0, 0, 0, 2e-4, 0, 0])
    assert spacing_problem(even, 0.05) is None
    gap = np.delete(np.arange(10) * 3.0, 5)
    message = spacing_problem(gap, 0.05)
    assert message is not None and message.startswith("a gap in the slice positions: 6.00 mm")
    uneven = np.array([0.0, 3.0, 5.0, 8.0, 11.0])
    assert spacing_problem(uneven, 0.05).startswith("uneven spacing")


def test_series_options_from_hydra_config_and_bad_values(repo_root):
    from omegaconf import OmegaConf

    from pipeline.preprocess.series_select import SeriesOptions

    conf = OmegaConf.load(repo_root / "conf" / "recipe" / "default.yaml")
    options = SeriesOptions.from_config(conf.series)
    assert (options.modality, options.plane, options.prefer) == ("MR", "axial", "first")
    assert options.description_exclude and options.description_include is None
    for bad in ({"prefer": "newest"}, {"plane": "oblique"}, {"description_include": "("}):
        with pytest.raises(ValueError, match=f"series\\.{next(iter(bad))}"):
            SeriesOptions.from_config(bad)


def test_cross_gives_numpys_values_bit_for_bit():
    rng = np.random.default_rng(7)
    for _ in range(2000):
        a = rng.standard_normal(3) * 10 ** rng.uniform(-4, 4)
        b = rng.standard_normal(3) * 10 ** rng.uniform(-4, 4)
        expected = np.cross(a, b)
        for got in (cross(a, b), cross(tuple(a.tolist()), list(b.tolist()))):
            assert got.dtype == np.float64 and got.shape == (3,)
            assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize("n", [1, 2, 3, 43, 44])
def test_median_is_numpys(n):
    rng = np.random.default_rng(n)
    for values in (rng.normal(3.0, 0.01, n), rng.integers(0, 4, n).astype(np.float32)):
        assert median(values) == float(np.median(values.astype(np.float64)))
