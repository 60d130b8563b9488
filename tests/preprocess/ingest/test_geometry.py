"""Plane naming, canonical in-plane view and spacing checks from ImageOrientationPatient."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.preprocess.geometry import (
    GeometryError,
    InPlaneTransform,
    spacing_problem,
    stack_frame,
)


@pytest.mark.parametrize(
    ("iop", "plane", "transform", "normal"),
    [
        ([1, 0, 0, 0, 1, 0], "axial", InPlaneTransform(), [0, 0, 1]),
        ([-1, 0, 0, 0, 1, 0], "axial", InPlaneTransform(flip_cols=True), [0, 0, 1]),
        ([0, 1, 0, 1, 0, 0], "axial", InPlaneTransform(transpose=True), [0, 0, 1]),
        ([1, 0, 0, 0, 0, -1], "coronal", InPlaneTransform(), [0, 1, 0]),
        ([0, 1, 0, 0, 0, -1], "sagittal", InPlaneTransform(), [1, 0, 0]),
        ([0, -1, 0, 0, 0, 1], "sagittal", InPlaneTransform(flip_rows=True, flip_cols=True),
         [1, 0, 0]),
    ],
)
def test_stack_frame(iop, plane, transform, normal):
    frame = stack_frame(iop)
    assert (frame.plane, frame.transform) == (plane, transform)
    np.testing.assert_allclose(frame.normal, normal, atol=1e-12)


def test_transform_moves_pixels_as_stated():
    image = np.arange(6).reshape(2, 3)
    both = InPlaneTransform(transpose=True, flip_rows=True)
    np.testing.assert_array_equal(both.apply(image), image.T[::-1])
    assert both.shape(2, 3) == (3, 2) and both.spacing(0.5, 0.7) == (0.7, 0.5)


@pytest.mark.parametrize(
    ("iop", "message"),
    [
        ([1, 0, 0, 1, 0, 0], "not orthogonal"),
        ([0, 0, 0, 0, 1, 0], "zero-length"),
        ([1, 0, 0, 0, 1], "6 numbers"),
        ([0.7071, 0.7071, 0, -0.5, 0.5, 0.7071], "too oblique"),
    ],
)
def test_unusable_orientations(iop, message):
    with pytest.raises(GeometryError, match=message):
        stack_frame(iop)


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
