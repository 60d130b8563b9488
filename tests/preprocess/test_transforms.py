"""The MONAI normalization chain built from conf/: shape, range, head crop and spacing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import ScaleIntensityRangePercentiles
from omegaconf import OmegaConf

from pipeline.config import compose, recipe_config
from pipeline.preprocess.head import block_mean, repeat_to
from pipeline.preprocess.transforms import (
    FastScaleIntensityRangePercentiles,
    HeadMask,
    ResizeToSpacing,
    SliceNormalizer,
)

from .conftest import ellipse_head


@pytest.fixture(scope="module")
def normalizer(preprocess_cfg) -> SliceNormalizer:
    return SliceNormalizer(recipe_config(preprocess_cfg)["normalize"])


def test_output_shape_dtype_and_range(normalizer):
    slices = np.stack([ellipse_head(seed=s) for s in range(3)])
    out = normalizer(slices, (1.0, 1.0))
    assert out.shape == (3, 64, 64)  # the default normalize.size
    assert out.dtype == np.float32
    assert out.min() == pytest.approx(0.0) and out.max() == pytest.approx(1.0)
    # The head fills the longer side after the crop: bright pixels touch both top and bottom.
    rows_with_head = np.flatnonzero((out > 0.5).any(axis=(0, 2)))
    assert rows_with_head[0] < 5 and rows_with_head[-1] > 58


def test_intensity_scale_and_offset_do_not_matter(normalizer):
    slices = np.stack([ellipse_head(seed=s) for s in range(3)])
    a = normalizer(slices, (1.0, 1.0))
    b = normalizer(slices * 7.5 - 300.0, (1.0, 1.0))  # another scanner's scale and intercept
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_pixel_spacing_gives_the_same_anatomy(normalizer):
    """One head, exported on a 96x80 matrix at 1 mm and a 48x40 matrix at 2 mm."""
    fine = ellipse_head(96, 80, noise=0.0)
    coarse = fine.reshape(48, 2, 40, 2).mean(axis=(1, 3))
    a = normalizer(np.stack([fine] * 3), (1.0, 1.0))
    b = normalizer(np.stack([coarse] * 3), (2.0, 2.0))
    assert np.abs(a - b).mean() < 0.03
    # Non-square pixels: 96 rows at 1 mm x 40 columns at 2 mm is still the same head shape.
    c = normalizer(np.stack([fine.reshape(96, 40, 2).mean(axis=2)] * 3), (1.0, 2.0))
    assert np.abs(a - c).mean() < 0.03


def test_head_position_in_the_field_of_view_does_not_matter(normalizer):
    centred = ellipse_head(128, 128, center=(64, 64), noise=5.0)
    shifted = ellipse_head(128, 128, center=(50, 80), noise=5.0)
    a = normalizer(np.stack([centred] * 3), (1.0, 1.0))
    b = normalizer(np.stack([shifted] * 3), (1.0, 1.0))
    assert np.abs(a - b).mean() < 0.02


def test_head_mask_ignores_a_bright_speck_in_the_air():
    image = ellipse_head(96, 96, center=(48, 48), radii=(20, 20), noise=5.0)
    image[2:4, 2:4] = 5000.0  # a marker or a hot pixel far from the head
    mask = HeadMask()(image[None])[0]
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    assert rows[0] > 20 and cols[0] > 20
    assert mask[48, 48] or mask[40, 48]


def test_head_mask_is_the_union_of_the_slices_in_one_channel():
    """CropForeground reduces the mask over its channels: one channel holding every slice's
    head, so a crop keeps each slice's head whole."""
    left = ellipse_head(80, 96, center=(40, 30), radii=(20.0, 15.0), noise=2.0, seed=1)
    right = ellipse_head(80, 96, center=(40, 66), radii=(20.0, 15.0), noise=2.0, seed=2)
    mask = HeadMask(shrink=2)(np.stack([left, right, left]))
    assert mask.shape == (1, 80, 96) and mask.dtype == bool
    assert mask[0, 40, 30] and mask[0, 40, 66] and not mask[0, 40, 48]
    cols = np.flatnonzero(mask[0].any(axis=0))
    assert cols[0] < 20 and cols[-1] > 76


def test_size_override_and_a_chain_that_misses_the_size():
    cfg = compose("preprocess", ["normalize.size=96"])
    recipe = recipe_config(cfg)
    out = SliceNormalizer(recipe["normalize"])(np.stack([ellipse_head()] * 3), (1.0, 1.0))
    assert out.shape == (3, 96, 96)
    broken = OmegaConf.to_container(cfg.normalize, resolve=True)
    broken["transforms"] = broken["transforms"][:-1]  # no SpatialPad
    with pytest.raises(ValueError, match=r"must end at normalize\.size=96"):
        SliceNormalizer(broken)(np.stack([ellipse_head()] * 3), (1.0, 1.0))


