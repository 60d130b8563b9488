"""Helpers shared by the tests of every stage (fixtures built on them are in tests/conftest.py).

Import as ``from tests.helpers import compose_in``. Composing without a test folder is
:func:`pipeline.config.compose`; the DICOM/NIfTI phantom writer that tests and benchmarks share
is :mod:`pipeline.synthetic.phantom`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
from omegaconf import DictConfig

from pipeline import cache
from pipeline.config import compose

#: The DICOM test files pydicom and nibabel ship (real scanner data; no download).
PYDICOM_DATA = Path(pydicom.data.__file__).parent / "test_files"
NICOM_DATA = Path(nib.__file__).parent / "nicom" / "tests" / "data"


def bundled_dicom_files() -> list[Path]:
    """Every DICOM test file pydicom bundles (its own folder: no download), and nibabel's."""
    return sorted(PYDICOM_DATA.rglob("*.dcm")) + sorted(NICOM_DATA.glob("*.dcm"))


def compose_in(tmp: Path, config_name: str, *overrides: str) -> DictConfig:
    """``conf/<config_name>.yaml`` composed as the CLI would, with ``paths.cache``,
    ``paths.runs`` and ``paths.data`` under ``tmp`` (so a test writes nowhere else), then
    ``overrides``."""
    rooted = [f"paths.{key}={Path(tmp) / key}" for key in ("cache", "runs", "data")]
    return compose(config_name, [*rooted, *overrides])


def write_cache(
    directory: Path,
    images: np.ndarray,
    manifest: pd.DataFrame,
    provenance: dict[str, Any],
    rejected: pd.DataFrame | None = None,
) -> Path:
    """A cache as :mod:`pipeline.cache` defines it, in the writer's order (provenance last).

    ``manifest`` gets the contract's :data:`~pipeline.cache.MANIFEST_COLUMNS` it lacks, empty.
    """
    directory.mkdir(parents=True, exist_ok=True)
    manifest = manifest.copy()
    for column in cache.MANIFEST_COLUMNS:
        if column not in manifest:
            manifest[column] = ""
    extra = [c for c in manifest.columns if c not in cache.MANIFEST_COLUMNS]
    np.save(directory / cache.IMAGES, images)
    manifest[[*cache.MANIFEST_COLUMNS, *extra]].to_csv(directory / cache.MANIFEST, index=False)
    if rejected is None:
        rejected = pd.DataFrame(columns=list(cache.REJECTED_COLUMNS))
    rejected.to_csv(directory / cache.REJECTED, index=False)
    (directory / cache.PROVENANCE).write_text(json.dumps(provenance), encoding="utf-8")
    return directory


#: Libraries a command that computes nothing must not import (seconds each to import).
COMPUTE_LIBRARIES = frozenset({"torch", "monai", "lightning", "matplotlib"})


def imported_packages(importtime_stderr: str) -> set[str]:
    """Top-level packages named in the stderr of ``python -X importtime``."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names
