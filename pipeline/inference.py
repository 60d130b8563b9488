"""Subject-level class probabilities from a network: shared by train, evaluate and predict."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from pipeline.utils.device import default_device

SLICE_MODES = ("channels", "slices")


def subject_logits_to_probs(model: nn.Module, x: torch.Tensor, slice_mode: str) -> torch.Tensor:
    """Class probabilities ``(B, K)`` for a batch of subjects ``x`` of shape ``(B, S, H, W)``.

    ``channels``: the S slices are the S input channels of one image.
    ``slices``: each slice is its own 1-channel sample; the subject's probabilities are the mean
    of its slices' softmax outputs (a soft vote).
    """
    if slice_mode == "channels":
        return torch.softmax(model(x), dim=1)
    if slice_mode == "slices":
        b, s, h, w = x.shape
        probs = torch.softmax(model(x.reshape(b * s, 1, h, w)), dim=1)
        return probs.reshape(b, s, -1).mean(dim=1)
    raise ValueError(f"slice_mode must be one of {SLICE_MODES}, got {slice_mode!r}")


@torch.inference_mode()
def predict_probabilities(
    model: nn.Module,
    images: np.ndarray,
    slice_mode: str,
    batch_size: int = 64,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """Probabilities ``(N, K)`` for ``images`` ``(N, S, H, W)``, read in batches."""
    device = torch.device(device) if device is not None else default_device()
    model = model.to(device).eval()
    out = []
    for start in range(0, len(images), batch_size):
        # np.array copies out of the read-only memory map, so torch gets a writable buffer.
        batch = torch.from_numpy(np.array(images[start : start + batch_size], dtype=np.float32))
        probs = subject_logits_to_probs(model, batch.to(device), slice_mode)
        out.append(probs.float().cpu().numpy())
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(out, axis=0)


def ensemble_probabilities(
    models: Sequence[nn.Module],
    images: np.ndarray,
    slice_mode: str,
    batch_size: int = 64,
    device: torch.device | str | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Mean probabilities over ``models`` (k-fold ensemble) and each model's own probabilities."""
    per_model = [predict_probabilities(m, images, slice_mode, batch_size, device) for m in models]
    return np.mean(per_model, axis=0), per_model