def test_blank_slices_are_refused(normalizer):
    with pytest.raises(ValueError, match="blank"):
        normalizer(np.zeros((3, 32, 32), np.float32), (1.0, 1.0))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_slices_with_a_non_finite_pixel_are_refused(normalizer, bad):
    slices = np.stack([ellipse_head(seed=s) for s in range(3)])
    slices[1, 40, 30] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        normalizer(slices, (1.0, 1.0))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lower": 0.5, "upper": 99.5, "b_min": 0.0, "b_max": 1.0, "clip": True},
        {"lower": 2, "upper": 98, "b_min": -1.0, "b_max": 1.0, "relative": True},
        {"lower": 1, "upper": 99, "b_min": 0.0, "b_max": 1.0, "channel_wise": True},
    ],
)
def test_fast_percentile_scaling_matches_monai(kwargs):
    image = torch.from_numpy(np.random.default_rng(0).gamma(2.0, 100.0, (3, 40, 30)))
    image = image.to(torch.float32)
    expected = ScaleIntensityRangePercentiles(**kwargs)(image)
    got = FastScaleIntensityRangePercentiles(**kwargs)(image)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    torch.testing.assert_close(got.as_tensor(), expected.as_tensor(), atol=1e-5, rtol=1e-5)


def test_untracked_metadata_gives_the_tracked_output(preprocess_cfg, normalizer):
    """The default chain runs without MONAI's metadata tracking: same pixels as with it, and
    MONAI's global setting is left as it was."""
    from monai.data import get_track_meta

    assert not normalizer.track_meta
    slices = np.stack([ellipse_head(seed=s) for s in range(3)])
    tracked = SliceNormalizer(recipe_config(preprocess_cfg)["normalize"])
    tracked.track_meta = True
    np.testing.assert_array_equal(normalizer(slices, (0.86, 0.9)), tracked(slices, (0.86, 0.9)))
    assert get_track_meta()


def test_a_later_step_that_reads_the_affine_keeps_metadata_tracked():
    """Spacing after another step still sees the pixel spacing: a 2 mm square of 8 x 8 pixels
    becomes 16 x 16 pixels at 1 mm."""
    image = np.zeros((1, 32, 32), np.float32)
    image[0, 12:20, 12:20] = 1.0
    cfg = {
        "size": 64,
        "transforms": [
            {"_target_": "monai.transforms.ScaleIntensity"},
            {"_target_": "monai.transforms.Spacing", "pixdim": [1.0, 1.0], "mode": "nearest"},
            {"_target_": "monai.transforms.ResizeWithPadOrCrop", "spatial_size": [64, 64]},
        ],
    }
    normalizer = SliceNormalizer(cfg)
    assert normalizer.track_meta
    out = normalizer(image, (2.0, 2.0))
    assert int((out > 0.5).sum()) == 16 * 16


def _meta(image: np.ndarray, spacing: tuple[float, float]):
    from monai.data import MetaTensor

    affine = torch.diag(torch.tensor([*spacing, 1.0, 1.0], dtype=torch.float64))
    return MetaTensor(torch.from_numpy(image), affine=affine)


@pytest.mark.parametrize("spacing", [(0.9375, 0.9375), (0.5, 0.5), (1.2, 0.8), (2.0, 2.0)])
def test_resize_to_spacing_matches_monai_spacing(spacing):
    """The same grid size as MONAI's Spacing (within its rounding) and the same anatomy."""
    from monai.transforms import Spacing

    rows, cols = 120, 100
    image = np.stack([ellipse_head(rows, cols, radii=(45.0, 35.0), noise=0.0)] * 2)
    ours = ResizeToSpacing(pixdim=[1.0, 1.0], mode="bilinear")(_meta(image, spacing))
    theirs = Spacing(pixdim=[1.0, 1.0], mode="bilinear", dtype=torch.float32)(_meta(image, spacing))
    assert tuple(ours.shape[1:]) == (round(rows * spacing[0]), round(cols * spacing[1]))
    assert all(abs(a - b) <= 1 for a, b in zip(ours.shape[1:], theirs.shape[1:], strict=True))
    # The bright area in mm^2 (1 mm pixels after the resize) is the source's.
    expected = float((image[0] > 400).sum()) * spacing[0] * spacing[1]
    assert float((ours[0] > 400).sum()) == pytest.approx(expected, rel=0.04)


