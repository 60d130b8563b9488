"""Where a synthetic head sits in the scanner, and where the slices we write cut through it.

Two coordinate systems meet here:

- the DICOM *patient* system (LPS: +x to the patient's left, +y posterior, +z superior, mm), in
  which ImagePositionPatient and ImageOrientationPatient are written;
- the MNI template system (RAS, mm), in which the anatomy is defined.

:class:`HeadPose` maps one to the other (head size, rotation, position); :class:`SliceGeometry`
holds the planes of a series, one row per slice, exactly as they are written to the headers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: RAS <-> LPS: flip x and y.
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])

#: Geometry is rounded to what the headers can hold before any pixel is drawn, so the written
#: ImagePositionPatient/ImageOrientationPatient describe the pixels exactly.
ORIGIN_DECIMALS = 4
DIRECTION_DECIMALS = 6


def rotation_matrix(angles_deg: np.ndarray) -> np.ndarray:
    """Rotation about the x (nod), y (roll) and z (turn) axes, applied in that order."""
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class HeadPose:
    """A subject's head in the scanner: ``patient = R @ (S * LPS(template - centre)) + position``.

    ``centre`` is the template point (RAS) that lands at ``position`` (LPS); ``scale`` is the
    head size along the template's x, y, z axes.
    """

    rotation: np.ndarray  # (3, 3), acts in LPS
    scale: np.ndarray  # (3,)
    position: np.ndarray  # (3,) LPS mm
    centre: np.ndarray  # (3,) RAS mm

    def template_to_patient(self, ras: np.ndarray) -> np.ndarray:
        """``(..., 3)`` template RAS points -> patient LPS points."""
        local = (np.asarray(ras) - self.centre) * self.scale
        return (local @ RAS_TO_LPS.T) @ self.rotation.T + self.position

    def patient_to_template(self, lps: np.ndarray) -> np.ndarray:
        """``(..., 3)`` patient LPS points -> template RAS points (before any deformation)."""
        local = ((np.asarray(lps) - self.position) @ self.rotation) @ RAS_TO_LPS
        return local / self.scale + self.centre


@dataclass(frozen=True)
class SliceGeometry:
    """The planes of one series, as written to the headers (one row per slice, file order).

    Pixel ``(r, c)`` of slice ``k`` sits at ``origins[k] + c * spacing[1] * row_dirs[k]
    + r * spacing[0] * col_dirs[k]`` (DICOM: ImageOrientationPatient is ``row_dirs`` then
    ``col_dirs``; PixelSpacing is (row spacing, column spacing)).
    """

    origins: np.ndarray  # (n, 3) ImagePositionPatient
    row_dirs: np.ndarray  # (n, 3) direction of increasing column index
    col_dirs: np.ndarray  # (n, 3) direction of increasing row index
    rows: int
    cols: int
    pixel_spacing: tuple[float, float]  # (between rows, between columns) mm
    thickness: float

    @property
    def n_slices(self) -> int:
        return len(self.origins)

    @property
    def normals(self) -> np.ndarray:
        """``row_dirs x col_dirs`` per slice (the DICOM slice normal)."""
        return np.cross(self.row_dirs, self.col_dirs)

    def pixel_points(self, step: int = 1) -> tuple[np.ndarray, tuple[int, int]]:
        """Patient coordinates of a grid of pixels, ``(n, nr, nc, 3)``, and ``(nr, nc)``.

        ``step > 1`` gives a coarse grid whose first and last points are the first and last
        pixels, so bilinear upsampling with ``align_corners=True`` lands exactly on every pixel.
        """
        nr = (self.rows - 1 + step - 1) // step + 1
        nc = (self.cols - 1 + step - 1) // step + 1
        r = np.linspace(0, self.rows - 1, nr) * self.pixel_spacing[0]
        c = np.linspace(0, self.cols - 1, nc) * self.pixel_spacing[1]
        pts = (
            self.origins[:, None, None, :]
            + c[None, None, :, None] * self.row_dirs[:, None, None, :]
            + r[None, :, None, None] * self.col_dirs[:, None, None, :]
        )
        return pts, (nr, nc)


def _plane_origin(
    centre: np.ndarray,
    row_dir: np.ndarray,
    col_dir: np.ndarray,
    rows: int,
    cols: int,
    spacing: tuple[float, float],
) -> np.ndarray:
    """ImagePositionPatient (centre of the first pixel) of a plane centred on ``centre``."""
    half_width = 0.5 * (cols - 1) * spacing[1]
    half_height = 0.5 * (rows - 1) * spacing[0]
    return centre - half_width * row_dir - half_height * col_dir


def _slab(
    centre: np.ndarray,
    step_dir: np.ndarray,
    row_dir: np.ndarray,
    col_dir: np.ndarray,
    *,
    n_slices: int,
    spacing_mm: float,
    thickness_mm: float,
    rows: int,
    cols: int,
    pixel_mm: float,
) -> SliceGeometry:
    """``n_slices`` parallel planes centred on ``centre``, ``spacing_mm`` apart along
    ``step_dir``, rounded to what the headers hold."""
    spacing = (pixel_mm, pixel_mm)
    offsets = (np.arange(n_slices) - 0.5 * (n_slices - 1)) * spacing_mm
    origins = np.stack(
        [
            _plane_origin(centre + o * step_dir, row_dir, col_dir, rows, cols, spacing)
            for o in offsets
        ]
    )
    return SliceGeometry(
        origins=np.round(origins, ORIGIN_DECIMALS),
        row_dirs=np.tile(np.round(row_dir, DIRECTION_DECIMALS), (n_slices, 1)),
        col_dirs=np.tile(np.round(col_dir, DIRECTION_DECIMALS), (n_slices, 1)),
        rows=rows,
        cols=cols,
        pixel_spacing=spacing,
        thickness=thickness_mm,
    )


def axial_stack(
    *,
    centre: np.ndarray,
    n_slices: int,
    spacing_mm: float,
    thickness_mm: float,
    rows: int,
    cols: int,
    pixel_mm: float,
    tilt_deg: float = 0.0,
    mirrored: bool = False,
) -> SliceGeometry:
    """An axial (optionally oblique) stack of parallel slices centred on ``centre`` (LPS).

    Slices are returned from inferior to superior. ``tilt_deg`` tilts the slab about the
    left-right axis (as for AC-PC aligned acquisitions). ``mirrored`` flips the row direction, as
    some scanners do for feet-first patients; the DICOM normal then points to the feet.
    """
    t = np.deg2rad(tilt_deg)
    row_dir = np.array([1.0, 0.0, 0.0])
    col_dir = np.array([0.0, np.cos(t), np.sin(t)])
    up = np.cross(row_dir, col_dir)  # superior, whatever the mirroring
    if mirrored:
        row_dir = -row_dir
    return _slab(
        centre,
        up,
        row_dir,
        col_dir,
        n_slices=n_slices,
        spacing_mm=spacing_mm,
        thickness_mm=thickness_mm,
        rows=rows,
        cols=cols,
        pixel_mm=pixel_mm,
    )


def three_plane_localizer(
    *, centre: np.ndarray, size: int = 256, pixel_mm: float = 1.1, thickness_mm: float = 8.0
) -> SliceGeometry:
    """A scout series: one sagittal, one coronal and one axial slice through ``centre``."""
    planes = [
        (np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0])),  # sagittal
        (np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, -1.0])),  # coronal
        (np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])),  # axial
    ]
    spacing = (pixel_mm, pixel_mm)
    return SliceGeometry(
        origins=np.round(
            np.stack([_plane_origin(centre, r, c, size, size, spacing) for r, c in planes]),
            ORIGIN_DECIMALS,
        ),
        row_dirs=np.stack([r for r, _ in planes]),
        col_dirs=np.stack([c for _, c in planes]),
        rows=size,
        cols=size,
        pixel_spacing=spacing,
        thickness=thickness_mm,
    )


def sagittal_volume(
    *,
    centre: np.ndarray,
    n_slices: int,
    spacing_mm: float,
    thickness_mm: float,
    rows: int,
    cols: int,
    pixel_mm: float,
    tilt_deg: float = 0.0,
    mirrored: bool = False,
) -> SliceGeometry:
    """A 3D sagittal slab (contiguous frames) centred on ``centre`` (LPS), as an MP-RAGE is.

    Frames run from the patient's right to left; in each, columns run anterior to posterior and
    rows head to feet (the usual export). ``tilt_deg`` rotates the slab about the front-back
    axis (an oblique sagittal); ``mirrored`` flips the column direction (posterior to
    anterior), as some exports of feet-first patients do.
    """
    t = np.deg2rad(tilt_deg)
    tilt = np.array([[np.cos(t), 0.0, np.sin(t)], [0.0, 1.0, 0.0], [-np.sin(t), 0.0, np.cos(t)]])
    row_dir = tilt @ np.array([0.0, 1.0, 0.0])  # across the columns: posterior
    col_dir = tilt @ np.array([0.0, 0.0, -1.0])  # down the rows: the feet
    left = tilt @ np.array([1.0, 0.0, 0.0])
    if mirrored:
        row_dir = -row_dir
    return _slab(
        centre,
        left,
        row_dir,
        col_dir,
        n_slices=n_slices,
        spacing_mm=spacing_mm,
        thickness_mm=thickness_mm,
        rows=rows,
        cols=cols,
        pixel_mm=pixel_mm,
    )
