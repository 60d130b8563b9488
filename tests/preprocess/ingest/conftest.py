"""Fixtures of the ingestion tests. The DICOM/NIfTI writer (``dicom_writer``) and its ground
truth (``truth_volume``) are shared fixtures in tests/conftest.py, built on
:mod:`pipeline.synthetic.phantom`."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def series_cfg() -> dict[str, Any]:
    """The ``series:`` section as conf/recipe/default.yaml has it."""
    return {
        "modality": "MR",
        "description_include": None,
        "description_exclude": "(?i)(localizer|localiser|scout|survey|3[- ]?plane|\\bloc\\b)",
        "plane": "axial",
        "spacing_tolerance": 0.05,
        "prefer": "first",
    }
