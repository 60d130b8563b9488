"""The hand-over inside the preprocess stage: from "files on disk" to "a sorted slice stack".

Ingestion (``discover``/``dicom_series``/``geometry``/``nifti`` modules) turns one subject's folder
into :class:`SliceStack` objects (one per accepted session) plus :class:`Rejection` rows. The
rest of the stage (slice choice, MONAI normalization, cache writing) only sees these two types;
it never opens a DICOM header itself.

Conventions every :class:`SliceStack` honours:

- ``positions_mm`` is strictly increasing and is the projection of each slice's position on the
  slice normal, with the normal's sign fixed so that increasing means towards the head
  (superior) for axial stacks. A feet-first and a head-first export of one head give the same
  stack.
- :meth:`SliceStack.read` returns float32 pixels in physical units (RescaleSlope/Intercept
  applied, MONOCHROME1 inverted, signed data handled), shaped ``(k, rows, cols)``, with the
  in-plane axes reoriented to one canonical patient orientation (image rows run anterior to
  posterior, columns run from the patient's right to left, as in radiological display), so
  two exports of one head give the same pixels.
- Nothing from the DICOM header that identifies a person is kept here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

#: Levels of a rejection, from the smallest unit to the largest.
REJECTION_LEVELS = ("file", "series", "session", "subject")


@dataclass(frozen=True)
class Rejection:
    """One input not used, with a reason a person can act on ("43 slices, expected 44")."""

    subject_id: str
    session_id: str
    path: str  # file or folder, relative to data.root where possible
    level: str  # one of REJECTION_LEVELS
    reason: str

    def as_row(self) -> dict[str, str]:
        return {
            "subject_id": self.subject_id,
            "session_id": self.session_id,
            "path": self.path,
            "level": self.level,
            "reason": self.reason,
        }


@dataclass
class SliceStack:
    """One accepted series (or NIfTI volume) of one subject/session, sorted by geometry.

    Pixels are decoded lazily by :meth:`read`, so that only the chosen slices are ever decoded.
    """

    subject_id: str
    session_id: str
    source_format: str  # "dicom" | "nifti"
    series_hash: str  # short hash of SeriesInstanceUID (or the NIfTI path): never the raw UID
    source_hash: str  # hash of the source files' relative paths, sizes and mtimes
    positions_mm: np.ndarray  # (n,), strictly increasing, towards the head
    spacing_mm: float  # median distance between consecutive positions
    pixel_spacing_mm: tuple[float, float]  # (row spacing, column spacing) after reorientation
    shape: tuple[int, int]  # (rows, cols) of every slice after reorientation
    reader: Callable[[Sequence[int]], np.ndarray] = field(repr=False)
    description: str = ""  # SeriesDescription, for messages only

    @property
    def n_slices(self) -> int:
        return len(self.positions_mm)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Decode the slices at ``indices`` of the sorted stack: float32 ``(k, rows, cols)``."""
        idx = [int(i) for i in indices]
        bad = [i for i in idx if not 0 <= i < self.n_slices]
        if bad:
            raise IndexError(f"slice indices {bad} outside the {self.n_slices}-slice stack")
        return self.reader(idx)
