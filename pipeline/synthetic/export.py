"""Write a subject's series as an export a user might really receive: MR Image Storage DICOM
files with random names, in an ADNI-like, flat or PACS-like folder tree, sometimes beside a
scout series and a stray non-DICOM file.

Every value that could identify a person (name, patient id, birth date, accession number,
physicians) is made up here, differs from the folder's subject id, and is listed in the truth
file so that privacy tests can look for it in the pipeline's outputs.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pydicom.uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.valuerep import format_number_as_ds

from pipeline.synthetic.geometry import SliceGeometry
from pipeline.synthetic.scanner import Acquisition

# pylibjpeg-openjpeg logs every encoded tile at INFO; one line per slice drowns the run's log.
logging.getLogger("openjpeg").setLevel(logging.WARNING)

LAYOUTS = ("adni", "flat", "pacs")
INSTANCE_ORDERS = ("ascending", "descending", "interleaved")
STRAY_FILES = (".DS_Store", "Thumbs.db", "notes.txt", "export_log.txt")

_FIRST_NAMES = (
    "ADELINE",
    "BARNABY",
    "CORDELIA",
    "DESMOND",
    "EULALIA",
    "FITZGERALD",
    "GWENDOLYN",
    "HORATIO",
    "ISOLDE",
    "JEBEDIAH",
    "KESTREL",
    "LEOPOLDINE",
    "MORDECAI",
    "NERISSA",
    "OSWIN",
    "PERPETUA",
    "QUENTIN",
    "ROSALIND",
    "SEBASTIAN",
    "TABITHA",
    "ULYSSES",
    "VERITY",
    "WILHELMINA",
    "XAVIER",
)
_LAST_NAMES = (
    "ABERNATHY",
    "BLACKTHORNE",
    "CRUMWELL",
    "DUNSWORTH",
    "ELDERBERRY",
    "FAIRWEATHER",
    "GLENDOWER",
    "HAWTHORNE",
    "IRONSIDE",
    "JOLLIFFE",
    "KNIGHTLEY",
    "LOCKWOOD",
    "MERRIWEATHER",
    "NETHERCOTT",
    "OAKENSHAW",
    "PEMBERTON",
    "QUARRINGTON",
    "ROOKWOOD",
    "SHACKLEFORD",
    "THISTLEWOOD",
)
_TOKEN_CHARS = np.array(list(string.ascii_uppercase + string.digits))
_HEX = np.array(list("0123456789ABCDEF"))


def transfer_syntax_uid(keyword: str) -> pydicom.uid.UID:
    """``pydicom.uid`` keyword ("RLELossless") -> UID; a clear error for an unknown one."""
    uid = getattr(pydicom.uid, keyword, None)
    if not isinstance(uid, pydicom.uid.UID) or not uid.is_transfer_syntax:
        raise ValueError(f"{keyword!r} is not a pydicom.uid transfer syntax keyword")
    return uid


def token(rng: np.random.Generator, n: int, alphabet: np.ndarray = _TOKEN_CHARS) -> str:
    """A random string of ``n`` characters (file and folder names)."""
    return "".join(rng.choice(alphabet, size=n))


@dataclass(frozen=True)
class Identity:
    """Made-up patient and study details written to the headers (never a real person)."""

    patient_name: str
    patient_id: str
    birth_date: str  # YYYYMMDD
    sex: str  # M / F
    age_years: int
    study_date: str  # YYYYMMDD
    study_time: str  # HHMMSS
    accession: str
    referring_physician: str
    uid_seed: str  # entropy for this subject's UIDs (deterministic per subject seed)


def make_identity(rng: np.random.Generator, sex: str, age_years: float) -> Identity:
    """Draw made-up identifying values consistent with the subject's age and sex."""
    study = date(2012, 1, 1) + timedelta(days=int(rng.integers(0, 12 * 365)))
    birth = study - timedelta(days=round(age_years * 365.25))
    first = str(rng.choice(_FIRST_NAMES))
    last = str(rng.choice(_LAST_NAMES))
    return Identity(
        patient_name=f"{last}^{first}^{token(rng, 1, np.array(list(string.ascii_uppercase)))}",
        patient_id=f"MRN{token(rng, 8)}",
        birth_date=birth.strftime("%Y%m%d"),
        sex=sex,
        age_years=int(age_years),
        study_date=study.strftime("%Y%m%d"),
        study_time="".join(f"{int(rng.integers(*r)):02d}" for r in ((7, 19), (0, 60), (0, 60))),
        accession=f"ACC{token(rng, 7)}",
        referring_physician=f"{rng.choice(_LAST_NAMES)}^{rng.choice(_FIRST_NAMES)}^^DR",
        uid_seed=token(rng, 24),
    )


