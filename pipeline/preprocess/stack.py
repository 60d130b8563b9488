"""The hand-over inside the preprocess stage: from "files on disk" to "sorted slices of one plane".

Ingestion (:mod:`.ingest` with one reader per format, :mod:`.dicom_volume` and :mod:`.nifti`,
and the format-free :mod:`.geometry`) turns one subject's folder into :class:`SliceStack`
objects (one per accepted session) plus :class:`Rejection` rows. The rest of the stage (slice
choice, MONAI normalization, cache writing) only sees these two types; it never opens a DICOM
header itself.

Conventions every :class:`SliceStack` honours:

- its slices are those of ``plane`` (``series.plane``; the acquired plane when that is null),
  in the canonical view of :mod:`.geometry`: for axial, rows run anterior to posterior and
  columns from the patient's right to left (radiological display); a volume acquired in
  another plane is resliced (``resliced``), never interpolated;
- ``positions_mm`` is strictly increasing: each slice's position along the slice normal, which
  points towards the head for axial stacks. A feet-first and a head-first export of one head,
  or a DICOM series and its NIfTI conversion, give the same stack;
- :meth:`SliceStack.read` returns float32 pixels in physical units (RescaleSlope/Intercept
  applied, MONOCHROME1 inverted, signed data handled), shaped ``(k, rows, cols)``, decoding only
  what those slices need;
- nothing from the DICOM header that identifies a person is kept here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from pipeline.preprocess.geometry import PlaneView
from pipeline.preprocess.rejection import REJECTION_LEVELS, Rejection

__all__ = ["REJECTION_LEVELS", "Rejection", "SliceStack"]

if TYPE_CHECKING:  # volume -> options -> discover -> this module
    from pipeline.preprocess.volume import VoxelSource


@dataclass(frozen=True)
class SliceStack:
    """One accepted series (or NIfTI volume) of one subject/session: the slices of one plane.

    Pixels are read lazily by :meth:`read`, so only what the chosen slices need is decoded.
    """

    subject_id: str
    session_id: str
    source_format: str  # "dicom" | "nifti"
    series_hash: str  # short hash of SeriesInstanceUID (or the NIfTI path): never the raw UID
    source_hash: str  # hash of the source files' relative paths, sizes and mtimes
    view: PlaneView = field(repr=False)  # which stored voxels each slice holds, and where
    voxels: VoxelSource = field(repr=False)
    acquired_plane: str = ""  # the plane the series was acquired in
    acquisition: str = ""  # "2D" | "3D"
    description: str = ""  # SeriesDescription, for messages only

    @property
    def plane(self) -> str:
        return self.view.plane

    @property
    def resliced(self) -> bool:
        """True when the slices are in another plane than the acquired one."""
        return self.view.plane != self.acquired_plane

    @property
    def positions_mm(self) -> np.ndarray:
        """(n,) strictly increasing positions along the slice normal (towards the head, axial)."""
        return self.view.positions_mm

    @property
    def spacing_mm(self) -> float:
        """Median distance between consecutive positions."""
        return self.view.spacing_mm

    @property
    def pixel_spacing_mm(self) -> tuple[float, float]:
        """(row spacing, column spacing) of a slice."""
        return self.view.pixel_spacing_mm

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of every slice."""
        return self.view.shape

    @property
    def affine(self) -> np.ndarray:
        """(4, 4) slice/row/column index -> RAS mm."""
        return self.view.affine

    @property
    def n_slices(self) -> int:
        return self.view.n_slices

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Decode the slices at ``indices`` of the sorted stack: float32 ``(k, rows, cols)``."""
        idx = [int(i) for i in indices]
        bad = [i for i in idx if not 0 <= i < self.n_slices]
        if bad:
            raise IndexError(f"slice indices {bad} outside the {self.n_slices}-slice stack")
        if not idx:
            return np.empty((0, *self.shape), dtype=np.float32)
        view = self.view
        return view.orient(self.voxels.read_block(view.slice_axis, view.stored_indices(idx)))
