"""pipeline.inference: subject probabilities in both slice modes, batching, and the ensemble."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.inference import (
    ensemble_probabilities,
    predict_probabilities,
    subject_logits_to_probs,
)


class MeanPerChannel(nn.Module):
    """Logits = each input channel's mean times a per-class factor (deterministic, no weights)."""

    def __init__(self, factors: tuple[float, ...]) -> None:
        super().__init__()
        self.factors = torch.tensor(factors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3))[:, None] * self.factors


def _images(n: int = 5, s: int = 3) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, s, 4, 4)).astype(np.float32)


def test_channels_mode_is_a_softmax_of_the_whole_stack() -> None:
    x = torch.from_numpy(_images())
    model = MeanPerChannel((1.0, -1.0, 0.5))
    probs = subject_logits_to_probs(model, x, "channels")
    torch.testing.assert_close(probs, torch.softmax(model(x), dim=1))


def test_slices_mode_is_the_mean_of_each_slices_softmax() -> None:
    x = torch.from_numpy(_images())
    model = MeanPerChannel((2.0, 0.0, -2.0))
    probs = subject_logits_to_probs(model, x, "slices")
    per_slice = [torch.softmax(model(x[:, s : s + 1]), dim=1) for s in range(3)]
    torch.testing.assert_close(probs, torch.stack(per_slice).mean(dim=0))
    with pytest.raises(ValueError, match="slice_mode"):
        subject_logits_to_probs(model, x, "volume")


def test_batches_do_not_change_the_result_and_rows_sum_to_one() -> None:
    images = _images(7)
    model = MeanPerChannel((1.0, 0.0, -1.0))
    whole = predict_probabilities(model, images, "channels", batch_size=64, device="cpu")
    pieces = predict_probabilities(model, images, "channels", batch_size=2, device="cpu")
    np.testing.assert_allclose(whole, pieces, rtol=1e-6)
    np.testing.assert_allclose(whole.sum(axis=1), 1.0, rtol=1e-6)
    assert whole.shape == (7, 3) and whole.dtype == np.float32


def test_ensemble_is_the_mean_of_the_models() -> None:
    images = _images(4)
    models = [MeanPerChannel((1.0, 0.0)), MeanPerChannel((-3.0, 1.0))]
    mean, each = ensemble_probabilities(models, images, "channels", device="cpu")
    assert len(each) == 2 and not np.allclose(each[0], each[1])
    np.testing.assert_allclose(mean, (each[0] + each[1]) / 2)