@dataclass(frozen=True)
class Series:
    """One series ready to write: geometry (inferior to superior) and stored pixel values."""

    geometry: SliceGeometry
    pixels: np.ndarray  # (n, rows, cols) uint16
    acquisition: Acquisition
    description: str
    number: int
    instance_order: str  # how InstanceNumber runs through the geometric order
    localizer: bool = False
    acquisition_type: str = "2D"  # MRAcquisitionType: "2D" (thick slices) or "3D" (a volume)


def instance_numbers(n: int, order: str) -> np.ndarray:
    """InstanceNumber of each slice (geometric order, inferior first) for an ordering habit."""
    if order == "ascending":
        return np.arange(1, n + 1)
    if order == "descending":
        return np.arange(n, 0, -1)
    if order == "interleaved":  # acquisition order: odd slices, then even ones
        acquired = np.r_[np.arange(0, n, 2), np.arange(1, n, 2)]
        numbers = np.empty(n, dtype=int)
        numbers[acquired] = np.arange(1, n + 1)
        return numbers
    raise ValueError(f"unknown instance order {order!r}; choices: {INSTANCE_ORDERS}")


def _ds(values: Sequence[float] | float) -> list[str] | str:
    """Decimal String value(s) that fit DICOM's 16 characters."""
    if isinstance(values, float | int | np.floating | np.integer):
        return format_number_as_ds(float(values))
    return [format_number_as_ds(float(v)) for v in values]


@dataclass(frozen=True)
class ScannerInfo:
    """Site-level header values."""

    institution: str
    manufacturer: str
    model: str
    field_strength_t: float
    feet_first: bool


def _series_dataset(
    series: Series,
    who: Identity,
    scanner: ScannerInfo,
    study_uid: str,
    frame_uid: str,
    series_uid: str,
) -> Dataset:
    """The header elements every file of a series shares."""
    geo, acq = series.geometry, series.acquisition
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER" if series.localizer else "M", "NONE"]
    ds.SOPClassUID = pydicom.uid.MRImageStorage
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = who.study_date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = who.study_time
    ds.AccessionNumber = who.accession
    ds.Modality = "MR"
    ds.Manufacturer = scanner.manufacturer
    ds.InstitutionName = scanner.institution
    ds.ReferringPhysicianName = who.referring_physician
    ds.StudyDescription = "BRAIN^MEMORY CLINIC"
    ds.SeriesDescription = series.description
    ds.ManufacturerModelName = scanner.model
    ds.PatientName = who.patient_name
    ds.PatientID = who.patient_id
    ds.PatientBirthDate = who.birth_date
    ds.PatientSex = who.sex
    ds.PatientAge = f"{who.age_years:03d}Y"
    ds.ScanningSequence = ["GR", "IR"]
    ds.SequenceVariant = ["SP", "MP"]
    ds.MRAcquisitionType = series.acquisition_type
    ds.SliceThickness = _ds(geo.thickness)
    ds.RepetitionTime = _ds(1900.0 if not series.localizer else 8.6)
    ds.EchoTime = _ds(2.5 if not series.localizer else 4.0)
    ds.MagneticFieldStrength = _ds(scanner.field_strength_t)
    if not series.localizer and geo.n_slices > 1:
        step = np.linalg.norm(geo.origins[1] - geo.origins[0])
        ds.SpacingBetweenSlices = _ds(round(float(step), 4))
    ds.PatientPosition = "FFS" if scanner.feet_first else "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = who.accession[-4:]
    ds.SeriesNumber = series.number
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = geo.rows
    ds.Columns = geo.cols
    ds.PixelSpacing = _ds(geo.pixel_spacing)
    ds.BitsAllocated = 16
    ds.BitsStored = acq.bits_stored
    ds.HighBit = acq.bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = _ds(acq.rescale_intercept)
    ds.RescaleSlope = _ds(acq.rescale_slope)
    ds.RescaleType = "US"
    ds.WindowCenter = _ds(round(0.6 * acq.wm_value, 1))
    ds.WindowWidth = _ds(round(1.4 * acq.wm_value, 1))
    return ds


