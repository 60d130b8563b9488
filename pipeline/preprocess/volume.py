"""The reader interface: one class per format turns its input into a :class:`Volume`.

Shaped like MONAI's ``monai.data.image_reader``: an abstract :class:`VolumeReader` and one class
per format (:class:`~.dicom_volume.DicomSeriesReader`, :class:`~.nifti.NiftiReader`). A reader
reads headers only and returns a :class:`Volume`: the stored voxel grid's geometry
(:class:`~.geometry.VolumeGeometry`) plus a :class:`VoxelSource` that reads stored voxels
lazily. Everything after that (which plane, reslicing, positions, which slices) is format-free
(:mod:`.geometry`, :mod:`.series_select`), so the formats cannot drift apart. A new format is a
new reader class, not a new branch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.preprocess.geometry import VolumeGeometry
from pipeline.preprocess.options import IngestContext


class VoxelSource(Protocol):
    """Reads stored voxels, lazily. Implementations are picklable plain data."""

    def read_block(self, axis: int, indices: Sequence[int]) -> np.ndarray:
        """float32 physical values of the stored grid with only ``indices`` along ``axis`` (in
        that order) and everything along the other two axes."""
        ...


@dataclass(frozen=True)
class Volume:
    """One series (or NIfTI file) as read from its headers: geometry, voxels and identity."""

    geometry: VolumeGeometry
    voxels: VoxelSource
    source_format: str  # "dicom" | "nifti"
    series_hash: str  # short hash of SeriesInstanceUID (or the NIfTI path): never the raw UID
    source_hash: str  # hash of the source files' relative paths, sizes and mtimes
    paths: tuple[Path, ...]
    description: str = ""  # SeriesDescription or the NIfTI file name, for messages and choice
    series_number: int | None = None
    derived: bool = False  # ImageType DERIVED (a reformat or a computed map)


class VolumeReader(ABC):
    """Reads one format's unit (a DICOM series' frames, a NIfTI file) into a :class:`Volume`.

    ``read`` raises :class:`~.series_select.SeriesRejected` with the reason when the unit cannot
    be a volume.
    """

    #: ``Volume.source_format`` of this reader's volumes.
    source_format: str = ""

    @abstractmethod
    def read(self, unit: Any, context: IngestContext) -> Volume:
        """Header-only read of ``unit``: its checked geometry and a lazy voxel source."""
