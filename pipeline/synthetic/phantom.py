"""Small DICOM and NIfTI exports of a known volume, for tests and benchmarks.

The demo generator (:func:`pipeline.synthetic.generate_cohort`) draws realistic subjects and
folder mess; this module writes exactly what its caller asks for, so a test can compare what a
reader returns with the truth. It is the one DICOM writer of the test suite and the benchmarks.

Every header value is derived from a :class:`Volume`: the physical pixel values in the canonical
view of :mod:`pipeline.preprocess.stack` plus where each voxel sits in the patient (LPS). An
export then stores those pixels as a scanner might (:class:`Layout`: flipped, transposed; slices
in any order, any file names), computing ImageOrientationPatient and ImagePositionPatient from
the voxel coordinates, so a correct reader gets the canonical volume back whatever the export.

Every file carries the made-up identifying values :data:`PHI`, and every UID starts with
:data:`UID_PREFIX`, so tests can check that none of them reaches an output.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

from pipeline.synthetic.export import set_pixel_data

#: Identifying values planted in every header; no output may contain any of them.
PHI = {
    "PatientName": "Doe^Jane^Q",
    "PatientID": "PHI-ID-998877",
    "PatientBirthDate": "19380517",
    "InstitutionName": "St Elsewhere Memorial",
    "ReferringPhysicianName": "House^Gregory",
}
#: Prefix of every UID written here (UIDs must not leak either).
UID_PREFIX = "1.2.826.0.1.3680043.10.999."
ENHANCED_MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"


def new_uid() -> str:
    """A fresh UID under :data:`UID_PREFIX`."""
    return str(generate_uid(UID_PREFIX))


@dataclass
class Volume:
    """Ground truth: canonical pixels and the LPS position of every voxel.

    ``values[k, r, c]``: k runs towards the head, r anterior -> posterior, c right -> left.
    ``axes`` columns are the LPS unit directions of the c, r and k index axes (identity: a
    straight axial volume); ``origin`` is the LPS position of voxel (0, 0, 0).
    """

    values: np.ndarray
    spacing: tuple[float, float, float] = (4.0, 1.0, 1.25)  # (slice, row, column) in mm
    origin: tuple[float, float, float] = (-20.0, -18.0, -40.0)
    axes: np.ndarray = field(default_factory=lambda: np.eye(3))

    @property
    def n(self) -> int:
        return self.values.shape[0]

    def slice_coordinates(self, k: int) -> np.ndarray:
        """(rows, cols, 3) LPS coordinates of the voxel centres of slice ``k``."""
        _, rows, cols = self.values.shape
        dz, dr, dc = self.spacing
        r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        steps = np.stack([c * dc, r * dr, np.full_like(r, k) * dz], axis=-1)
        return np.asarray(self.origin) + steps @ self.axes.T

    def coordinates(self) -> np.ndarray:
        """(n, rows, cols, 3) LPS coordinates of every voxel centre."""
        return np.stack([self.slice_coordinates(k) for k in range(self.n)])

    def positions(self) -> np.ndarray:
        """Expected positions along the slice normal (towards the head), in mm."""
        normal = np.cross(self.axes[:, 0], self.axes[:, 1])
        normal = normal if normal[2] >= 0 else -normal
        return np.array([self.slice_coordinates(k)[0, 0] @ normal for k in range(self.n)])


@dataclass(frozen=True)
class Layout:
    """How an export stores a canonical slice: transpose first, then flips."""

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    def store(self, image: np.ndarray) -> np.ndarray:
        out = np.swapaxes(image, 0, 1) if self.transpose else image
        if self.flip_rows:
            out = out[::-1]
        if self.flip_cols:
            out = out[:, ::-1]
        return np.ascontiguousarray(out)


#: Stored as canonical: columns towards the patient's left, rows towards the back.
STRAIGHT = Layout()
#: A typical feet-first export: columns run towards the patient's right.
FEET_FIRST = Layout(flip_cols=True)


def make_volume(
    n: int = 8,
    rows: int = 24,
    cols: int = 20,
    seed: int = 0,
    slope: float = 1.0,
    intercept: float = 0.0,
    **kwargs: Any,
) -> Volume:
    """Random pixels with a per-slice offset (slice order is visible), exactly representable as
    ``stored * slope + intercept`` with small non-negative stored integers."""
    rng = np.random.default_rng(seed)
    offsets = (97 * np.arange(n)) % 3100  # distinct per slice, and within 12 bits
    stored = rng.integers(0, 900, size=(n, rows, cols)) + offsets[:, None, None]
    return Volume(values=stored.astype(np.float64) * slope + intercept, **kwargs)


def head_volume(n: int, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """(n, rows, cols) uint16: an ellipsoidal "head", brightest in its middle slices, with a
    dark subject-specific "ventricle", on a noisy background (12-bit values)."""
    rng = np.random.default_rng(seed)
    k = np.linspace(-1.0, 1.0, n)[:, None, None]
    yy, xx = np.mgrid[:rows, :cols]
    yy = (yy - (rows - 1) / 2) / (rows * 0.42)
    xx = (xx - (cols - 1) / 2) / (cols * 0.38)
    head = (yy**2 + xx**2 + (k * 0.9) ** 2) <= 1.0
    ventricle = (yy / 0.25) ** 2 + (xx / (0.1 + 0.05 * rng.random())) ** 2 + (k / 0.5) ** 2 <= 1
    volume = np.abs(rng.normal(0, 15, (n, rows, cols)))
    volume[head] += 600 + 100 * rng.random()
    volume[ventricle & head] -= 400
    return np.clip(volume, 0, 4000).astype(np.uint16)


def axial_volume(
    pixels: np.ndarray,
    *,
    spacing: float = 4.0,
    pixel_spacing: float = 2.0,
    origin: tuple[float, float, float] = (-40.0, -40.0, -20.0),
) -> Volume:
    """A straight axial :class:`Volume` of ``pixels`` (n, rows, cols): slice k at
    ``origin[2] + k * spacing`` mm along the normal."""
    return Volume(
        values=np.asarray(pixels, dtype=np.float64),
        spacing=(spacing, pixel_spacing, pixel_spacing),
        origin=origin,
    )


def _base_dataset(sop_class: str, transfer_syntax: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = new_uid()
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    for keyword, value in PHI.items():
        setattr(ds, keyword, value)
    ds.StudyDate, ds.StudyTime = "20200102", "101500"
    return ds


def _stored_values(
    values: np.ndarray, slope: float, intercept: float, signed: bool, monochrome1: bool, bits: int
) -> np.ndarray:
    stored = np.rint((values - intercept) / slope)
    if not np.allclose(stored * slope + intercept, values):
        raise ValueError("values not representable as stored * slope + intercept: see make_volume")
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    if stored.min() < low or stored.max() > high:
        raise ValueError(f"values do not fit {bits} bits")
    if monochrome1:
        stored = (low + high) - stored
    return stored.astype(np.int16 if signed else np.uint16)


def _orientation(coords: np.ndarray) -> tuple[list[float], list[float], list[float]]:
    """IOP, IPP and PixelSpacing of a stored slice from its (rows, cols, 3) coordinates."""
    across = coords[0, 1] - coords[0, 0]
    down = coords[1, 0] - coords[0, 0]
    iop = [*(across / np.linalg.norm(across)), *(down / np.linalg.norm(down))]
    return (
        [round(float(v), 6) for v in iop],
        [round(float(v), 4) for v in coords[0, 0]],
        [float(np.linalg.norm(down)), float(np.linalg.norm(across))],
    )


def _stored_coordinates(volume: Volume, k: int, layout: Layout) -> np.ndarray:
    coords = volume.slice_coordinates(k)
    return np.stack([layout.store(coords[..., i]) for i in range(3)], axis=-1)


def _file_name(names: str, position: int, rng: random.Random) -> str:
    """The file name of the ``position``-th file written, in the ``names`` style."""
    if names == "random":
        return f"{rng.getrandbits(40):010x}.dcm"
    if names == "bare":
        return f"IM{position:04d}"
    return f"slice_{position:03d}.dcm"


def _slice_order(n: int, order: str, rng: random.Random) -> list[int]:
    """Slice indices k in the order their files (or frames) are written."""
    ks = list(range(n))
    if order == "descending":
        ks.reverse()
    elif order == "shuffled":
        rng.shuffle(ks)
    return ks


def _instance_numbers(slice_order: list[int], style: str, rng: random.Random) -> list[int]:
    """InstanceNumber of each file, in file order (``file``, ``shuffled`` or ``geometric``)."""
    numbers = list(range(1, len(slice_order) + 1))
    if style == "shuffled":
        rng.shuffle(numbers)
    if style == "geometric":  # numbered by slice index k, whatever order the files are in
        return [numbers[k] for k in slice_order]
    return numbers


@dataclass(frozen=True)
class _SeriesHeader:
    """The series-level header values that every file of one series carries."""

    study_uid: str
    series_uid: str
    modality: str
    description: str
    number: int
    image_type: tuple[str, ...]

    def apply(self, ds: Dataset) -> None:
        """Set these values on ``ds``."""
        ds.StudyInstanceUID, ds.SeriesInstanceUID = self.study_uid, self.series_uid
        ds.Modality, ds.SeriesDescription = self.modality, self.description
        ds.SeriesNumber = self.number
        ds.ImageType = list(self.image_type)  # a fresh list: an edit of one file stays there


@dataclass(frozen=True)
class _PixelEncoding:
    """How physical values are stored: rescale, sign, polarity and bits stored."""

    slope: float
    intercept: float
    signed: bool
    monochrome1: bool
    bits: int

    def stored(self, values: np.ndarray) -> np.ndarray:
        """The stored integers of a slice of physical ``values``."""
        return _stored_values(
            values, self.slope, self.intercept, self.signed, self.monochrome1, self.bits
        )

    def describe(self, ds: Dataset, rows: int, cols: int) -> None:
        """Set the image pixel module of ``ds`` (size, photometric, bits) for this encoding."""
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME1" if self.monochrome1 else "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, self.bits, self.bits - 1
        ds.PixelRepresentation = 1 if self.signed else 0


def _slice_dataset(
    volume: Volume,
    k: int,
    layout: Layout,
    header: _SeriesHeader,
    encoding: _PixelEncoding,
    instance_number: int,
    transfer_syntax: str,
) -> Dataset:
    """The single-frame MR dataset of slice ``k``, stored as ``layout`` says."""
    ds = _base_dataset(MRImageStorage, ExplicitVRLittleEndian)
    header.apply(ds)
    ds.InstanceNumber = instance_number
    ds.ImageOrientationPatient, ds.ImagePositionPatient, ds.PixelSpacing = _orientation(
        _stored_coordinates(volume, k, layout)
    )
    ds.SliceThickness = volume.spacing[0]
    pixels = encoding.stored(layout.store(volume.values[k]))
    encoding.describe(ds, *pixels.shape)
    if encoding.slope != 1.0 or encoding.intercept != 0.0:  # identity rescale: left out
        ds.RescaleSlope, ds.RescaleIntercept = encoding.slope, encoding.intercept
    # Last, as a compressed syntax encodes from the header values set above.
    set_pixel_data(ds, pixels, transfer_syntax)
    return ds


def _shared_functional_groups(volume: Volume, layout: Layout, encoding: _PixelEncoding) -> Dataset:
    """The enhanced file's shared functional groups: orientation, pixel measures, rescale."""
    iop, _, spacing = _orientation(_stored_coordinates(volume, 0, layout))
    orientation, measures, transform = Dataset(), Dataset(), Dataset()
    orientation.ImageOrientationPatient = iop
    measures.PixelSpacing, measures.SliceThickness = spacing, volume.spacing[0]
    transform.RescaleSlope, transform.RescaleIntercept = encoding.slope, encoding.intercept
    transform.RescaleType = "US"
    shared = Dataset()
    shared.PlaneOrientationSequence = [orientation]
    shared.PixelMeasuresSequence = [measures]
    shared.PixelValueTransformationSequence = [transform]
    return shared


