"""Fixtures of the preprocess stage's tests: the composed config and small synthetic heads."""

from __future__ import annotations

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from pipeline.config import CONF_DIR


def compose_preprocess(overrides: list[str] | None = None) -> DictConfig:
    """``conf/preprocess.yaml`` composed with ``overrides``, as ``python -m`` would see it."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("preprocess", overrides=overrides or [])


def ellipse_head(
    rows: int = 96,
    cols: int = 80,
    center: tuple[float, float] | None = None,
    radii: tuple[float, float] = (36.0, 28.0),
    level: float = 800.0,
    noise: float = 20.0,
    seed: int = 0,
) -> np.ndarray:
    """One axial-like slice: a bright ellipse with a darker "ventricle" on a noisy background."""
    rng = np.random.default_rng(seed)
    cy, cx = center if center is not None else ((rows - 1) / 2, (cols - 1) / 2)
    yy, xx = np.mgrid[:rows, :cols]
    inside = ((yy - cy) / radii[0]) ** 2 + ((xx - cx) / radii[1]) ** 2 <= 1
    ventricle = ((yy - cy) / (radii[0] / 4)) ** 2 + ((xx - cx) / (radii[1] / 5)) ** 2 <= 1
    image = np.abs(rng.normal(0.0, noise, (rows, cols)))
    image[inside] += level
    image[ventricle] -= level * 0.6
    return image.astype(np.float32)


@pytest.fixture(scope="session")
def preprocess_cfg() -> DictConfig:
    return compose_preprocess()
