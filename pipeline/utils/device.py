"""Pick the compute device: CUDA when present, otherwise the CPU."""

from __future__ import annotations

import torch


def default_device() -> torch.device:
    """``cuda`` if a GPU is visible, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_device(name: str | None) -> torch.device:
    """A ``*.device`` setting: ``null`` (or ``auto``) picks CUDA when present, else the CPU."""
    return default_device() if name in (None, "", "auto") else torch.device(str(name))
