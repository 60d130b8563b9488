"""Slice geometry: which plane a stack is in, how to turn its pixels to the canonical view, and
where each slice sits along the slice normal.

All vectors are in the DICOM patient coordinate system (LPS: +x towards the patient's left,
+y towards the back, +z towards the head). NIfTI (RAS) callers convert first; a position along a
normal (a dot product) is the same in both systems because both flip x and y.

Canonical view, per plane (radiological display, the convention of :mod:`.stack`):

=========  ====================  =======================  ==============================
plane      down the rows         across the columns       positions increase towards
=========  ====================  =======================  ==============================
axial      anterior → posterior  patient right → left     the head (+z)
coronal    head → feet           patient right → left     the back (+y)
sagittal   head → feet           anterior → posterior     the patient's left (+x)
=========  ====================  =======================  ==============================

An export's own row/column directions (ImageOrientationPatient) only decide which flips and
whether a transpose bring its pixels to that view, so a feet-first and a head-first export of one
head give the same stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Plane names, indexed by the LPS axis the slice normal is closest to.
PLANES = ("sagittal", "coronal", "axial")

#: Per plane: (LPS axis, sign) that image rows must run along when going down, and that columns
#: must run along when going right. Index = normal axis, as in PLANES.
_CANONICAL_DOWN_ACROSS = {
    2: ((1, 1), (0, 1)),  # axial: down = +y (posterior), across = +x (left)
    1: ((2, -1), (0, 1)),  # coronal: down = -z (feet), across = +x (left)
    0: ((2, -1), (1, 1)),  # sagittal: down = -z (feet), across = +y (posterior)
}

#: Two ImageOrientationPatient vectors count as the same when no component differs by more.
ORIENTATION_TOLERANCE = 1e-3

#: Two slices closer than this along the normal (mm) are at the same position.
SAME_POSITION_MM = 1e-2


class GeometryError(ValueError):
    """The geometry of a series cannot give a well-defined stack (the message says why)."""


@dataclass(frozen=True)
class InPlaneTransform:
    """Transpose then flip: turns a slice as stored into the canonical view."""

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Reorient the last two axes of ``image`` (one slice or a ``(k, rows, cols)`` block)."""
        out = np.swapaxes(image, -1, -2) if self.transpose else image
        if self.flip_rows:
            out = np.flip(out, axis=-2)
        if self.flip_cols:
            out = np.flip(out, axis=-1)
        return out

    def shape(self, rows: int, cols: int) -> tuple[int, int]:
        """The (rows, cols) of a slice after :meth:`apply`."""
        return (cols, rows) if self.transpose else (rows, cols)

    def spacing(self, row_spacing: float, col_spacing: float) -> tuple[float, float]:
        """The (row, column) pixel spacing after :meth:`apply`."""
        return (col_spacing, row_spacing) if self.transpose else (row_spacing, col_spacing)


@dataclass(frozen=True)
class StackFrame:
    """Where a stack lies in the patient: its plane, its canonical in-plane view and its normal."""

    plane: str
    transform: InPlaneTransform
    normal: np.ndarray  # unit slice normal (LPS), pointing the way positions increase


def _dominant_axis(vector: np.ndarray) -> tuple[int, int]:
    axis = int(np.argmax(np.abs(vector)))
    return axis, 1 if vector[axis] > 0 else -1


def stack_frame(orientation: Sequence[float]) -> StackFrame:
    """The canonical frame of a stack from its ImageOrientationPatient.

    ``orientation`` holds the row direction (the way the column index grows) then the column
    direction (the way the row index grows), as in DICOM. Raises :class:`GeometryError` for
    vectors that are not two orthogonal unit vectors or are too oblique to name a plane.
    """
    iop = np.asarray(orientation, dtype=np.float64)
    if iop.shape != (6,) or not np.all(np.isfinite(iop)):
        raise GeometryError(f"ImageOrientationPatient must be 6 numbers, got {list(orientation)}")
    across, down = iop[:3], iop[3:]
    norms = np.linalg.norm(across), np.linalg.norm(down)
    if min(norms) < 1e-6:
        raise GeometryError("ImageOrientationPatient has a zero-length direction")
    across, down = across / norms[0], down / norms[1]
    if abs(float(across @ down)) > 1e-2:
        raise GeometryError("ImageOrientationPatient row and column directions are not orthogonal")
    normal = np.cross(across, down)
    normal_axis, normal_sign = _dominant_axis(normal)
    (down_axis, down_sign), (across_axis, across_sign) = _CANONICAL_DOWN_ACROSS[normal_axis]
    stored_down, stored_across = _dominant_axis(down), _dominant_axis(across)
    if stored_down[0] == down_axis and stored_across[0] == across_axis:
        transform = InPlaneTransform(
            transpose=False,
            flip_rows=stored_down[1] != down_sign,
            flip_cols=stored_across[1] != across_sign,
        )
    elif stored_across[0] == down_axis and stored_down[0] == across_axis:
        # Stored columns run the way canonical rows should: transpose, then fix the signs.
        transform = InPlaneTransform(
            transpose=True,
            flip_rows=stored_across[1] != down_sign,
            flip_cols=stored_down[1] != across_sign,
        )
    else:
        raise GeometryError(
            "orientation is too oblique to tell axial, coronal or sagittal "
            f"(ImageOrientationPatient {np.round(iop, 3).tolist()})"
        )
    return StackFrame(PLANES[normal_axis], transform, normal * normal_sign)


def same_orientation(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when two ImageOrientationPatient values describe the same plane directions."""
    return bool(
        np.max(np.abs(np.asarray(a, float) - np.asarray(b, float))) <= ORIENTATION_TOLERANCE
    )


def positions_along(normal: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Project ``(n, 3)`` slice origins (ImagePositionPatient) on the slice normal, in mm."""
    return np.asarray(points, dtype=np.float64) @ np.asarray(normal, dtype=np.float64)


def spacing_problem(sorted_positions: np.ndarray, tolerance: float) -> str | None:
    """Why sorted, distinct positions do not form an evenly spaced stack, or None if they do.

    ``tolerance`` is relative to the median spacing: 0.05 allows steps 5 % off the median.
    """
    steps = np.diff(np.asarray(sorted_positions, dtype=np.float64))
    if steps.size == 0:
        return None
    median = float(np.median(steps))
    off = np.abs(steps - median) > tolerance * median
    if not off.any():
        return None
    worst = int(np.argmax(np.abs(steps - median)))
    lo, hi = sorted_positions[worst], sorted_positions[worst + 1]
    kind = "a gap" if steps[worst] > median else "uneven spacing"
    return (
        f"{kind} in the slice positions: {steps[worst]:.2f} mm between {lo:.2f} and {hi:.2f} mm "
        f"where the median step is {median:.2f} mm ({int(off.sum())} uneven step(s); missing "
        f"files or a mixed export? tolerance series.spacing_tolerance={tolerance})"
    )
