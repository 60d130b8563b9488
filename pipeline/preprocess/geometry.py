"""Geometry: one path from a voxel grid with an affine to the slices of one output plane.

DICOM and NIfTI meet here and nowhere else. A DICOM series is assembled into a stored voxel
grid (rows, columns, frames sorted along the slice normal: the array layout and the affine of
``nibabel.nicom``), a NIfTI file brings its own grid and affine. From then on both go through
the same three steps, all with ``nibabel.orientations``:

1. ``io_orientation(affine)``: the canonical (RAS) axis each stored axis runs along, the nearest
   one, as ``nibabel.as_closest_canonical`` and dcm2niix do;
2. ``ornt_transform`` to the canonical view of the output plane (table below): the transpose and
   flips that bring stored voxels to ``(slices, rows, cols)``, applied to just the voxels read;
3. the view's own affine (``inv_ornt_aff``), from which come each slice's position along the
   view's slice normal, the slice spacing and the pixel spacing.

So a 44-slice axial series is the simple case (the view's slices are the stored frames, three of
them are decoded) and a sagittal 3D volume the general one (each axial slice is one row of every
sagittal frame), by the same code.

**Oblique volumes** keep their voxels: slices are taken along the nearest canonical axes, never
interpolated, exactly as nibabel and dcm2niix reorient (positions are measured along the true
slice normal, so the manifest shows the real spacing). Past :data:`MAX_OBLIQUE_DEG` between a
voxel axis and its nearest canonical axis, the plane a slice belongs to is a matter of chance
and the volume is refused. ``slices.mode=template`` places the slices by an affine registration
to the MNI152 template instead (:mod:`.template`).

Canonical view per plane (radiological display; ``positions`` increase along the last column):

=========  ====================  =======================  ==============================
plane      down the rows         across the columns       positions increase towards
=========  ====================  =======================  ==============================
axial      anterior → posterior  patient right → left     the head (+S)
coronal    head → feet           patient right → left     the back (+P)
sagittal   head → feet           anterior → posterior     the patient's left (+L)
=========  ====================  =======================  ==============================

A feet-first and a head-first export of one head give the same view.

**2D or 3D acquisition** (:func:`acquisition_kind`): DICOM's MRAcquisitionType when present;
otherwise (NIfTI, or a DICOM without the tag) a volume is 3D when its voxels are near-isotropic
(slice spacing at most :data:`ISOTROPIC_RATIO` times the larger pixel spacing) and its slices
contiguous (SliceThickness, when known, at least :data:`CONTIGUOUS_FRACTION` of the spacing).
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from nibabel.orientations import (
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)

#: Plane names, indexed by the world (RAS or LPS) axis the slice normal runs along.
PLANES = ("sagittal", "coronal", "axial")

#: nibabel axis codes of the canonical view ``(slices, rows, cols)`` of each plane (RAS labels).
VIEW_AXCODES = {
    "axial": ("S", "P", "L"),
    "coronal": ("P", "I", "L"),
    "sagittal": ("L", "I", "P"),
}

_VIEW_ORNT = {plane: axcodes2ornt(codes) for plane, codes in VIEW_AXCODES.items()}

#: A voxel axis further than this from its nearest canonical axis makes the plane ambiguous.
MAX_OBLIQUE_DEG = 40.0

#: 3D without MRAcquisitionType: slice spacing at most this times the larger pixel spacing...
ISOTROPIC_RATIO = 1.5
#: ...and SliceThickness (when known) at least this fraction of the spacing (no gaps).
CONTIGUOUS_FRACTION = 0.9

#: Two ImageOrientationPatient vectors count as the same when no component differs by more.
ORIENTATION_TOLERANCE = 1e-3

#: Two slices closer than this along the normal (mm) are at the same position.
SAME_POSITION_MM = 1e-2

#: RAS <-> LPS (DICOM's patient system): flip x and y.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


class GeometryError(ValueError):
    """The geometry of a volume cannot give well-defined slices (the message says why)."""


@functools.lru_cache(maxsize=256)
def _nearest_axes(directions: bytes) -> np.ndarray:
    """``io_orientation`` of unit voxel-axis directions (a (3, 3) float64 buffer), memoized.

    Why: nibabel's function costs about 0.25 ms (an SVD and ``allclose`` loops), half of the
    geometry's cost per series; the series of a cohort share a handful of orientations, so the
    exact same input gives nibabel's exact answer from the cache.
    """
    affine = np.eye(4)
    affine[:3, :3] = np.frombuffer(directions, dtype=np.float64).reshape(3, 3)
    return io_orientation(affine)


def cross(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    """``np.cross`` of two 3-vectors, the same float64 values, in plain Python.

    Why: ``np.cross`` costs about 40 us a call on 3-vectors (it moves and broadcasts axes for
    the general case); a series' geometry takes three, which is over 0.1 ms a subject.
    """
    a0, a1, a2 = np.asarray(a, dtype=np.float64).tolist()
    b0, b1, b2 = np.asarray(b, dtype=np.float64).tolist()
    return np.array([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0])


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if norm < 1e-9:
        raise GeometryError("the affine has a zero-length axis: no geometry")
    return vector / norm


@dataclass(frozen=True)
class VolumeGeometry:
    """A stored voxel grid placed in the patient.

    ``affine`` maps stored voxel indices to RAS mm (NIfTI's convention; a DICOM series is
    converted from LPS). ``slice_axis`` is the stored axis its slices were acquired along.
    """

    affine: np.ndarray  # (4, 4)
    shape: tuple[int, int, int]
    slice_axis: int
    acquisition: str  # "2D" | "3D"

    def __post_init__(self) -> None:
        if not np.all(np.isfinite(self.affine)) or abs(np.linalg.det(self.affine[:3, :3])) < 1e-9:
            raise GeometryError("the affine is missing or singular: no geometry")

    @functools.cached_property
    def ornt(self) -> np.ndarray:
        """``io_orientation``: per stored axis, (nearest RAS axis, direction)."""
        directions = self.affine[:3, :3] / np.linalg.norm(self.affine[:3, :3], axis=0)
        return _nearest_axes(directions.tobytes()).copy()

    @property
    def acquired_plane(self) -> str:
        """The plane of the acquired slices: the canonical axis their axis runs along."""
        return PLANES[int(self.ornt[self.slice_axis, 0])]

    @property
    def slice_spacing_mm(self) -> float:
        """Distance between acquired slice planes (along their normal, not along a sheared axis)."""
        others = [a for a in range(3) if a != self.slice_axis]
        normal = _unit(cross(self.affine[:3, others[0]], self.affine[:3, others[1]]))
        return abs(float(self.affine[:3, self.slice_axis] @ normal))

    @property
    def pixel_spacing_mm(self) -> tuple[float, float]:
        """Voxel sizes along the two in-plane stored axes of the acquired slices."""
        sizes = np.linalg.norm(self.affine[:3, :3], axis=0)
        a, b = (a for a in range(3) if a != self.slice_axis)
        return float(sizes[a]), float(sizes[b])

    @functools.cached_property
    def obliquity_deg(self) -> float:
        """Largest angle between a voxel axis and the canonical axis it is taken along."""
        directions = self.affine[:3, :3] / np.linalg.norm(self.affine[:3, :3], axis=0)
        cosines = [abs(directions[int(self.ornt[a, 0]), a]) for a in range(3)]
        return float(np.degrees(np.arccos(np.clip(min(cosines), 0.0, 1.0))))

    def check_obliquity(self) -> None:
        """Refuse a volume too oblique for its slices to be named axial, coronal or sagittal."""
        angle = self.obliquity_deg
        if angle > MAX_OBLIQUE_DEG:
            raise GeometryError(
                f"orientation is too oblique to tell axial, coronal or sagittal: a voxel axis "
                f"lies {angle:.0f} degrees from the nearest canonical axis (at most "
                f"{MAX_OBLIQUE_DEG:.0f} are taken along the nearest axes)"
            )


def _direction(code: str) -> np.ndarray:
    """RAS unit vector an axis code points to ("L" -> -x)."""
    axis, sign = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}[
        code
    ]
    out = np.zeros(3)
    out[axis] = sign
    return out


@dataclass(frozen=True)
class PlaneView:
    """The slices of one plane of a volume, in the canonical view, and where each lies.

    ``transform`` is nibabel's orientation transform from the stored grid to the view
    ``(slices, rows, cols)``; ``affine`` maps view indices to RAS mm.
    """

    plane: str
    transform: np.ndarray  # (3, 2): stored axis -> (view axis, flip)
    stored_shape: tuple[int, int, int]
    affine: np.ndarray  # (4, 4)
    positions_mm: np.ndarray  # (n,), strictly increasing along the view's slice normal

    # Derived values are computed once a view (cached_property writes past the frozen
    # dataclass's __setattr__): a subject's stack reads them a dozen times, at 3-20 us each.
    @functools.cached_property
    def slice_axis(self) -> int:
        """The stored axis the view's slices run along."""
        return int(np.flatnonzero(self.transform[:, 0] == 0)[0])

    @functools.cached_property
    def n_slices(self) -> int:
        return self.stored_shape[self.slice_axis]

    @functools.cached_property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of one view slice."""
        out = [0, 0, 0]
        for axis, (view_axis, _) in enumerate(self.transform):
            out[int(view_axis)] = self.stored_shape[axis]
        return out[1], out[2]

    @functools.cached_property
    def pixel_spacing_mm(self) -> tuple[float, float]:
        """(row spacing, column spacing) of a view slice, mm."""
        sizes = np.linalg.norm(self.affine[:3, 1:3], axis=0)
        return float(sizes[0]), float(sizes[1])

    @functools.cached_property
    def spacing_mm(self) -> float:
        """Median distance between consecutive view slices, mm."""
        return median(np.diff(self.positions_mm)) if self.n_slices > 1 else 0.0

    def stored_indices(self, indices: Sequence[int]) -> list[int]:
        """Stored indices along :attr:`slice_axis` of view slices ``indices``."""
        flipped = self.transform[self.slice_axis, 1] < 0
        return [self.n_slices - 1 - int(i) if flipped else int(i) for i in indices]

    def orient(self, block: np.ndarray) -> np.ndarray:
        """A stored-layout block holding the requested slices along :attr:`slice_axis` (in the
        order asked) -> ``(k, rows, cols)`` in the canonical view."""
        transform = self.transform.copy()
        transform[self.slice_axis, 1] = 1  # the indices are already in view order
        return np.ascontiguousarray(apply_orientation(block, transform), dtype=np.float32)


def _view_transform(
    ornt: bytes, plane: str, shape: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """nibabel's ``ornt_transform`` from a stored orientation (a (3, 2) float64 buffer) to
    ``plane``'s view, and its ``inv_ornt_aff`` for ``shape``; copies of memoized values.

    Why: the two cost about 35 us a series (``inv_ornt_aff`` builds and inverts affines), and a
    cohort's series share a handful of orientations and shapes.
    """
    transform, to_view = _memo_view_transform(ornt, plane, shape)
    return transform.copy(), to_view.copy()


@functools.lru_cache(maxsize=256)
def _memo_view_transform(
    ornt: bytes, plane: str, shape: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    stored = np.frombuffer(ornt, dtype=np.float64).reshape(3, 2)
    transform = ornt_transform(stored, _VIEW_ORNT[plane])
    return transform, inv_ornt_aff(transform, shape)


def plane_view(geometry: VolumeGeometry, plane: str) -> PlaneView:
    """The canonical view of ``plane`` of ``geometry`` (raises :class:`GeometryError`)."""
    geometry.check_obliquity()
    stored = np.ascontiguousarray(geometry.ornt, dtype=np.float64).tobytes()
    shape = tuple(int(n) for n in geometry.shape)
    transform, to_view = _view_transform(stored, plane, shape)  # type: ignore[arg-type]
    affine = geometry.affine @ to_view
    normal = _unit(cross(affine[:3, 1], affine[:3, 2]))
    if normal @ _direction(VIEW_AXCODES[plane][0]) < 0:
        normal = -normal
    n = geometry.shape[int(np.flatnonzero(transform[:, 0] == 0)[0])]
    origins = affine[:3, 3][None, :] + np.arange(n)[:, None] * affine[:3, 0][None, :]
    positions = origins @ normal
    if n > 1 and np.any(np.diff(positions) <= 0):
        raise GeometryError(f"the affine does not give increasing {plane} positions (sheared?)")
    return PlaneView(plane, transform, geometry.shape, affine, positions)


def acquisition_kind(
    declared: str | None,
    slice_spacing_mm: float,
    pixel_spacing_mm: Sequence[float],
    thickness_mm: float | None = None,
) -> str:
    """ "3D" or "2D": MRAcquisitionType when declared, else near-isotropic contiguous voxels."""
    declared = (declared or "").strip().upper()
    if declared in ("2D", "3D"):
        return declared
    isotropic = slice_spacing_mm <= ISOTROPIC_RATIO * max(pixel_spacing_mm)
    contiguous = thickness_mm is None or thickness_mm >= CONTIGUOUS_FRACTION * slice_spacing_mm
    return "3D" if isotropic and contiguous else "2D"


def dicom_affine(
    orientation: Sequence[float],
    pixel_spacing: Sequence[float],
    first_position: Sequence[float],
    slice_step: Sequence[float],
) -> np.ndarray:
    """RAS affine of a DICOM series stored as ``(rows, cols, frames)`` (nibabel.nicom's layout).

    Row index runs along the column direction (ImageOrientationPatient[3:]) by PixelSpacing[0],
    column index along the row direction ([:3]) by PixelSpacing[1], frame index by
    ``slice_step`` (mm between consecutive sorted frame origins, LPS).
    """
    iop = np.asarray(orientation, dtype=np.float64)
    lps = np.eye(4)
    lps[:3, 0] = iop[3:] * float(pixel_spacing[0])
    lps[:3, 1] = iop[:3] * float(pixel_spacing[1])
    lps[:3, 2] = np.asarray(slice_step, dtype=np.float64)
    lps[:3, 3] = np.asarray(first_position, dtype=np.float64)
    return LPS_TO_RAS @ lps


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """Unit normal (LPS) of slices with this ImageOrientationPatient; raises for bad vectors."""
    iop = np.asarray(orientation, dtype=np.float64)
    if iop.shape != (6,) or not np.all(np.isfinite(iop)):
        raise GeometryError(f"ImageOrientationPatient must be 6 numbers, got {list(orientation)}")
    across, down = iop[:3], iop[3:]
    if min(np.linalg.norm(across), np.linalg.norm(down)) < 1e-6:
        raise GeometryError("ImageOrientationPatient has a zero-length direction")
    across, down = _unit(across), _unit(down)
    if abs(float(across @ down)) > 1e-2:
        raise GeometryError("ImageOrientationPatient row and column directions are not orthogonal")
    return _unit(cross(across, down))


def same_orientation(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when two ImageOrientationPatient values describe the same plane directions."""
    return bool(
        np.max(np.abs(np.asarray(a, float) - np.asarray(b, float))) <= ORIENTATION_TOLERANCE
    )


def positions_along(normal: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Project ``(n, 3)`` slice origins (ImagePositionPatient) on the slice normal, in mm."""
    return np.asarray(points, dtype=np.float64) @ np.asarray(normal, dtype=np.float64)


def median(values: np.ndarray) -> float:
    """``np.median`` of a non-empty, NaN-free 1-D array, in float64.

    The same value (the mean of the middle two for an even count) from ``statistics.median``:
    1.4 against 18 us on the 43 steps of a 44-slice series, paid twice a series.
    """
    return float(statistics.median(np.asarray(values, dtype=np.float64).tolist()))


def spacing_problem(sorted_positions: np.ndarray, tolerance: float) -> str | None:
    """Why sorted, distinct positions do not form an evenly spaced stack, or None if they do.

    ``tolerance`` is relative to the median spacing: 0.05 allows steps 5 % off the median.
    """
    steps = np.diff(np.asarray(sorted_positions, dtype=np.float64))
    if steps.size == 0:
        return None
    typical = median(steps)
    off = np.abs(steps - typical) > tolerance * typical
    if not off.any():
        return None
    worst = int(np.argmax(np.abs(steps - typical)))
    lo, hi = sorted_positions[worst], sorted_positions[worst + 1]
    kind = "a gap" if steps[worst] > typical else "uneven spacing"
    return (
        f"{kind} in the slice positions: {steps[worst]:.2f} mm between {lo:.2f} and {hi:.2f} mm "
        f"where the median step is {typical:.2f} mm ({int(off.sum())} uneven step(s); missing "
        f"files or a mixed export? tolerance series.spacing_tolerance={tolerance})"
    )
