"""Fixtures for the evaluate stage: contract-valid fake caches and checkpoints, made small.

The caches follow pipeline/cache.py exactly (images.npy, manifest.csv, rejected.csv,
provenance.json written last) and carry the checkpoint's preprocessing hash, so evaluate takes the
reuse path without the preprocess stage.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from pipeline.cache import REJECTED_COLUMNS
from pipeline.checkpoint import Checkpoint, FoldEntry, build_model, save_checkpoint
from pipeline.config import CONF_DIR, recipe_config, recipe_hash
from tests import helpers
from tests.helpers import compose_in

CLASSES = ["CN", "MCI", "AD"]
SIZE = 32  # pixels: small images keep the tests fast


def conv_net(in_channels: int = 3, n_classes: int = 3) -> dict[str, Any]:
    """A compact Conv-ReLU-Pool CNN as a ``_target_`` config (stands in for pipeline.models)."""
    return {
        "_target_": "torch.nn.Sequential",
        "_args_": [
            {
                "_target_": "torch.nn.Conv2d",
                "in_channels": in_channels,
                "out_channels": 8,
                "kernel_size": 3,
                "padding": 1,
            },
            {"_target_": "torch.nn.BatchNorm2d", "num_features": 8},
            {"_target_": "torch.nn.ReLU", "inplace": True},
            {"_target_": "torch.nn.MaxPool2d", "kernel_size": 2},
            {
                "_target_": "torch.nn.Conv2d",
                "in_channels": 8,
                "out_channels": 8,
                "kernel_size": 3,
                "padding": 1,
            },
            {"_target_": "torch.nn.ReLU"},
            {"_target_": "torch.nn.AdaptiveAvgPool2d", "output_size": 1},
            {"_target_": "torch.nn.Flatten"},
            {"_target_": "torch.nn.Linear", "in_features": 8, "out_features": n_classes},
        ],
    }


def monai_densenet(in_channels: int = 3, n_classes: int = 3) -> dict[str, Any]:
    """A tiny MONAI DenseNet config."""
    return {
        "_target_": "monai.networks.nets.DenseNet",
        "spatial_dims": 2,
        "in_channels": in_channels,
        "out_channels": n_classes,
        "init_features": 4,
        "growth_rate": 4,
        "block_config": [2, 2],
        "bn_size": 2,
    }


def recipe(size: int = SIZE, expected: int | None = 44) -> dict[str, Any]:
    """The default preprocessing recipe of conf/, with a small output size."""
    cfg = OmegaConf.load(Path(CONF_DIR) / "recipe" / "default.yaml")
    cfg.normalize.size = size
    cfg.slices.expected = expected
    return recipe_config(cfg)


def write_nifti_cohort(
    base: Path, n_per_class: Sequence[int] = (2, 2, 2), n_slices: int = 12, first: int = 0
) -> tuple[Path, Path]:
    """Raw NIfTI heads ``<base>/nifti/<subject>/t1.nii.gz`` and ``<base>/labels.csv``.

    An ellipsoid head whose dark "ventricles" grow with the class (CN < MCI < AD).
    """
    import nibabel as nib

    root = base / "nifti"
    subjects, labels = cohort_ids(n_per_class, first)
    rows = ["subject_id,label,site"]
    x, y, z = np.meshgrid(
        np.linspace(-1, 1, 40), np.linspace(-1, 1, 36), np.linspace(-1, 1, n_slices), indexing="ij"
    )
    for i, (subject, label) in enumerate(zip(subjects, labels, strict=True)):
        rng = np.random.default_rng(first + i)
        head = (x / 0.85) ** 2 + (y / 0.8) ** 2 + (z / 0.95) ** 2 <= 1
        width = 0.12 + 0.08 * CLASSES.index(label)
        ventricle = (x / width) ** 2 + (y / 0.35) ** 2 + (z / 0.5) ** 2 <= 1
        volume = np.abs(rng.normal(0, 15, x.shape))
        volume[head] += 600
        volume[head & ventricle] -= 400
        (root / subject).mkdir(parents=True)
        image = nib.Nifti1Image(volume.astype(np.int16), np.diag([2.0, 2.0, 4.0, 1.0]))
        nib.save(image, root / subject / "t1.nii.gz")
        rows.append(f"{subject},{label},{'siteA' if i % 2 else 'siteB'}")
    labels_path = base / "labels.csv"
    labels_path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root, labels_path


def write_cache(
    directory: Path,
    subjects: Sequence[str],
    labels: Sequence[str],
    *,
    sessions: Sequence[str] | None = None,
    sites: Sequence[str] | None = None,
    pp: dict[str, Any] | None = None,
    rejected: Sequence[dict[str, str]] = (),
    seed: int = 0,
    n_slices: int = 3,
) -> Path:
    """A complete cache whose images carry a class-dependent signal (brighter centre for AD)."""
    pp = pp or recipe()
    size = int(pp["normalize"]["size"])
    rng = np.random.default_rng(seed)
    n = len(subjects)
    images = rng.normal(0, 1, (n, n_slices, size, size)).astype(np.float32)
    for i, label in enumerate(labels):
        if label in CLASSES:
            c = size // 4
            images[i, :, c:-c, c:-c] += CLASSES.index(label)
    manifest = pd.DataFrame(
        {
            "row": np.arange(n),
            "subject_id": list(subjects),
            "session_id": list(sessions) if sessions is not None else [""] * n,
            "label": list(labels),
            "site": list(sites) if sites is not None else ["siteA"] * n,
            "source_format": "dicom",
            "n_slices": 44,
        }
    )
    provenance = {"recipe": pp, "recipe_hash": recipe_hash(pp)}
    frame = pd.DataFrame(list(rejected), columns=list(REJECTED_COLUMNS))
    return helpers.write_cache(directory, images, manifest, provenance, frame)


def write_checkpoint(
    path: Path,
    model_config: dict[str, Any],
    *,
    slice_mode: str = "channels",
    n_folds: int = 1,
    train_subjects: Sequence[str] = ("train-001", "train-002"),
    val_subjects: Sequence[str] = ("val-001",),
    pp: dict[str, Any] | None = None,
    classes: Sequence[str] = CLASSES,
    shuffle_labels: bool = False,
) -> Path:
    """A valid checkpoint of randomly initialised (seeded) models."""
    pp = pp or recipe()
    folds = []
    for fold in range(n_folds):
        torch.manual_seed(100 + fold)
        model = build_model(model_config)
        folds.append(
            FoldEntry(
                state_dict=model.state_dict(),
                train_subjects=tuple(train_subjects),
                val_subjects=tuple(val_subjects),
                best_epoch=fold + 1,
                epochs_trained=fold + 3,
                val_metrics={"val_bal_acc": 0.5},
            )
        )
    ckpt = Checkpoint(
        classes=tuple(classes),
        network=copy.deepcopy(model_config),
        slice_mode=slice_mode,
        recipe=pp,
        recipe_hash=recipe_hash(pp),
        folds=tuple(folds),
        train_config={"seed": 42, "model": model_config},
        data_name="fake_dev",
        versions={"torch": str(torch.__version__)},
        created="2026-01-01T00:00:00+00:00",
        shuffle_labels=shuffle_labels,
    )
    return save_checkpoint(path, ckpt)


def cohort_ids(
    n_per_class: Sequence[int] = (4, 3, 3), first: int = 0
) -> tuple[list[str], list[str]]:
    """Subject ids ``sub-000``... (from ``first``) and labels in class blocks."""
    labels = [name for name, n in zip(CLASSES, n_per_class, strict=True) for _ in range(n)]
    return [f"sub-{first + i:03d}" for i in range(len(labels))], labels


@pytest.fixture
def fakes() -> SimpleNamespace:
    """The helpers above, for tests (conftest modules are not importable under importlib mode)."""
    return SimpleNamespace(
        CLASSES=CLASSES,
        SIZE=SIZE,
        conv_net=conv_net,
        monai_densenet=monai_densenet,
        recipe=recipe,
        write_cache=write_cache,
        write_checkpoint=write_checkpoint,
        cohort_ids=cohort_ids,
        write_nifti_cohort=write_nifti_cohort,
        compose=compose_in,
    )


@pytest.fixture
def evaluate_cfg(tmp_path: Path) -> Callable[..., Any]:
    """conf/evaluate.yaml pointing at ``tmp_path`` (200 bootstrap resamples), plus overrides."""
    return lambda *overrides: compose_in(
        tmp_path, "evaluate", "evaluate.bootstrap.resamples=200", *overrides
    )


@pytest.fixture
def predict_cfg(tmp_path: Path) -> Callable[..., Any]:
    """conf/predict.yaml pointing at ``tmp_path``, plus overrides."""
    return lambda *overrides: compose_in(tmp_path, "predict", *overrides)


@pytest.fixture(autouse=True)
def _no_pip_freeze(quick_freeze: None) -> None:
    """Every evaluate test runs without the ``pip freeze`` subprocess (tests/conftest.py)."""