def write_series(
    series: Series,
    folder: Path,
    file_names: Sequence[str],
    *,
    who: Identity,
    scanner: ScannerInfo,
    study_uid: str,
    frame_uid: str,
    series_uid: str,
    transfer_syntax: str,
) -> list[Path]:
    """Write one file per slice into ``folder``; return the paths (geometric order)."""
    folder.mkdir(parents=True, exist_ok=True)
    geo = series.geometry
    syntax = transfer_syntax_uid(transfer_syntax)
    numbers = instance_numbers(geo.n_slices, series.instance_order)
    normals = geo.normals
    # One dataset per series, updated slice by slice: building ~60 elements per file would
    # cost more than writing them.
    ds = _series_dataset(series, who, scanner, study_uid, frame_uid, series_uid)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.MRImageStorage
    paths = []
    for k in range(geo.n_slices):
        sop_uid = pydicom.uid.generate_uid(entropy_srcs=[who.uid_seed, series_uid, str(k)])
        ds.SOPInstanceUID = sop_uid
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.InstanceNumber = int(numbers[k])
        ds.ImagePositionPatient = _ds(geo.origins[k])
        ds.ImageOrientationPatient = _ds(np.r_[geo.row_dirs[k], geo.col_dirs[k]])
        ds.SliceLocation = _ds(round(float(geo.origins[k] @ normals[k]), 4))
        set_pixel_data(ds, series.pixels[k], syntax, encoding_plugin="pylibjpeg")
        path = folder / file_names[k]
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


#: Per-frame elements of a classic file that an enhanced file keeps in its functional groups.
_CLASSIC_GEOMETRY = (
    "PixelSpacing",
    "SliceThickness",
    "SpacingBetweenSlices",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
)


def _functional_groups(series: Series) -> tuple[Dataset, list[Dataset]]:
    """The shared and per-frame functional groups of an enhanced MR file (geometric order)."""
    geo, acq = series.geometry, series.acquisition
    measures, orientation, transform = Dataset(), Dataset(), Dataset()
    measures.PixelSpacing = _ds(geo.pixel_spacing)
    measures.SliceThickness = _ds(geo.thickness)
    orientation.ImageOrientationPatient = _ds(np.r_[geo.row_dirs[0], geo.col_dirs[0]])
    transform.RescaleIntercept = _ds(acq.rescale_intercept)
    transform.RescaleSlope = _ds(acq.rescale_slope)
    transform.RescaleType = "US"
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    shared.PlaneOrientationSequence = [orientation]
    shared.PixelValueTransformationSequence = [transform]
    per_frame = []
    for k in range(geo.n_slices):
        position, item = Dataset(), Dataset()
        position.ImagePositionPatient = _ds(geo.origins[k])
        item.PlanePositionSequence = [position]
        per_frame.append(item)
    return shared, per_frame