def _frame_functional_group(volume: Volume, k: int, layout: Layout) -> Dataset:
    """The per-frame functional group of slice ``k``: its plane position."""
    _, ipp, _ = _orientation(_stored_coordinates(volume, k, layout))
    position, item = Dataset(), Dataset()
    position.ImagePositionPatient = ipp
    item.PlanePositionSequence = [position]
    return item


@dataclass
class DicomWriter:
    """Writes exports of a :class:`Volume` (see the module docstring).

    The helpers ride along as attributes, so a test needs only this object:
    ``w.make_volume(n=44)``, ``w.Layout(flip_cols=True)``, ``w.FEET_FIRST``, ``w.PHI``.
    """

    Volume = Volume
    Layout = Layout
    FEET_FIRST = FEET_FIRST
    PHI = PHI
    make_volume = staticmethod(make_volume)

    #: Series written without an explicit ``study_uid`` share this one: one visit.
    study_uid: str = field(default_factory=new_uid)

    def series(
        self,
        folder: Path,
        volume: Volume,
        *,
        layout: Layout = STRAIGHT,
        order: str = "ascending",  # ascending | descending | shuffled (file/instance order)
        names: str = "numbered",  # numbered | random | bare (no extension)
        instance_numbers: str = "file",  # file: follow file order | shuffled | geometric
        description: str = "T1 MPRAGE",
        modality: str = "MR",
        series_uid: str | None = None,
        study_uid: str | None = None,
        series_number: int = 3,
        slope: float = 1.0,
        intercept: float = 0.0,
        signed: bool = False,
        monochrome1: bool = False,
        bits_stored: int = 12,
        transfer_syntax: str = ExplicitVRLittleEndian,
        seed: int = 0,
        edit: Callable[[Dataset, int], None] | None = None,
    ) -> list[Path]:
        """One single-frame file per slice; returns the paths in slice (k) order.

        ``edit(ds, k)`` runs last on each slice's dataset, so it may replace anything.
        """
        folder.mkdir(parents=True, exist_ok=True)
        rng = random.Random(seed)
        header = _SeriesHeader(
            study_uid or self.study_uid,
            series_uid or new_uid(),
            modality,
            description,
            series_number,
            ("ORIGINAL", "PRIMARY", "M", "ND"),
        )
        encoding = _PixelEncoding(
            slope, intercept, signed, monochrome1, bits=16 if signed else bits_stored
        )
        # Drawn in this order (files, instance numbers, names) so that a seed keeps its export.
        file_order = _slice_order(volume.n, order, rng)
        numbers = _instance_numbers(file_order, instance_numbers, rng)
        file_names = [_file_name(names, position, rng) for position in range(volume.n)]
        paths: dict[int, Path] = {}
        for position, k in enumerate(file_order):
            ds = _slice_dataset(
                volume, k, layout, header, encoding, numbers[position], transfer_syntax
            )
            if edit is not None:
                edit(ds, k)
            paths[k] = folder / file_names[position]
            dcmwrite(paths[k], ds, enforce_file_format=True)
        return [paths[k] for k in range(volume.n)]

    def enhanced(
        self,
        path: Path,
        volume: Volume,
        *,
        layout: Layout = STRAIGHT,
        order: str = "shuffled",
        slope: float = 2.0,
        intercept: float = -10.0,
        stray_top_level_position: bool = False,
        seed: int = 0,
    ) -> Path:
        """One enhanced MR multi-frame file, frames in ``order``, geometry in functional groups."""
        rng = random.Random(seed)
        encoding = _PixelEncoding(slope, intercept, signed=False, monochrome1=False, bits=12)
        ds = _base_dataset(ENHANCED_MR_STORAGE, ExplicitVRLittleEndian)
        _SeriesHeader(
            self.study_uid,
            new_uid(),
            "MR",
            "3D T1 enhanced",
            7,
            ("ORIGINAL", "PRIMARY", "M", "NONE"),
        ).apply(ds)
        frame_order = _slice_order(volume.n, order, rng)
        ds.SharedFunctionalGroupsSequence = [_shared_functional_groups(volume, layout, encoding)]
        ds.PerFrameFunctionalGroupsSequence = [
            _frame_functional_group(volume, k, layout) for k in frame_order
        ]
        if stray_top_level_position:
            ds.ImagePositionPatient = [0.0, 0.0, 0.0]  # a misleading copy some exporters add
        pixels = np.stack([encoding.stored(layout.store(volume.values[k])) for k in frame_order])
        ds.NumberOfFrames = len(frame_order)
        encoding.describe(ds, *pixels.shape[1:])
        ds.PixelData = pixels.tobytes()
        path.parent.mkdir(parents=True, exist_ok=True)
        dcmwrite(path, ds, enforce_file_format=True)
        return path

    @staticmethod
    def nifti(path: Path, volume: Volume, *, voxel_order: str = "crk") -> Path:
        """The volume as NIfTI (RAS affine). ``voxel_order`` permutes the stored axes: "crk"
        stores (column, row, slice) like a DICOM-to-NIfTI converter, "kcr" puts slices first."""
        import nibabel as nib

        axis_of = {"c": 2, "r": 1, "k": 0}  # axes of volume.values
        perm = [axis_of[a] for a in voxel_order]
        data = np.transpose(volume.values, perm).astype(np.float32)
        dz, dr, dc = volume.spacing
        steps = {
            "c": volume.axes[:, 0] * dc,
            "r": volume.axes[:, 1] * dr,
            "k": volume.axes[:, 2] * dz,
        }
        affine = np.eye(4)
        affine[:3, :3] = np.stack([steps[a] for a in voxel_order], axis=1)
        affine[:3, 3] = volume.origin
        lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(data, lps_to_ras @ affine), path)
        return path
