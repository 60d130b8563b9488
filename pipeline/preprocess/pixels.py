"""Decode only the requested DICOM slices into float32 physical values, canonically oriented.

pydicom 3 decodes every transfer syntax it supports, with the pylibjpeg plugins for JPEG baseline
and lossless, JPEG-LS, JPEG 2000 and RLE; ``pixel_array``/``iter_pixels`` with a frame index read
just that frame from the file, so a 44-slice series costs three decodes, not 44.

Per slice, in this order: MONOCHROME1 inversion over the storable range (a series-wide constant,
so every slice of a series maps the same way), pydicom's ``apply_modality_lut``
(RescaleSlope/Intercept or a Modality LUT, per frame for enhanced MR), then the in-plane
transpose/flips of :class:`~.geometry.InPlaneTransform`. Signed data is sign-extended by pydicom.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, iter_pixels, pixel_array

from pipeline.preprocess.geometry import InPlaneTransform


class SliceReadError(RuntimeError):
    """A slice's pixels could not be decoded; the message names the file and pydicom's error."""


@dataclass(frozen=True)
class DicomSlice:
    """Where one slice's pixels are and how to turn them into physical values."""

    path: Path
    frame: int | None  # frame index of a multi-frame file; None for a single-frame file
    photometric: str
    stored_range: tuple[int, int]
    rescale: tuple[float, float] | None  # (RescaleSlope, RescaleIntercept)
    modality_lut: Dataset | None = None  # a Modality LUT Sequence, when the file has one

    def modality_dataset(self) -> Dataset:
        """The Modality LUT module pydicom's ``apply_modality_lut`` reads, for this slice.

        Built when decoding (three slices) rather than when scanning (every file).
        """
        if self.modality_lut is not None:
            return self.modality_lut
        module = Dataset()
        if self.rescale is not None:
            module.RescaleSlope, module.RescaleIntercept = self.rescale
        return module


def to_physical(stored: np.ndarray, item: DicomSlice) -> np.ndarray:
    """Stored values -> float32 physical values (MONOCHROME1 inverted, modality LUT applied)."""
    values = stored
    if item.photometric == "MONOCHROME1":
        # Invert over the storable range rather than the slice's own min/max, so the mapping is
        # the same for every slice of the series.
        low, high = item.stored_range
        values = (low + high) - stored.astype(np.float64)
    return np.asarray(apply_modality_lut(values, item.modality_dataset()), dtype=np.float32)


@dataclass(frozen=True)
class DicomSliceReader:
    """The ``reader`` of a DICOM :class:`~.stack.SliceStack`: decodes slices by sorted index.

    Picklable (plain data), so a stack can be handed to a worker process.
    """

    slices: tuple[DicomSlice, ...]  # in the stack's sorted order
    transform: InPlaneTransform
    shape: tuple[int, int]  # (rows, cols) after the transform

    def _decode_file(self, path: Path, frames: list[int | None]) -> dict[int | None, np.ndarray]:
        if None in frames:  # a single-frame file
            return {None: pixel_array(path)}
        wanted = sorted({f for f in frames if f is not None})
        if len(wanted) == 1:
            return {wanted[0]: pixel_array(path, index=wanted[0])}
        return dict(zip(wanted, iter_pixels(path, indices=wanted), strict=True))

    def __call__(self, indices: Sequence[int]) -> np.ndarray:
        if len(indices) == 0:
            return np.empty((0, *self.shape), dtype=np.float32)
        by_file: dict[Path, list[int | None]] = defaultdict(list)
        for i in indices:
            by_file[self.slices[i].path].append(self.slices[i].frame)
        decoded: dict[tuple[Path, int | None], np.ndarray] = {}
        for path, frames in by_file.items():
            try:
                for frame, array in self._decode_file(path, frames).items():
                    decoded[path, frame] = array
            except Exception as err:  # decoders raise many types; the file is what matters
                raise SliceReadError(
                    f"cannot decode the pixels of {path} ({type(err).__name__}: {err})"
                ) from err
        out = []
        for i in indices:
            item = self.slices[i]
            image = to_physical(decoded[item.path, item.frame], item)
            out.append(self.transform.apply(image))
        return np.ascontiguousarray(np.stack(out), dtype=np.float32)
