"""A NIfTI file as a :class:`~.volume.Volume`: its header's grid and affine, voxels read lazily.

:class:`NiftiReader` checks the header (one 3-D volume, an orientation that is known, all its
voxels present) and hands the stored grid and affine to the same geometry path as DICOM
(:mod:`.geometry`): the configured plane's slices are taken along the nearest canonical axes,
as ``nibabel.as_closest_canonical`` would, and a NIfTI file and a DICOM export of one volume give
the same stack.

- **Orientation unknown:** with ``qform_code`` and ``sform_code`` both 0, nibabel falls back to
  a guessed affine (voxel sizes only) in which left and right are assumed, not known; such a
  file is refused.
- **Acquired plane and 2D/3D:** NIfTI has no MRAcquisitionType. A volume whose voxels are
  near-isotropic is 3D and its slices are taken along the stored third axis (dcm2niix's slice
  axis, or the header's ``slice_dim``); otherwise the coarsest axis is the slice axis and the
  volume is 2D, so a thick-slice volume is never silently resliced into another plane.
- **Reading:** slices along the stored third axis are read one by one through nibabel's lazy
  ``dataobj`` (scaled by scl_slope/inter); other axes of a compressed file read the volume once
  (gzip cannot seek) and keep it for the subject.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from pipeline.preprocess.dicom_headers import hash_uid
from pipeline.preprocess.discover import nifti_stem, source_fingerprint
from pipeline.preprocess.geometry import (
    ISOTROPIC_RATIO,
    GeometryError,
    VolumeGeometry,
    acquisition_kind,
)
from pipeline.preprocess.options import IngestContext
from pipeline.preprocess.pixels import SliceReadError
from pipeline.preprocess.series_select import SeriesRejected, check_description, check_min_count
from pipeline.preprocess.volume import Volume, VolumeReader


def _volume_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) < 3:
        raise SeriesRejected(f"{len(shape)}-D image of shape {shape}: a 3-D volume is needed")
    extra = shape[3:]
    if any(n != 1 for n in extra):
        raise SeriesRejected(
            f"{len(shape)}-D image of shape {tuple(shape)} holds {int(np.prod(extra))} volumes "
            "(fMRI/DWI/multi-echo?): ingestion needs one 3-D volume per file"
        )
    return int(shape[0]), int(shape[1]), int(shape[2])


def _check_orientation_known(image: nib.spatialimages.SpatialImage) -> None:
    header = image.header
    if not hasattr(header, "get_qform"):  # not NIfTI-1/2 (e.g. Analyze): no orientation fields
        raise SeriesRejected("not a NIfTI-1/NIfTI-2 header: the orientation is unknown")
    _, qform_code = header.get_qform(coded=True)
    _, sform_code = header.get_sform(coded=True)
    if not qform_code and not sform_code:
        raise SeriesRejected(
            "orientation unknown: qform_code and sform_code are both 0, so left and right "
            "would be guessed (re-export the volume with its orientation, e.g. with dcm2niix)"
        )


def _check_complete(path: Path, image: nib.spatialimages.SpatialImage) -> None:
    """An uncompressed file must hold all its voxels; a cut copy would fail only when read."""
    if path.name.lower().endswith(".gz"):
        return
    # The proxy knows where the voxels start (the loaded header's vox_offset may read 0).
    offset = int(getattr(image.dataobj, "offset", image.header.get_data_offset()))
    itemsize = np.dtype(image.header.get_data_dtype()).itemsize
    needed = offset + int(np.prod(image.shape)) * itemsize
    if path.stat().st_size < needed:
        raise SeriesRejected(
            f"file holds {path.stat().st_size} bytes but its header needs {needed} "
            "(truncated copy?)"
        )


def _slice_axis(image: nib.spatialimages.SpatialImage, sizes: np.ndarray) -> int:
    """The stored axis of the acquired slices (see the module docstring)."""
    if sizes.max() > ISOTROPIC_RATIO * sizes.min():
        return int(np.argmax(sizes))
    _, _, slice_dim = image.header.get_dim_info()
    return 2 if slice_dim is None else int(slice_dim)


def nifti_geometry(image: nib.spatialimages.SpatialImage) -> VolumeGeometry:
    """The stored grid of ``image`` placed by its affine (SeriesRejected when unusable)."""
    shape = _volume_shape(tuple(image.shape))
    affine = np.asarray(image.affine, dtype=np.float64)
    try:
        probe = VolumeGeometry(affine, shape, 2, "3D")
    except GeometryError as err:
        raise SeriesRejected(str(err)) from err
    sizes = np.linalg.norm(affine[:3, :3], axis=0)
    slice_axis = _slice_axis(image, sizes)
    probe = VolumeGeometry(affine, shape, slice_axis, "3D")
    kind = acquisition_kind(None, probe.slice_spacing_mm, probe.pixel_spacing_mm)
    return VolumeGeometry(affine, shape, slice_axis, kind)


class NiftiReader(VolumeReader):
    """One ``.nii``/``.nii.gz`` file -> a checked :class:`~.volume.Volume`."""

    source_format = "nifti"

    def read(self, unit: Path, context: IngestContext) -> Volume:
        path = Path(unit)
        check_description(nifti_stem(path), context.series, "file name")
        try:
            image = nib.load(path)
        except Exception as err:  # nibabel raises many types for broken files
            raise SeriesRejected(f"unreadable NIfTI ({type(err).__name__}: {err})") from err
        geometry = nifti_geometry(image)
        _check_orientation_known(image)
        _check_complete(path, image)
        check_min_count(geometry.shape[geometry.slice_axis])
        return Volume(
            geometry=geometry,
            voxels=NiftiVoxels(path, len(image.shape)),
            source_format=self.source_format,
            series_hash=hash_uid(context.where(path)),
            source_hash=source_fingerprint([path], context.root),
            paths=(path,),
            description=nifti_stem(path),
        )


@dataclass(frozen=True)
class NiftiVoxels:
    """The stored voxels of a NIfTI file, read lazily; picklable (holds only the path)."""

    path: Path
    ndim: int  # dimensions in the file (trailing singleton ones are indexed away)
    cache: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def read_block(self, axis: int, indices: Sequence[int]) -> np.ndarray:
        try:
            image = nib.load(self.path)
            if axis == 2 or not self.path.name.lower().endswith(".gz"):
                parts = [self._one(image, axis, int(k)) for k in indices]
                return np.concatenate(parts, axis=axis).astype(np.float32, copy=False)
            if "all" not in self.cache:
                index = (slice(None),) * 3 + (0,) * (self.ndim - 3)
                self.cache["all"] = np.asarray(image.dataobj[index], dtype=np.float32)
            return np.take(self.cache["all"], list(indices), axis=axis)
        except Exception as err:  # nibabel/gzip raise many types; the file is what matters
            raise SliceReadError(
                self.path, f"{type(err).__name__}: {err}", what="cannot read slices of"
            ) from err

    def _one(self, image: nib.spatialimages.SpatialImage, axis: int, k: int) -> np.ndarray:
        index: list[slice | int] = [slice(None)] * 3
        index[axis] = slice(k, k + 1)
        index += [0] * (self.ndim - 3)  # trailing singleton dimensions
        return np.asarray(image.dataobj[tuple(index)], dtype=np.float32)
