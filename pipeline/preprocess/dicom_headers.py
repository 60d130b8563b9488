"""Read what ingestion needs from one DICOM file's header, without decoding any pixels.

One file gives one :class:`FrameHeader` per image frame: a classic file one, an enhanced
(multi-frame) MR file one per frame, with its position and orientation taken from the functional
groups. UIDs are hashed on the way in, so no identifying value leaves this module; the study
date/time is kept only to order sessions and is never written anywhere.

Speed: headers are parsed with ``stop_before_pixels`` and ``specific_tags`` (large private blocks
are skipped, not parsed); the pixel data element's length is then checked against the file size,
so a truncated file is rejected here instead of failing later in a decoder.
"""

from __future__ import annotations

import hashlib
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

#: Media Storage SOP Class of a DICOMDIR (a directory index, not an image).
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"

#: Pixel data tags: Float, Double Float and plain Pixel Data.
_PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)

_HEADER_TAGS = [
    "SpecificCharacterSet",
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "StudyDate",
    "StudyTime",
    "SeriesNumber",
    "SeriesDescription",
    "Modality",
    "ImageType",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "ModalityLUTSequence",
    "NumberOfFrames",
    "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence",
]

#: Elements of the Modality LUT module that pydicom.pixels.apply_modality_lut reads.
_MODALITY_LUT_KEYWORDS = ("RescaleSlope", "RescaleIntercept", "RescaleType", "ModalityLUTSequence")


class NotDicomImageError(Exception):
    """Not a DICOM image (text, .DS_Store, DICOMDIR, a report...): counted, not an error."""


class DicomFileError(Exception):
    """A DICOM file that cannot be used (corrupt, truncated, unsupported); the message says why."""


def hash_uid(uid: object, length: int = 12) -> str:
    """A short, stable SHA-256 of a UID: groups files without ever storing the UID itself."""
    return hashlib.sha256(str(uid).strip().encode("utf-8")).hexdigest()[:length]


@dataclass(frozen=True)
class FrameHeader:
    """One image frame of one DICOM file: identity (hashed), geometry and pixel encoding."""

    path: Path
    frame: int | None  # frame index in a multi-frame file; None for a single-frame file
    series_key: str  # hash of SeriesInstanceUID
    study_key: str  # hash of StudyInstanceUID ("" when absent)
    instance_key: str  # hash of SOPInstanceUID and frame: the same frame of the same instance
    study_order: str  # StudyDate + StudyTime, to order sessions only; never output
    series_number: int | None
    modality: str
    description: str
    derived: bool  # ImageType says DERIVED (a reformat or a computed map)
    orientation: tuple[float, ...] | None  # ImageOrientationPatient (6,)
    position: tuple[float, float, float] | None  # ImagePositionPatient
    pixel_spacing: tuple[float, float] | None  # (row spacing, column spacing) in mm
    rows: int
    cols: int
    samples_per_pixel: int
    photometric: str
    stored_range: tuple[int, int]  # smallest and largest storable value (MONOCHROME1 inversion)
    modality_lut: Dataset  # RescaleSlope/Intercept or ModalityLUTSequence of this frame


