"""Batch augmentation: per-sample draws, reproducible from the generator, bounded, train-only."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate

from pipeline.config import compose
from pipeline.train.augment import (
    BatchAugment,
    RandAdjustContrastBatch,
    RandAffineBatch,
    RandBiasFieldBatch,
    RandFlipBatch,
    RandGaussianNoiseBatch,
    RandGaussianSmoothBatch,
    RandScaleIntensityBatch,
    RandShiftIntensityBatch,
    batch_generator,
)

CPU = torch.device("cpu")


def _batch(n: int = 8, size: int = 32) -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.rand(1, 3, size, size).repeat(n, 1, 1, 1)  # identical samples: draws must differ
    return x


def _default_augment(name: str = "default") -> BatchAugment:
    cfg = compose("train", [f"augment={name}"])
    return instantiate(cfg.augment, _convert_="all")


def test_default_config_builds_every_transform_and_flip_is_off() -> None:
    augment = _default_augment()
    kinds = {type(t) for t in augment.transforms.values()}
    assert kinds == {
        RandAdjustContrastBatch,
        RandGaussianSmoothBatch,
        RandAffineBatch,
        RandFlipBatch,
        RandScaleIntensityBatch,
        RandShiftIntensityBatch,
        RandBiasFieldBatch,
        RandGaussianNoiseBatch,
    }
    assert augment.transforms["flip"].prob == 0.0
    assert augment
    assert not _default_augment("none")


def test_same_generator_seed_same_result_and_samples_differ() -> None:
    augment = _default_augment()
    x = _batch()
    a = augment(x, batch_generator(CPU, 1, 0, 3, 0))
    b = augment(x, batch_generator(CPU, 1, 0, 3, 0))
    c = augment(x, batch_generator(CPU, 1, 0, 4, 0))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    changed = [not torch.equal(a[i], a[j]) for i in range(8) for j in range(i + 1, 8)]
    assert sum(changed) > 20  # identical inputs, independent draws
    assert torch.equal(x, _batch())  # the input is never modified


def test_probability_zero_is_identity_and_one_changes_all() -> None:
    x = _batch()
    g = batch_generator(CPU, 0)
    assert RandScaleIntensityBatch(prob=0.0)(x, g) is x
    out = RandShiftIntensityBatch(prob=1.0, offsets=0.5)(x, g)
    assert all(not torch.equal(out[i], x[i]) for i in range(len(x)))


def test_affine_without_ranges_is_identity() -> None:
    x = _batch(4)
    out = RandAffineBatch(prob=1.0, rotate_deg=0, scale_frac=0, translate_frac=0)(
        x, batch_generator(CPU, 0)
    )
    assert torch.allclose(out, x, atol=1e-5)


def test_affine_rotation_keeps_a_centred_disc() -> None:
    size = 33
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (((yy - 16) ** 2 + (xx - 16) ** 2) <= 64).float().expand(4, 3, size, size)
    out = RandAffineBatch(prob=1.0, rotate_deg=30, scale_frac=0, translate_frac=0)(
        disc, batch_generator(CPU, 2)
    )
    assert torch.allclose(out.sum(dim=(1, 2, 3)), disc.sum(dim=(1, 2, 3)), rtol=0.03)


def test_affine_handles_non_square_images() -> None:
    x = torch.rand(2, 3, 24, 40)
    out = RandAffineBatch(prob=1.0)(x, batch_generator(CPU, 0))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_flip_mirrors_the_last_axis() -> None:
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    out = RandFlipBatch(prob=1.0)(x, batch_generator(CPU, 0))
    assert torch.equal(out, x.flip(-1))
    with pytest.raises(ValueError):
        RandFlipBatch(spatial_axis=2)


def test_intensity_changes_stay_in_their_ranges() -> None:
    x = _batch() + 0.5
    g = batch_generator(CPU, 5)
    scaled = RandScaleIntensityBatch(prob=1.0, factors=0.1)(x, g)
    ratio = scaled / x
    assert ratio.min() >= 0.9 - 1e-6 and ratio.max() <= 1.1 + 1e-6
    shift = RandShiftIntensityBatch(prob=1.0, offsets=0.2)(x, g) - x
    assert shift.abs().max() <= 0.2 + 1e-6
    per_sample = shift.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample), atol=1e-6)


def test_noise_has_bounded_spread() -> None:
    x = torch.zeros(16, 3, 64, 64)
    noise = RandGaussianNoiseBatch(prob=1.0, std=0.05)(x, batch_generator(CPU, 1))
    stds = noise.flatten(1).std(dim=1)
    assert stds.max() <= 0.055 and stds.min() >= 0.0


def test_bias_field_is_smooth_positive_and_bounded() -> None:
    x = torch.ones(4, 3, 32, 32)
    out = RandBiasFieldBatch(prob=1.0, degree=3, coeff=0.1)(x, batch_generator(CPU, 3))
    assert (out > 0).all()
    assert torch.equal(out[:, 0], out[:, 1])  # one field per sample, every slice
    terms = 10  # i + j <= 3
    assert out.log().abs().max() <= 0.1 * terms + 1e-5
    assert out.diff(dim=-1).abs().max() < 0.05  # smooth: small neighbour differences
    assert not math.isclose(float(out.std()), 0.0)


def test_contrast_keeps_each_sample_range_and_orders_pixels() -> None:
    x = torch.rand(6, 3, 16, 16) * 2.0 - 0.5
    out = RandAdjustContrastBatch(prob=1.0, gamma=1.5)(x, batch_generator(CPU, 4))
    flat_in, flat_out = x.flatten(1), out.flatten(1)
    assert torch.allclose(flat_out.min(1).values, flat_in.min(1).values, atol=1e-5)
    assert torch.allclose(flat_out.max(1).values, flat_in.max(1).values, atol=1e-5)
    order_in, order_out = flat_in.argsort(1), flat_out.argsort(1)
    assert (order_in == order_out).float().mean() > 0.99  # monotonic: the ranking is kept
    assert not torch.allclose(out, x, atol=1e-3)
    with pytest.raises(ValueError):
        RandAdjustContrastBatch(gamma=0.5)


def test_smoothing_keeps_mass_and_constants_with_a_kernel_per_sample() -> None:
    x = torch.zeros(4, 3, 21, 21)
    x[:, :, 10, 10] = 1.0
    out = RandGaussianSmoothBatch(prob=1.0, sigma_min=0.5, sigma_max=1.5)(
        x, batch_generator(CPU, 0)
    )
    assert torch.allclose(out.sum(dim=(2, 3)), torch.ones(4, 3), atol=1e-5)
    peaks = out[:, 0, 10, 10]
    assert len(set(peaks.tolist())) == 4  # each sample its own sigma
    assert torch.equal(out[:, 0], out[:, 2])  # the same kernel for every slice of a sample
    flat = torch.full((2, 3, 9, 9), 0.7)
    assert torch.allclose(RandGaussianSmoothBatch(prob=1.0)(flat, batch_generator(CPU, 1)), flat)
