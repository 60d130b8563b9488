"""A NIfTI volume as a :class:`~.stack.SliceStack`: its axial slices, read lazily.

The volume is taken to the closest canonical (RAS) orientation the way
``nibabel.as_closest_canonical`` does (``io_orientation``), but without loading it: only the
requested axial slices are read through nibabel's lazy ``dataobj`` (scaled by scl_slope/inter),
each as a one-slice block reoriented with ``apply_orientation``. Then every slice gets the same
in-plane view as a DICOM axial slice (rows anterior to posterior, columns right to left) and
positions along the slice normal in mm, increasing towards the head, so a NIfTI and a DICOM
export of one volume give the same stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

from pipeline.preprocess.pixels import SliceReadError


class NiftiError(ValueError):
    """A NIfTI file that cannot give a stack (the message says why)."""


def _volume_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) < 3:
        raise NiftiError(f"{len(shape)}-D image of shape {shape}: a 3-D volume is needed")
    extra = shape[3:]
    if any(n != 1 for n in extra):
        raise NiftiError(
            f"{len(shape)}-D image of shape {tuple(shape)} holds {int(np.prod(extra))} volumes "
            "(fMRI/DWI/multi-echo?): ingestion needs one 3-D volume per file"
        )
    return int(shape[0]), int(shape[1]), int(shape[2])


@dataclass(frozen=True)
class NiftiGeometry:
    """What the reader needs to fetch canonical axial slice ``k`` from the file as stored."""

    ornt: np.ndarray  # io_orientation of the stored affine: stored axis -> (RAS axis, flip)
    stored_shape: tuple[int, int, int]
    axial_axis: int  # stored axis that runs inferior -> superior after reorientation
    axial_flip: bool  # stored index runs head -> feet along that axis
    canonical_affine: np.ndarray  # voxel (canonical indices) -> RAS mm

    @property
    def n_axial(self) -> int:
        return self.stored_shape[self.axial_axis]


def nifti_geometry(image: nib.spatialimages.SpatialImage) -> NiftiGeometry:
    """Work out the canonical (RAS) reorientation of ``image`` from its header alone."""
    shape = _volume_shape(tuple(image.shape))
    affine = np.asarray(image.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise NiftiError("the affine (qform/sform) is missing or singular: no geometry")
    ornt = io_orientation(affine)
    canonical_affine = affine @ inv_ornt_aff(ornt, shape)
    axial_axis = int(np.flatnonzero(ornt[:, 0] == 2)[0])
    return NiftiGeometry(
        ornt=ornt,
        stored_shape=shape,
        axial_axis=axial_axis,
        axial_flip=bool(ornt[axial_axis, 1] < 0),
        canonical_affine=canonical_affine,
    )


def axial_positions(geometry: NiftiGeometry) -> tuple[np.ndarray, tuple[float, float]]:
    """Positions (mm) of the canonical axial slices along their normal, and the pixel spacing."""
    affine = geometry.canonical_affine
    normal = np.cross(affine[:3, 0], affine[:3, 1])
    normal /= np.linalg.norm(normal)
    if normal[2] < 0:
        normal = -normal  # towards the head (+S in RAS)
    k = np.arange(geometry.n_axial, dtype=np.float64)
    origins = affine[:3, 3][None, :] + k[:, None] * affine[:3, 2][None, :]
    # Canonical rows run along voxel axis j (anterior-posterior), columns along i (left-right).
    spacing = (float(np.linalg.norm(affine[:3, 1])), float(np.linalg.norm(affine[:3, 0])))
    return origins @ normal, spacing


@dataclass(frozen=True)
class NiftiSliceReader:
    """The ``reader`` of a NIfTI :class:`~.stack.SliceStack`; picklable (holds only the path)."""

    path: Path
    geometry: NiftiGeometry

    def _read_one(self, image: nib.spatialimages.SpatialImage, k: int) -> np.ndarray:
        geometry = self.geometry
        stored = geometry.n_axial - 1 - k if geometry.axial_flip else k
        index: list[slice | int] = [slice(None)] * 3
        index[geometry.axial_axis] = slice(stored, stored + 1)
        index += [0] * (len(image.shape) - 3)  # trailing singleton dimensions
        block = np.asarray(image.dataobj[tuple(index)], dtype=np.float32)
        ras = apply_orientation(block, geometry.ornt)[:, :, 0]  # (i: L->R, j: P->A)
        # Rows anterior -> posterior, columns right -> left: reverse both axes, then transpose.
        return ras[::-1, ::-1].T

    def __call__(self, indices: Sequence[int]) -> np.ndarray:
        try:
            image = nib.load(self.path)
            slices = [self._read_one(image, int(k)) for k in indices]
        except Exception as err:  # nibabel/gzip raise many types; the file is what matters
            raise SliceReadError(
                self.path, f"{type(err).__name__}: {err}", what="cannot read slices of"
            ) from err
        if not slices:
            return np.empty((0, *_canonical_in_plane_shape(self.geometry)), dtype=np.float32)
        return np.ascontiguousarray(np.stack(slices), dtype=np.float32)


def _canonical_in_plane_shape(geometry: NiftiGeometry) -> tuple[int, int]:
    """(rows, cols) of a canonical axial slice: rows along RAS j, columns along RAS i."""
    sizes = {
        int(ras_axis): geometry.stored_shape[a] for a, (ras_axis, _) in enumerate(geometry.ornt)
    }
    return sizes[1], sizes[0]


def open_nifti(
    path: Path,
) -> tuple[NiftiGeometry, np.ndarray, tuple[float, float], tuple[int, int]]:
    """Header-only look at a NIfTI file: geometry, axial positions, pixel spacing, slice shape.

    Raises :class:`NiftiError` with a reason for files that cannot give a stack.
    """
    try:
        image = nib.load(path)
    except Exception as err:
        raise NiftiError(f"unreadable NIfTI ({type(err).__name__}: {err})") from err
    geometry = nifti_geometry(image)
    if not path.name.lower().endswith(".gz"):
        # An uncompressed file must hold all its voxels; a cut copy would fail only when read.
        # The proxy knows where the voxels start (the loaded header's vox_offset may read 0).
        offset = int(getattr(image.dataobj, "offset", image.header.get_data_offset()))
        itemsize = np.dtype(image.header.get_data_dtype()).itemsize
        needed = offset + int(np.prod(image.shape)) * itemsize
        if path.stat().st_size < needed:
            raise NiftiError(
                f"file holds {path.stat().st_size} bytes but its header needs {needed} "
                "(truncated copy?)"
            )
    positions, spacing = axial_positions(geometry)
    return geometry, positions, spacing, _canonical_in_plane_shape(geometry)