def looks_like_dicom(path: Path) -> bool:
    """Cheap sniff: a 'DICM' preamble, or a bare dataset starting with group 0x0008 or 0x0002."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    # Old exports without the 128-byte preamble start directly with a group 0002/0008 element.
    return len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")


def _as_float_tuple(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        items = [float(v) for v in (value if isinstance(value, list | tuple) else list(value))]
    except (TypeError, ValueError):
        return None
    if len(items) != n or not all(np.isfinite(items)):
        return None
    return tuple(items)


def _first_item(ds: Dataset, keyword: str) -> Dataset | None:
    seq = ds.get(keyword)
    return seq[0] if seq else None


def _functional_value(groups: list[Dataset | None], macro: str, keyword: str) -> Any:
    """``keyword`` in functional-group ``macro``: the per-frame group first, then the shared one."""
    for group in groups:
        if group is None:
            continue
        item = _first_item(group, macro)
        if item is not None and keyword in item:
            return item[keyword].value
    return None


def _modality_lut(source: Dataset | None) -> Dataset:
    lut = Dataset()
    if source is not None:
        for keyword in _MODALITY_LUT_KEYWORDS:
            if keyword in source and source[keyword].value not in (None, ""):
                setattr(lut, keyword, source[keyword].value)
    return lut


def _stored_range(ds: Dataset) -> tuple[int, int]:
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    if int(ds.get("PixelRepresentation") or 0) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _check_pixel_data(fh: BinaryIO, ds: Dataset, n_frames: int, file_size: int) -> None:
    """Raise DicomFileError when the pixel data ends past the end of the file (truncated)."""
    implicit_vr, little_endian = ds.original_encoding
    endian = "<" if little_endian in (True, None) else ">"
    start = fh.tell()
    head = fh.read(12)
    group, element = struct.unpack(f"{endian}HH", head[:4]) if len(head) >= 8 else (0, 0)
    if (group << 16 | element) not in _PIXEL_TAGS:
        raise DicomFileError("image header without pixel data (file cut short before its pixels?)")
    if implicit_vr:
        (length,), value_start = struct.unpack(f"{endian}L", head[4:8]), start + 8
    else:
        (length,), value_start = struct.unpack(f"{endian}L", head[8:12]), start + 12
    if length != 0xFFFFFFFF:
        expected = (
            int(ds.Rows)
            * int(ds.Columns)
            * int(ds.get("SamplesPerPixel") or 1)
            * int(ds.get("BitsAllocated") or 16)
            * n_frames
            + 7
        ) // 8
        if length < expected:
            raise DicomFileError(
                f"pixel data holds {length} bytes but {ds.Rows}x{ds.Columns}x{n_frames} frame(s) "
                f"need {expected} (truncated or corrupt file)"
            )
        if value_start + length > file_size:
            raise DicomFileError(
                f"file ends {value_start + length - file_size} bytes before the end of its pixel "
                "data (truncated copy?)"
            )
        return
    # Encapsulated (compressed): walk the item headers up to the sequence delimiter.
    fh.seek(value_start)
    while True:
        item = fh.read(8)
        if len(item) < 8:
            raise DicomFileError(
                "compressed pixel data ends without its sequence delimiter (truncated copy?)"
            )
        group, element, item_length = struct.unpack(f"{endian}HHL", item)
        tag = group << 16 | element
        if tag == 0xFFFEE0DD:
            return
        if tag != 0xFFFEE000 or fh.tell() + item_length > file_size:
            raise DicomFileError("compressed pixel data is cut short or corrupt (truncated copy?)")
        fh.seek(item_length, os.SEEK_CUR)


def _dataset_header(path: Path) -> tuple[Dataset, int]:
    """Parse the header of ``path``; return it with the number of frames after checking pixels."""
    file_size = path.stat().st_size
    with open(path, "rb") as fh, warnings.catch_warnings():
        # pydicom warns about odd values; the checks below report what matters, once, per file.
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(
                fh, stop_before_pixels=True, specific_tags=_HEADER_TAGS, force=True
            )
        except Exception as err:  # pydicom raises many types for corrupt headers
            raise DicomFileError(f"unreadable DICOM header ({type(err).__name__}: {err})") from err
        meta = getattr(ds, "file_meta", None)
        sop_class = UID(
            str((meta or {}).get("MediaStorageSOPClassUID", "") or ds.get("SOPClassUID", ""))
        )
        if sop_class == DICOMDIR_SOP_CLASS:
            raise NotDicomImageError("DICOMDIR")
        if "Rows" not in ds or "Columns" not in ds:
            if "Image Storage" in sop_class.name:
                raise DicomFileError(
                    f"{sop_class.name} file without Rows/Columns (header cut short?)"
                )
            raise NotDicomImageError(f"not an image ({sop_class.name or 'unknown SOP class'})")
        try:
            n_frames = int(ds.get("NumberOfFrames") or 1)
        except (TypeError, ValueError) as err:
            raise DicomFileError(f"bad NumberOfFrames {ds.get('NumberOfFrames')!r}") from err
        _check_pixel_data(fh, ds, max(n_frames, 1), file_size)
    return ds, max(n_frames, 1)


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def read_frame_headers(path: str | os.PathLike[str]) -> list[FrameHeader]:
    """The frames of one DICOM file, with their geometry and pixel encoding.

    Raises :class:`NotDicomImageError` for files that are not DICOM images (to be counted and
    skipped) and :class:`DicomFileError` for DICOM files that are corrupt or truncated.
    """
    path = Path(path)
    ds, n_frames = _dataset_header(path)
    series_uid = _text(ds, "SeriesInstanceUID")
    if not series_uid:
        raise DicomFileError("no SeriesInstanceUID: cannot tell which series the file belongs to")
    try:
        series_number: int | None = int(ds.get("SeriesNumber"))
    except (TypeError, ValueError):
        series_number = None
    image_type = ds.get("ImageType") or []
    image_type = [image_type] if isinstance(image_type, str) else list(image_type)
    common = {
        "path": path,
        "series_key": hash_uid(series_uid),
        "study_key": hash_uid(_text(ds, "StudyInstanceUID")) if "StudyInstanceUID" in ds else "",
        "study_order": _text(ds, "StudyDate") + _text(ds, "StudyTime"),
        "series_number": series_number,
        "modality": _text(ds, "Modality").upper(),
        "description": _text(ds, "SeriesDescription"),
        "derived": bool(image_type) and str(image_type[0]).upper() == "DERIVED",
        "rows": int(ds.Rows),
        "cols": int(ds.Columns),
        "samples_per_pixel": int(ds.get("SamplesPerPixel") or 1),
        "photometric": _text(ds, "PhotometricInterpretation").upper(),
        "stored_range": _stored_range(ds),
    }
    sop_uid = _text(ds, "SOPInstanceUID") or str(path)
    per_frame = list(ds.get("PerFrameFunctionalGroupsSequence") or [])
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    # A classic file may carry a stray, empty per-frame sequence; only a sequence with one item
    # per frame, in a file without top-level geometry or with several frames, makes it enhanced.
    enhanced = len(per_frame) == n_frames and (n_frames > 1 or "ImagePositionPatient" not in ds)
    if not enhanced:
        if n_frames > 1:
            raise DicomFileError(
                f"multi-frame file ({n_frames} frames) without per-frame positions "
                "(PerFrameFunctionalGroupsSequence): cannot place its slices"
            )
        spacing = _as_float_tuple(ds.get("PixelSpacing"), 2)
        return [
            FrameHeader(
                frame=None,
                instance_key=hash_uid(sop_uid),
                orientation=_as_float_tuple(ds.get("ImageOrientationPatient"), 6),
                position=_as_float_tuple(ds.get("ImagePositionPatient"), 3),
                pixel_spacing=spacing,  # type: ignore[arg-type]
                modality_lut=_modality_lut(ds),
                **common,
            )
        ]
    frames = []
    for index, group in enumerate(per_frame):
        groups = [group, shared]
        lut_item = None
        for g in groups:
            lut_item = _first_item(g, "PixelValueTransformationSequence") if g else None
            if lut_item is not None:
                break
        frames.append(
            FrameHeader(
                frame=index,
                instance_key=hash_uid(f"{sop_uid}#{index}"),
                orientation=_as_float_tuple(
                    _functional_value(
                        groups, "PlaneOrientationSequence", "ImageOrientationPatient"
                    ),
                    6,
                ),
                position=_as_float_tuple(
                    _functional_value(groups, "PlanePositionSequence", "ImagePositionPatient"), 3
                ),
                pixel_spacing=_as_float_tuple(  # type: ignore[arg-type]
                    _functional_value(groups, "PixelMeasuresSequence", "PixelSpacing"), 2
                ),
                modality_lut=_modality_lut(lut_item if lut_item is not None else ds),
                **common,
            )
        )
    return frames
