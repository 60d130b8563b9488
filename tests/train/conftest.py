"""Fixtures for the train stage: composed configs and small, contract-valid, learnable caches.

The fake cohort follows pipeline/cache.py exactly (images.npy, manifest.csv with
MANIFEST_COLUMNS, provenance.json with the composed config's preprocessing recipe and hash), so
train reads it as it reads a real preprocess output. Each subject's image is a bright "head"
disc holding a dark "ventricle" disc whose radius grows with the class (CN < MCI < AD), placed at
a random position with a random gain and offset: a CNN that looks for the dark disc's size learns
it; a linear model on pixels struggles with the moving position and varying intensities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import DictConfig

from pipeline.cache import cohort_dir
from pipeline.config import recipe_config, recipe_hash
from tests.helpers import compose_in, write_cache

#: Small and fast: 32x32 images, a 3-block CNN, a few epochs, no progress bar.
FAST_OVERRIDES = (
    "data.name=fake",
    "split.folds=1",  # one model: the default 5-fold ensemble is tested where it matters
    "normalize.size=32",
    "model.net.channels=[8,16,32]",
    "trainer.max_epochs=3",
    "trainer.min_epochs=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=1",
    "datamodule.batch_size=16",
)

#: Ventricle radius per class, as a fraction of the image size.
RADIUS = (0.05, 0.12, 0.19)
#: Head position jitter, as a fraction of the image size: defeats a linear model on pixels.
JITTER = 0.18


def compose_train(tmp: Path, *overrides: str) -> DictConfig:
    """conf/train.yaml with the fast settings, caches and runs under ``tmp``."""
    return compose_in(tmp, "train", *FAST_OVERRIDES, *overrides)


def _subject_image(label: int, size: int, n_slices: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cy, cx = size / 2 + rng.uniform(-JITTER, JITTER, 2) * size
    head = ((yy - cy) ** 2 + (xx - cx) ** 2) <= (rng.uniform(0.28, 0.32) * size) ** 2
    gain, offset = rng.uniform(0.7, 1.3), rng.uniform(-0.3, 0.3)
    slices = []
    for s in range(n_slices):
        radius = (
            (RADIUS[label] + rng.normal(0, 0.015)) * size * (1.0 - 0.1 * abs(s - n_slices // 2))
        )
        vy, vx = cy + rng.normal(0, 0.02 * size), cx + rng.normal(0, 0.02 * size)
        ventricle = ((yy - vy) ** 2 + (xx - vx) ** 2) <= radius**2
        image = np.where(head, 1.0, 0.0) - np.where(ventricle, 0.9, 0.0)
        image = gain * (image + rng.normal(0, 0.1, image.shape)) + offset
        slices.append(image)
    return np.stack(slices).astype(np.float32)


def write_fake_cache(
    cfg: DictConfig,
    *,
    n_subjects: int = 60,
    class_mix: Sequence[float] = (0.45, 0.35, 0.20),
    sessions: int = 1,
    seed: int = 0,
    labels: Sequence[str] | None = None,
) -> Path:
    """Write a contract-valid cache for ``cfg`` (its data.name, slices.count, normalize.size).

    ``labels`` (one per subject) overrides the class mix; ``sessions`` > 1 gives every subject
    that many rows (session ids ``ses-1``...), all with the subject's label.
    """
    rng = np.random.default_rng(seed)
    classes = list(cfg.data.classes)
    size, n_slices = int(cfg.normalize.size), int(cfg.slices.count)
    if labels is None:
        counts = np.floor(np.asarray(class_mix) * n_subjects).astype(int)
        counts[0] += n_subjects - counts.sum()
        labels = [c for c, n in zip(classes, counts, strict=True) for _ in range(n)]
        labels = list(rng.permutation(labels))
    images, rows = [], []
    for i, label in enumerate(labels):
        for s in range(sessions):
            index = classes.index(label) if label in classes else 0
            images.append(_subject_image(index, size, n_slices, rng))
            rows.append(
                {
                    "row": len(rows),
                    "subject_id": f"sub-{i:03d}",
                    "session_id": f"ses-{s + 1}" if sessions > 1 else "",
                    "label": label,
                    "site": "fake",
                    "age": float(rng.integers(60, 90)),
                    "sex": str(rng.choice(["F", "M"])),
                    "source_format": "dicom",
                    "series_hash": f"{rng.integers(1 << 40):x}",
                    "source_hash": f"{rng.integers(1 << 40):x}",
                    "n_slices": 44,
                    "slice_spacing_mm": 4.0,
                    "slice_indices": "21;22;23",
                    "slice_positions_mm": "-4.0;0.0;4.0",
                }
            )
    provenance = {
        "recipe": recipe_config(cfg),
        "recipe_hash": recipe_hash(cfg),
        "classes": classes,
        "data_name": str(cfg.data.name),
        "counts": {"accepted": len(rows)},
    }
    directory = cohort_dir(cfg.paths.cache, cfg.data.name)
    return write_cache(directory, np.stack(images), pd.DataFrame(rows), provenance)


@pytest.fixture
def train_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """``train_cfg(*overrides)``: the fast train config rooted in this test's tmp folder."""
    return lambda *overrides: compose_train(tmp_path, *overrides)


@pytest.fixture
def fake_cache() -> Callable[..., Path]:
    """``fake_cache(cfg, **kwargs)``: write a learnable fake cache (see write_fake_cache)."""
    return write_fake_cache
