"""Fixtures shared by every stage's tests; stage fixtures live in tests/<stage>/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (where conf/ and pyproject.toml live)."""
    return REPO_ROOT
