"""Stored values -> physical values (:func:`pipeline.preprocess.pixels.to_physical`) against
pydicom's ``apply_modality_lut``, on the float32 shortcut for data without a rescale and on the
float64 route beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut

from pipeline.preprocess.pixels import DicomSlice, to_physical


def _pydicom_physical(stored: np.ndarray, item: DicomSlice) -> np.ndarray:
    """The reference: pydicom's rescale, then MONOCHROME1 mirrored over the output range."""
    module = Dataset()
    if item.rescale is not None:
        module.RescaleSlope, module.RescaleIntercept = item.rescale
    values = np.asarray(apply_modality_lut(stored, module), np.float64)
    if item.photometric == "MONOCHROME1":
        low, high = item.output_range()
        values = (low + high) - values
    return values.astype(np.float32)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
@pytest.mark.parametrize("rescale", [None, (1.0, 0.0), (2.5, -1024.0)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32])
def test_physical_values_are_pydicoms(dtype, rescale, photometric):
    info = np.iinfo(dtype)
    low, high = max(info.min, -(2**15)), min(info.max, 2**16 - 1)
    stored = np.random.default_rng(0).integers(low, high, (16, 12), endpoint=True).astype(dtype)
    stored[0, :2] = low, high  # the extremes, where a float32 rounding would show
    item = DicomSlice(Path("x.dcm"), None, photometric, (int(low), int(high)), rescale)
    got = to_physical(stored, item)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, _pydicom_physical(stored, item))