def test_resize_to_spacing_refuses_a_rotated_image():
    from monai.data import MetaTensor

    angle = np.deg2rad(30)
    affine = torch.eye(4, dtype=torch.float64)
    affine[:2, :2] = torch.tensor([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    with pytest.raises(ValueError, match="axis-aligned"):
        ResizeToSpacing(pixdim=1.0)(MetaTensor(torch.ones(1, 8, 8), affine=affine))


def test_head_mask_on_a_coarser_grid_gives_the_same_box():
    heads = [ellipse_head(121, 99, radii=(40.0, 30.0), noise=20.0, seed=s) for s in (1, 2)]
    image = np.stack(heads)
    fine, coarse = HeadMask(shrink=1)(image), HeadMask(shrink=2)(image)
    assert coarse.shape == fine.shape
    for axis in (1, 2):
        span_fine = np.flatnonzero(fine.any(axis=(0, 3 - axis)))
        span_coarse = np.flatnonzero(coarse.any(axis=(0, 3 - axis)))
        assert abs(span_fine[0] - span_coarse[0]) <= 2 and abs(span_fine[-1] - span_coarse[-1]) <= 2


def test_block_mean_and_repeat_to_handle_odd_sizes():
    stack = np.arange(2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7)
    coarse = block_mean(stack, 2)
    assert coarse.shape == (2, 2, 3)
    assert coarse[0, 0, 0] == pytest.approx(stack[0, :2, :2].mean())
    mask = coarse > coarse.mean()
    full = repeat_to(mask, 2, stack.shape)
    assert full.shape == stack.shape
    assert (full[:, 4, :6] == full[:, 3, :6]).all()  # the left-out edge copies its neighbour
    assert (full[:, :, 6] == full[:, :, 5]).all()
    expected = np.pad(mask.repeat(2, axis=1).repeat(2, axis=2), ((0, 0), (0, 1), (0, 1)), "edge")
    assert np.array_equal(full, expected)
    assert np.array_equal(
        repeat_to(mask, 3, (2, 7, 9)),
        np.pad(mask.repeat(3, axis=1).repeat(3, axis=2), ((0, 0), (0, 1), (0, 0)), "edge"),
    )
    with pytest.raises(ValueError, match="shrink"):
        HeadMask(shrink=0)


def test_resize_to_spacing_gives_monai_resize_values_and_keeps_the_affine_when_tracked():
    from monai.data import MetaTensor, set_track_meta
    from monai.transforms import Resize

    image = np.stack([ellipse_head(120, 100, noise=20.0, seed=s) for s in (1, 2, 3)])
    resize = ResizeToSpacing(pixdim=[1.0, 1.0], mode="bilinear")
    theirs = Resize((113, 94), mode="bilinear")(torch.from_numpy(image)).as_tensor()
    set_track_meta(False)
    try:
        ours = resize(_meta(image, (0.94, 0.94)))
    finally:
        set_track_meta(True)
    assert type(ours) is torch.Tensor and ours.dtype == torch.float32
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-3)  # float32 rounding only
    tracked = resize(_meta(image, (0.94, 0.94)))  # MONAI's Resize, the affine follows
    assert isinstance(tracked, MetaTensor)
    spacing = np.diag(tracked.affine.numpy())[:2]
    np.testing.assert_allclose(spacing, [0.94 * 120 / 113, 0.94 * 100 / 94])
    with pytest.raises(ValueError, match="mode"):
        ResizeToSpacing(pixdim=1.0, mode="cubic")


def _spacing_of(diagonal, spatial: int, **entries: float) -> np.ndarray:
    from monai.data import MetaTensor

    affine = torch.eye(4, dtype=torch.float64)
    affine[:3, :3] = torch.diag(torch.tensor(diagonal, dtype=torch.float64))
    for at, value in entries.items():  # "r0c1": row 0, column 1
        affine[int(at[1]), int(at[3])] = value
    image = MetaTensor(torch.ones(1, *([4] * spatial)), affine=affine)
    return ResizeToSpacing._spacing(image, spatial)


def test_resize_to_spacing_reads_the_spacing_of_axis_aligned_affines_only():
    np.testing.assert_allclose(_spacing_of([0.9, 1.2, 3.0], 2), [0.9, 1.2])
    np.testing.assert_allclose(_spacing_of([0.9, 1.2, 3.0], 3), [0.9, 1.2, 3.0])
    np.testing.assert_allclose(_spacing_of([0.9, 1.2, 3.0], 2, r0c1=5e-7), [0.9, 1.2])
    np.testing.assert_allclose(_spacing_of([0.9, 0.0, 3.0], 2), [0.9, 1.0])  # no zero spacing
    # a rotation outside the in-plane block is not the 2D image's business; inside, it is
    np.testing.assert_allclose(_spacing_of([0.9, 1.2, 3.0], 2, r2c0=0.3), [0.9, 1.2])
    for spatial, entries in ((2, {"r0c1": 0.3}), (3, {"r2c0": 0.3}), (2, {"r0c1": 2e-6}),
                             (2, {"r0c1": float("nan")})):  # fmt: skip
        with pytest.raises(ValueError, match="axis-aligned"):
            _spacing_of([0.9, 1.2, 3.0], spatial, **entries)