def write_enhanced(
    series: Series,
    path: Path,
    *,
    who: Identity,
    scanner: ScannerInfo,
    study_uid: str,
    frame_uid: str,
    series_uid: str,
    transfer_syntax: str,
) -> Path:
    """Write the series as one Enhanced MR Image Storage file, frames in ``instance_order``
    (geometry in the shared and per-frame functional groups, as scanners export 3D volumes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = _series_dataset(series, who, scanner, study_uid, frame_uid, series_uid)
    for keyword in _CLASSIC_GEOMETRY:
        if keyword in ds:
            delattr(ds, keyword)
    ds.SOPClassUID = pydicom.uid.EnhancedMRImageStorage
    ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[who.uid_seed, series_uid])
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = 1
    shared, per_frame = _functional_groups(series)
    order = np.argsort(instance_numbers(series.geometry.n_slices, series.instance_order))
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.PerFrameFunctionalGroupsSequence = [per_frame[k] for k in order]
    ds.NumberOfFrames = len(order)
    set_pixel_data(
        ds, series.pixels[order], transfer_syntax_uid(transfer_syntax), encoding_plugin="pylibjpeg"
    )
    ds.save_as(path, enforce_file_format=True)
    return path


def write_nifti(series: Series, path: Path) -> Path:
    """Write the series as a NIfTI volume: stored values with scl_slope/inter, qform = sform =
    the scanner affine (stored as (rows, cols, slices), the layout of nibabel.nicom)."""
    import nibabel as nib

    geo, acq = series.geometry, series.acquisition
    lps = np.eye(4)
    lps[:3, 0] = geo.col_dirs[0] * geo.pixel_spacing[0]
    lps[:3, 1] = geo.row_dirs[0] * geo.pixel_spacing[1]
    lps[:3, 2] = (geo.origins[-1] - geo.origins[0]) / max(geo.n_slices - 1, 1)
    lps[:3, 3] = geo.origins[0]
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    image = nib.Nifti1Image(np.moveaxis(series.pixels, 0, -1), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_slope_inter(acq.rescale_slope, acq.rescale_intercept)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)
    return path


def set_pixel_data(
    ds: Dataset, pixels: np.ndarray, transfer_syntax: str, encoding_plugin: str = ""
) -> None:
    """Store ``pixels`` (rows, cols) in ``ds`` with ``transfer_syntax``, compressing if it is a
    compressed syntax (``encoding_plugin``: pydicom's choice of encoder; "" lets it pick)."""
    syntax = pydicom.uid.UID(transfer_syntax)
    pixels = np.ascontiguousarray(pixels)
    if syntax.is_compressed:
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        # Keep the SOPInstanceUID drawn from the subject's seed (pydicom makes a random one).
        ds.compress(syntax, pixels, encoding_plugin=encoding_plugin, generate_instance_uid=False)
    else:
        ds.file_meta.TransferSyntaxUID = syntax
        ds.PixelData = pixels.astype(f"<{pixels.dtype.char}").tobytes()


def stray_file(rng: np.random.Generator, folder: Path) -> Path:
    """Drop a non-DICOM file (Finder/Explorer metadata or a note) into ``folder``."""
    name = str(rng.choice(STRAY_FILES))
    path = folder / name
    if name.endswith(".txt"):
        path.write_text(
            "Exported from PACS for research use. Contact the imaging core with questions.\n",
            encoding="utf-8",
        )
    else:
        path.write_bytes(b"\x00\x00\x00\x01Bud1" + rng.bytes(2048))
    return path


@dataclass(frozen=True)
class FolderPlan:
    """Where a subject's series go, relative to ``<root>/<subject_id>``."""

    t1: str
    localizer: str


def folder_plan(
    rng: np.random.Generator,
    layout: str,
    description: str,
    who: Identity,
    t1_number: int,
    localizer_number: int,
) -> FolderPlan:
    """Folder names for the layout habit.

    - ``adni``: ``<description>/<date_time>/S<number>/`` (as in ADNI/LONI downloads);
    - ``flat``: every file straight in the subject folder;
    - ``pacs``: ``DICOM/<study hex>/<series hex>/`` (as in CD/PACS exports).
    """
    if layout == "adni":
        stamp = (
            f"{who.study_date[:4]}-{who.study_date[4:6]}-{who.study_date[6:]}_"
            f"{who.study_time[:2]}_{who.study_time[2:4]}_{who.study_time[4:]}.0"
        )
        safe = "".join(c if c.isalnum() else "_" for c in description)
        sid = int(rng.integers(10_000, 999_999))
        return FolderPlan(
            t1=f"{safe}/{stamp}/S{sid + t1_number}",
            localizer=f"Localizer/{stamp}/S{sid + localizer_number}",
        )
    if layout == "flat":
        return FolderPlan(t1="", localizer="")
    if layout == "pacs":
        study = token(rng, 8, _HEX)
        return FolderPlan(
            t1=f"DICOM/{study}/{token(rng, 8, _HEX)}",
            localizer=f"DICOM/{study}/{token(rng, 8, _HEX)}",
        )
    raise ValueError(f"unknown layout {layout!r}; choices: {LAYOUTS}")


def file_names(rng: np.random.Generator, n: int, extension: str) -> list[str]:
    """``n`` distinct random file names, so name order says nothing about slice order."""
    names: set[str] = set()
    while len(names) < n:
        names.add(f"{token(rng, 12)}{extension}")
    return [str(name) for name in rng.permutation(sorted(names))]
