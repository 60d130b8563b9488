"""What ingestion is asked to do, read once: the ``series:`` options and the context of a scan.

:class:`IngestContext` is the one frozen object handed down the reading side (readers, series
checks, rejection paths), instead of ``data.root`` and recipe sections threaded through every
layer. Building it validates the options, so a bad regex or choice is one config error at the
start, not a rejection of every subject.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.preprocess.discover import relative_path

DEFAULT_SPACING_TOLERANCE = 0.05
PLANE_CHOICES = ("axial", "coronal", "sagittal")


@dataclass(frozen=True)
class SeriesOptions:
    """The ``series:`` config section (missing keys take their documented defaults)."""

    modality: str | None = "MR"
    description_include: str | None = None
    description_exclude: str | None = None
    plane: str | None = "axial"  # the plane of the output slices; None: the acquired plane
    reslice_2d: bool = False  # reslice 2D (thick-slice) series acquired in another plane
    spacing_tolerance: float = DEFAULT_SPACING_TOLERANCE
    prefer: str = "first"

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> SeriesOptions:
        """Read and check the section; ``ValueError`` names the bad key."""
        cfg = cfg or {}
        options = cls(
            modality=cfg.get("modality", cls.modality) or None,
            description_include=cfg.get("description_include") or None,
            description_exclude=cfg.get("description_exclude") or None,
            plane=cfg.get("plane", cls.plane) or None,
            reslice_2d=bool(cfg.get("reslice_2d", cls.reslice_2d)),
            spacing_tolerance=float(cfg.get("spacing_tolerance", cls.spacing_tolerance)),
            prefer=str(cfg.get("prefer", cls.prefer)),
        )
        options._check()
        return options

    def _check(self) -> None:
        if self.prefer not in ("first", "last"):
            raise ValueError(f"series.prefer must be 'first' or 'last', got {self.prefer!r}")
        if self.plane is not None and self.plane not in PLANE_CHOICES:
            raise ValueError(
                f"series.plane must be axial, coronal, sagittal or null, got {self.plane!r}"
            )
        for key in ("description_include", "description_exclude"):
            pattern = getattr(self, key)
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as err:
                    raise ValueError(
                        f"series.{key} {pattern!r} is not a valid regex: {err}"
                    ) from err


@dataclass(frozen=True)
class IngestContext:
    """Everything the reading side needs besides the files: where the cohort is, and the rules."""

    root: Path  # data.root: rejection paths and fingerprints are relative to it
    series: SeriesOptions
    expected_slices: int | None = None  # slices.expected (None: any stack of >= 3)

    @classmethod
    def from_recipe(cls, root: str | os.PathLike[str], recipe: Mapping[str, Any]) -> IngestContext:
        """The context of a recipe (its ``series`` and ``slices`` sections)."""
        expected = (recipe.get("slices") or {}).get("expected")
        return cls(
            root=Path(root),
            series=SeriesOptions.from_config(recipe.get("series")),
            expected_slices=None if expected is None else int(expected),
        )

    def where(self, path: str | os.PathLike[str]) -> str:
        """``path`` relative to data.root, as rejected.csv writes it."""
        return relative_path(path, self.root)
