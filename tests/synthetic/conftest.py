"""Fixtures of the demo generator's tests: small cohorts of both sites, made once per session.

Images are kept small (``matrix``) so a cohort takes a second or two; the geometry, headers,
folder mess and defects are those of the default sites.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from pydicom.errors import InvalidDicomError

from pipeline.synthetic import generate_cohort, identity_columns

SMALL_A = {"matrix": [[64, 64], [56, 64]], "p_localizer": 0.5, "p_stray_file": 0.5}
SMALL_B = {
    "matrix": [[48, 48], [64, 48]],
    "p_localizer": 0.5,
    "p_stray_file": 0.5,
    "p_feet_first": 0.5,
    "transfer_syntax": {"ExplicitVRLittleEndian": 1, "RLELossless": 1, "JPEG2000Lossless": 1},
}


@dataclass
class Series:
    """The files of one SeriesInstanceUID of one subject, headers only."""

    paths: list[Path]
    headers: list[pydicom.Dataset]


def _read_subject(subject_dir: Path) -> tuple[dict[str, Series], list[Path]]:
    """Every DICOM series under a subject folder, and the files that are not DICOM."""
    series: dict[str, Series] = defaultdict(lambda: Series([], []))
    other = []
    for path in sorted(p for p in subject_dir.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except InvalidDicomError:
            other.append(path)
            continue
        if "SeriesInstanceUID" not in ds:  # cut short inside its header
            other.append(path)
            continue
        entry = series[ds.SeriesInstanceUID]
        entry.paths.append(path)
        entry.headers.append(ds)
    return dict(series), other


def _read_truth(root: Path) -> pd.DataFrame:
    text = ["subject_id", "defect", "stray_file", "t1_folder", "extension", *identity_columns()]
    return pd.read_csv(root / "truth.csv", dtype=dict.fromkeys(text, str), keep_default_na=False)


@pytest.fixture(scope="session")
def read_subject():
    """``read_subject(folder) -> ({SeriesInstanceUID: Series}, [non-DICOM paths])``."""
    return _read_subject


@pytest.fixture(scope="session")
def read_truth():
    """``read_truth(cohort_root) -> DataFrame`` of truth.csv (ids and empty cells as strings)."""
    return _read_truth


@pytest.fixture(scope="session")
def cohort_a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 usable site-A subjects plus one of each deliberate defect."""
    out = tmp_path_factory.mktemp("synthetic") / "site_a"
    return generate_cohort(
        out,
        n_subjects=12,
        seed=11,
        site="A",
        defects={"truncated": 1, "unlabelled": 1, "no_images": 1},
        **SMALL_A,
    )


@pytest.fixture(scope="session")
def cohort_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 site-B subjects: compressed transfer syntaxes, oblique and feet-first stacks."""
    out = tmp_path_factory.mktemp("synthetic") / "site_b"
    return generate_cohort(out, n_subjects=8, seed=12, site="B", workers=2, **SMALL_B)
