"""Read what ingestion needs from one DICOM file's header, without decoding any pixels.

One file gives one :class:`FrameHeader` per image frame: a classic file one, an enhanced
(multi-frame) MR file one per frame, with its position and orientation taken from the functional
groups. UIDs are hashed on the way in, so no identifying value leaves this module; the study
date/time is kept only to order sessions and is never written anywhere.

Two readers give the same :class:`HeaderValues`:

- the common case (a classic little-endian Part 10 file, implicit or explicit VR, whatever its
  file meta claims, deflated or not) goes through :mod:`.dicom_raw`, which keeps the raw bytes
  of the ~25 elements needed and stops at the pixel data (~15x faster than a pydicom parse: the
  header of every file of a cohort is read);
- everything else (enhanced MR, big endian, no preamble or no file meta, a Modality LUT
  Sequence, anything malformed) is read by pydicom with ``stop_before_pixels``,
  ``specific_tags`` and ``defer_size`` (big private blocks are skipped, not read).

Either way, the pixel data element's extent is checked against the file size, so a truncated file
is rejected here, with the reason, instead of failing later in a decoder; a file whose pixels
pydicom cannot decode straight from the file says how to reach them
(``FrameHeader.full_read_syntax``), and one whose codec is unknown (compressed data without a
file meta) is rejected here too. What pydicom says while reading stays off the console
(:mod:`.library_noise`); it is added to the reason of a rejected file.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import struct
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType, NoneType
from typing import Any, BinaryIO

import pydicom
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import parse_basic_offsets, parse_fragments
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from pipeline.preprocess import library_noise
from pipeline.preprocess.dicom_raw import (
    HEAD_BYTES,
    NeedsPydicom,
    RawHeader,
    find_pixel_data,
    looks_explicit,
    open_dataset,
    read_raw_header,
)

#: Media Storage SOP Class of a DICOMDIR (a directory index, not an image).
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"

#: Pixel data tags: Float, Double Float and plain Pixel Data, as (group, element).
_PIXEL_GROUP_ELEMENTS = ((0x7FE0, 0x0008), (0x7FE0, 0x0009), (0x7FE0, 0x0010))

#: The values that every file of a series repeats: the fields they give are converted once per
#: series (:func:`_series_fields`), not in each of its files.
_SERIES_KEYWORDS = (
    "SpecificCharacterSet",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "StudyDate",
    "StudyTime",
    "SeriesNumber",
    "SeriesDescription",
    "Modality",
    "ImageType",
    "MRAcquisitionType",
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
)
#: The values of a classic file that only :func:`classic_geometry` and :func:`instance_key`
#: read: a file that differs from its series' previous one in these alone differs in those
#: fields alone (:mod:`.dicom_siblings`).
_PER_FILE_KEYWORDS = (
    "SOPInstanceUID",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "RescaleSlope",
    "RescaleIntercept",
)
#: The values that decide how a file is read: its class, a lookup table, its frames.
_READING_KEYWORDS = (
    "SOPClassUID",
    "ModalityLUTSequence",
    "NumberOfFrames",
    "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence",
)
_HEADER_KEYWORDS = _SERIES_KEYWORDS + _PER_FILE_KEYWORDS + _READING_KEYWORDS
_TAGS = {keyword: tag_for_keyword(keyword) for keyword in _HEADER_KEYWORDS}
_TAGS["MediaStorageSOPClassUID"] = 0x00020002
_VRS = {keyword: dictionary_VR(tag) for keyword, tag in _TAGS.items()}
#: Every top-level tag the fast reader keeps the raw value of.
WANTED_TAGS = frozenset(_TAGS.values())
_PYDICOM_TAGS = [_TAGS[k] for k in _HEADER_KEYWORDS]  # ints: cheaper for pydicom than keywords


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
    position: tuple[float, ...] | None  # ImagePositionPatient (3,)
    pixel_spacing: tuple[float, ...] | None  # (row spacing, column spacing) in mm
    rows: int
    cols: int
    samples_per_pixel: int
    photometric: str
    stored_range: tuple[int, int]  # smallest and largest storable value (MONOCHROME1 inversion)
    rescale: tuple[float, float] | None  # (RescaleSlope, RescaleIntercept) of this frame
    modality_lut: Dataset | None = None  # a Modality LUT Sequence, when the file has one
    localizer: bool = False  # ImageType names it a LOCALIZER (a scout / survey image)
    # Set when pydicom must read the whole file before decoding its pixels: the transfer syntax
    # to decode with (a deflated dataset, a VR encoding its file meta misstates, or no file
    # meta at all). None: pydicom decodes the wanted frame straight from the file.
    full_read_syntax: str | None = None
    mr_acquisition_type: str = ""  # MRAcquisitionType: "2D", "3D" or "" when absent
    slice_thickness: float | None = None  # SliceThickness (mm), per frame for enhanced MR


def _sniff_dicom(head: bytes) -> bool:
    """A 'DICM' preamble, or a bare dataset starting with a group 0x0002/0x0008 element."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    # Old exports without the 128-byte preamble start directly with a group 0002/0008 element.
    return len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")


#: File name endings that say "DICOM": such a file that does not start like one is damaged.
DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".ima"})
APPLE_DOUBLE = b"\x00\x05\x16\x07"
_CHUNK = 1 << 20


def _raise_if_not_a_copy(fh: BinaryIO, path: Path, head: bytes) -> None:
    """DicomFileError for a file that is not DICOM but looks like a damaged copy of one.

    An empty file, a file of zero bytes only (a failed copy, or a short run of the 128-byte
    preamble), or a file named like DICOM (.dcm, .ima) is reported, not counted with the stray
    notes and .DS_Store files that real exports carry.
    """
    if head.startswith(APPLE_DOUBLE) or path.name.startswith("._"):
        return  # macOS resource-fork companions ("._IM0001.dcm") are junk, however named
    if not head:
        raise DicomFileError("empty file (0 bytes): a failed or interrupted copy?")
    named_dicom, zeros = path.suffix.lower() in DICOM_SUFFIXES, not head.strip(b"\x00")
    if len(head) < 132 and (named_dicom or zeros):
        raise DicomFileError(
            f"only {len(head)} bytes, shorter than a DICOM preamble (truncated copy?)"
        )
    if zeros and _only_zeros(fh):
        size = os.fstat(fh.fileno()).st_size
        raise DicomFileError(f"all {size} bytes are zero: a failed or interrupted copy?")
    if not named_dicom:
        return
    raise DicomFileError(
        f"named like a DICOM file ({path.suffix}) but does not start like one (no DICM "
        "marker after the preamble, no DICOM element at the start): damaged, or not DICOM"
    )


def _only_zeros(fh: BinaryIO) -> bool:
    """Whether the rest of ``fh`` holds zero bytes only (stops at the first other byte)."""
    while chunk := fh.read(_CHUNK):
        if chunk.strip(b"\x00"):
            return False
    return True


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    """``n`` finite floats from a pydicom value (a number or a multi-value), else None."""
    if value is None:
        return None
    items = [value] if isinstance(value, int | float | str) else list(value)
    try:
        numbers = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == n and all(math.isfinite(v) for v in numbers) else None


@functools.lru_cache(maxsize=4096)
def _split(raw: bytes) -> tuple[str, ...]:
    """The values of a raw ASCII element (``\\``-separated, padding stripped)."""
    text = raw.decode("latin-1").strip("\x00 ")
    return tuple(v.strip("\x00 ") for v in text.split("\\")) if text else ()


@functools.lru_cache(maxsize=4096)
def _finite(items: tuple[str, ...], n: int) -> tuple[float, ...] | None:
    """``n`` finite numbers from decimal strings, else None."""
    try:
        values = tuple(float(v) for v in items)
    except ValueError:
        return None
    return values if len(values) == n and all(math.isfinite(v) for v in values) else None


class HeaderValues:
    """Top-level header values by keyword, whether raw bytes or values pydicom converted.

    Why raw bytes: pydicom converts an element on first access (validation, DSfloat and UID
    objects), which costs more than parsing. The values read here are ASCII by the standard
    (UI, CS, DS, IS, DA, TM) or 2-byte unsigned integers (US); free text (SeriesDescription) is
    decoded with pydicom's character-set support.

    Raw values are converted through memoized functions (:func:`_split`, :func:`_finite`):
    the files of one series repeat most of their values (UIDs of study and series, geometry,
    encoding), and converting them once instead of in every file took the conversion of a demo
    file's values from ~90 to ~25 us (loaded 2-core machine).
    """

    def __init__(self, values: Mapping[int, Any], little_endian: bool = True) -> None:
        self.values = values
        self.little_endian = little_endian

    @classmethod
    def from_dataset(cls, ds: Dataset) -> HeaderValues:
        """The wanted elements of a pydicom dataset, raw where pydicom has not converted them."""
        values: dict[int, Any] = {}
        for tag in _TAGS.values():
            source = ds.get("file_meta") if tag >> 16 == 0x0002 else ds
            element = source.get_item(tag) if source is not None else None
            if element is None:
                continue
            if isinstance(element, RawDataElement) and element.value is not None:
                values[tag] = element.value
            else:
                values[tag] = source[tag].value
        _, little_endian = ds.original_encoding
        return cls(values, little_endian is not False)

    def has(self, keyword: str) -> bool:
        return _TAGS[keyword] in self.values

    def strings(self, keyword: str) -> tuple[str, ...]:
        value = self.values.get(_TAGS[keyword])
        if value is None:
            return ()
        if isinstance(value, bytes):
            return _split(value)
        if isinstance(value, str) or not hasattr(value, "__iter__"):
            return (str(value).strip(),)
        return tuple(str(v).strip() for v in value)

    def text(self, keyword: str) -> str:
        return "\\".join(self.strings(keyword))

    def numbers(self, keyword: str, n: int) -> tuple[float, ...] | None:
        return _finite(self.strings(keyword), n)

    def integer(self, keyword: str) -> int | None:
        value = self.values.get(_TAGS[keyword])
        if value is None or value == b"":
            return None
        if isinstance(value, bytes) and _VRS[keyword] == "US":
            return int.from_bytes(value[:2], "little" if self.little_endian else "big")
        try:
            return int(float(self.text(keyword)))
        except ValueError:
            return None

    def description(self) -> str:
        """SeriesDescription, decoded in the file's character set."""
        value = self.values.get(_TAGS["SeriesDescription"])
        if isinstance(value, bytes):
            if value.isascii() and b"\x1b" not in value:  # every DICOM character set's ASCII
                return value.decode("ascii").strip("\x00 ")  # (no ISO 2022 escape)
            encodings = convert_encodings(list(self.strings("SpecificCharacterSet")) or None)
            value = decode_bytes(value, encodings, {0x5C})
        return "" if value is None else str(value).strip("\x00 ")

    def stored_range(self) -> tuple[int, int]:
        bits = self.integer("BitsStored") or self.integer("BitsAllocated") or 16
        if self.integer("PixelRepresentation") == 1:
            return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        return 0, 2**bits - 1

    def rescale(self) -> tuple[float, float] | None:
        slope, intercept = self.numbers("RescaleSlope", 1), self.numbers("RescaleIntercept", 1)
        return (slope[0], intercept[0]) if slope and intercept else None

    def sop_class(self) -> UID:
        return _uid(self.text("MediaStorageSOPClassUID") or self.text("SOPClassUID"))


@functools.lru_cache(maxsize=256)
def _uid(text: str) -> UID:
    """pydicom's UID of ``text`` (memoized: it checks the value, and a cohort has few classes)."""
    return UID(text)


def _check_image(values: HeaderValues) -> int:
    """Raise for non-image files and return the number of frames."""
    sop_class = values.sop_class()
    if sop_class == DICOMDIR_SOP_CLASS:
        raise NotDicomImageError("DICOMDIR")
    if not (values.has("Rows") and values.has("Columns")):
        if "Image Storage" in sop_class.name:
            raise DicomFileError(f"{sop_class.name} file without Rows/Columns (header cut short?)")
        if not sop_class:  # every DICOM object names its SOP Class: a header read as garbage
            raise DicomFileError(
                "DICOM file whose header names no SOP Class and no image (damaged header?)"
            )
        raise NotDicomImageError(f"not an image ({sop_class.name})")
    return max(values.integer("NumberOfFrames") or 1, 1)


def _check_pixel_extent(
    fh: BinaryIO,
    values: HeaderValues,
    length: int | None,
    value_start: int,
    n_frames: int,
    file_size: int,
) -> None:
    """Raise DicomFileError when the pixel data is missing, short, or ends past the file's end.

    ``fh`` holds the dataset (the file, or a deflated file's inflated dataset) and
    ``file_size`` is its size.
    """
    if length is None:
        raise DicomFileError("image header without pixel data (file cut short before its pixels?)")
    if length == 0xFFFFFFFF:
        check_fragments(fh, value_start, file_size, "<" if values.little_endian else ">")
        return
    rows, cols = values.integer("Rows") or 0, values.integer("Columns") or 0
    samples = values.integer("SamplesPerPixel") or 1
    bits = values.integer("BitsAllocated") or 16
    expected = (rows * cols * samples * bits * n_frames + 7) // 8
    if length < expected:
        raise DicomFileError(
            f"pixel data holds {length} bytes but {rows}x{cols}x{n_frames} frame(s) "
            f"need {expected} (truncated or corrupt file)"
        )
    if value_start + length > file_size:
        raise DicomFileError(
            f"file ends {value_start + length - file_size} bytes before the end of its pixel "
            "data (truncated copy?)"
        )


def check_fragments(fh: BinaryIO, value_start: int, file_size: int, endian: str) -> None:
    """Raise DicomFileError unless the compressed pixel data's items all lie inside the file.

    pydicom's ``parse_fragments`` treats the end of the file as the end of the fragments, so
    the last fragment's extent and the sequence delimiter after it are checked here.
    """
    fh.seek(value_start)
    try:
        parse_basic_offsets(fh, endianness=endian)
        _, offsets = parse_fragments(fh, endianness=endian)
    except (ValueError, struct.error) as err:
        raise DicomFileError(
            f"compressed pixel data is corrupt ({library_noise.scrub(str(err))})"
        ) from err
    end = fh.tell()  # just after the Basic Offset Table when there are no fragments
    if offsets:
        fh.seek(offsets[-1] + 4)
        end = offsets[-1] + 8 + struct.unpack(f"{endian}L", fh.read(4))[0]
    fh.seek(end)
    delimiter = fh.read(4)
    if end + 8 > file_size or struct.unpack(f"{endian}HH", delimiter) != (0xFFFE, 0xE0DD):
        raise DicomFileError(
            "compressed pixel data ends without its sequence delimiter (truncated copy?)"
        )


#: The tags of :data:`_SERIES_KEYWORDS`, in order: :func:`_series_fields` keys its memo on
#: their values.
_SERIES_TAGS = tuple(_TAGS[keyword] for keyword in _SERIES_KEYWORDS)


#: The value types of a header the fast reader read: raw bytes, or None for an absent element.
_RAW_TYPES = frozenset((bytes, NoneType))


def _series_fields(values: HeaderValues) -> Mapping[str, Any]:
    """The :class:`FrameHeader` fields given by the series' shared values (:data:`_SERIES_TAGS`).

    Memoized on their raw bytes when the values are raw (the fast reader's), so a series'
    second and later files cost a tuple and a lookup (and what pydicom says when decoding a
    non-ASCII description reaches the debug log once per series, with its first file).
    """
    key = tuple(map(values.values.get, _SERIES_TAGS))  # C loops: 6.1 -> 4.1 us a file
    if set(map(type, key)) <= _RAW_TYPES:
        return _series_fields_of_raw(key, values.little_endian)
    return _convert_series_fields(values)


@functools.lru_cache(maxsize=256)
def _series_fields_of_raw(key: tuple[bytes | None, ...], little_endian: bool) -> Mapping[str, Any]:
    raw = {tag: value for tag, value in zip(_SERIES_TAGS, key, strict=True) if value is not None}
    return _convert_series_fields(HeaderValues(raw, little_endian))


def _convert_series_fields(values: HeaderValues) -> Mapping[str, Any]:
    series_uid = values.text("SeriesInstanceUID")
    if not series_uid:
        raise DicomFileError("no SeriesInstanceUID: cannot tell which series the file belongs to")
    study_uid = values.text("StudyInstanceUID")
    image_type = values.strings("ImageType")
    return MappingProxyType(
        {
            "series_key": hash_uid(series_uid),
            "study_key": hash_uid(study_uid) if study_uid else "",
            "study_order": values.text("StudyDate") + values.text("StudyTime"),
            "series_number": values.integer("SeriesNumber"),
            "modality": values.text("Modality").upper(),
            "description": values.description(),
            "derived": bool(image_type) and image_type[0].upper() == "DERIVED",
            "localizer": any(value.upper() == "LOCALIZER" for value in image_type),
            "rows": values.integer("Rows") or 0,
            "cols": values.integer("Columns") or 0,
            "samples_per_pixel": values.integer("SamplesPerPixel") or 1,
            "photometric": values.text("PhotometricInterpretation").upper(),
            "stored_range": values.stored_range(),
            "mr_acquisition_type": values.text("MRAcquisitionType").upper(),
        }
    )


def instance_key(values: HeaderValues, path: Path, frame: int | None) -> str:
    """The hashed identity of one frame: its SOPInstanceUID (the path when it has none)."""
    sop_uid = values.text("SOPInstanceUID") or str(path)
    return hash_uid(sop_uid if frame is None else f"{sop_uid}#{frame}")


def _frame_header(
    path: Path, values: HeaderValues, frame: int | None, **geometry: Any
) -> FrameHeader:
    """A FrameHeader from the top-level values plus this frame's geometry and rescale."""
    shared = _series_fields(values)
    return FrameHeader(
        path=path,
        frame=frame,
        instance_key=instance_key(values, path, frame),
        **shared,
        **geometry,
    )


#: The tags of :data:`_PER_FILE_KEYWORDS`.
PER_FILE_TAGS = frozenset(_TAGS[keyword] for keyword in _PER_FILE_KEYWORDS)


#: How :func:`classic_geometry` gives each FrameHeader field: a function of the header values,
#: and the tags it reads.
_GEOMETRY_FIELDS: dict[str, tuple[Callable[[HeaderValues], Any], frozenset[int]]] = {
    name: (field_of, frozenset(_TAGS[k] for k in keywords))
    for name, field_of, keywords in (
        (
            "orientation",
            lambda v: v.numbers("ImageOrientationPatient", 6),
            ["ImageOrientationPatient"],
        ),
        ("position", lambda v: v.numbers("ImagePositionPatient", 3), ["ImagePositionPatient"]),
        ("pixel_spacing", lambda v: v.numbers("PixelSpacing", 2), ["PixelSpacing"]),
        ("rescale", HeaderValues.rescale, ["RescaleSlope", "RescaleIntercept"]),
        (
            "slice_thickness",
            lambda v: (v.numbers("SliceThickness", 1) or (None,))[0],
            ["SliceThickness"],
        ),
    )
}


def classic_geometry(
    values: HeaderValues, changed: Collection[int] | None = None
) -> dict[str, Any]:
    """The FrameHeader fields of a classic (single-frame) file's geometry and rescale.

    ``changed``: only the fields that read one of these tags (a sibling's frame keeps its
    template's other fields, whose bytes it repeats); None for all.
    """
    return {name: field_of(values) for name, field_of in geometry_fields(changed)}


def geometry_fields(
    changed: Collection[int] | None = None,
) -> tuple[tuple[str, Callable[[HeaderValues], Any]], ...]:
    """The (field name, function of the header values) pairs :func:`classic_geometry` computes
    for ``changed`` tags (None: all); a sibling template asks once for all its files."""
    return tuple(
        (name, field_of)
        for name, (field_of, tags) in _GEOMETRY_FIELDS.items()
        if changed is None or not tags.isdisjoint(changed)
    )


def _classic_frame(path: Path, values: HeaderValues, n_frames: int) -> FrameHeader:
    if n_frames > 1:
        raise DicomFileError(
            f"multi-frame file ({n_frames} frames) without per-frame positions "
            "(PerFrameFunctionalGroupsSequence): cannot place its slices"
        )
    return _frame_header(path, values, None, **classic_geometry(values))


def _first_item(ds: Dataset | None, keyword: str) -> Dataset | None:
    seq = ds.get(keyword) if ds is not None else None
    return seq[0] if seq else None


def _functional_value(groups: list[Dataset | None], macro: str, keyword: str) -> Any:
    """``keyword`` in functional-group ``macro``: the per-frame group first, then the shared one."""
    for group in groups:
        item = _first_item(group, macro)
        if item is not None and keyword in item:
            return item[keyword].value
    return None


def _lut_sequence(ds: Dataset | None) -> Dataset | None:
    """The Modality LUT module ``apply_modality_lut`` reads, with the file's byte order.

    LUTData encoded OW is raw bytes: pydicom unpacks it with the dataset's endianness, which
    a bare Dataset does not have.
    """
    if ds is None or not ds.get("ModalityLUTSequence"):
        return None
    lut = Dataset()
    lut.ModalityLUTSequence = ds.ModalityLUTSequence
    implicit, little_endian = ds.original_encoding
    lut.set_original_encoding(implicit, little_endian is not False)
    return lut


def _enhanced_frames(
    path: Path, ds: Dataset, values: HeaderValues, per_frame: list[Dataset]
) -> list[FrameHeader]:
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    frames = []
    for index, group in enumerate(per_frame):
        groups = [group, shared]
        lut = next(
            (i for g in groups if (i := _first_item(g, "PixelValueTransformationSequence"))),
            None,
        )
        slope = _floats(lut.get("RescaleSlope") if lut else None, 1)
        intercept = _floats(lut.get("RescaleIntercept") if lut else None, 1)
        frames.append(
            _frame_header(
                path,
                values,
                index,
                orientation=_floats(
                    _functional_value(
                        groups, "PlaneOrientationSequence", "ImageOrientationPatient"
                    ),
                    6,
                ),
                position=_floats(
                    _functional_value(groups, "PlanePositionSequence", "ImagePositionPatient"), 3
                ),
                pixel_spacing=_floats(
                    _functional_value(groups, "PixelMeasuresSequence", "PixelSpacing"), 2
                ),
                slice_thickness=(
                    _floats(_functional_value(groups, "PixelMeasuresSequence", "SliceThickness"), 1)
                    or (None,)
                )[0],
                rescale=(slope[0], intercept[0]) if slope and intercept else values.rescale(),
                modality_lut=_lut_sequence(ds),
            )
        )
    return frames


def _read_with_pydicom(fh: BinaryIO, path: Path, file_size: int) -> list[FrameHeader]:
    try:
        ds = pydicom.dcmread(
            fh, stop_before_pixels=True, specific_tags=_PYDICOM_TAGS, defer_size=4096, force=True
        )
    except Exception as err:  # pydicom raises many types for corrupt headers
        raise DicomFileError(
            f"unreadable DICOM header ({type(err).__name__}: {library_noise.scrub(str(err))})"
        ) from err
    values = HeaderValues.from_dataset(ds)
    n_frames = _check_image(values)
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is not None and not UID(syntax).is_transfer_syntax:
        raise DicomFileError(
            "the file meta names no transfer syntax pydicom knows, so the pixels cannot be "
            "decoded (a damaged file meta, or a private syntax)"
        )
    if syntax is not None and UID(syntax).is_deflated:
        stream, size, (length, start), implicit = _inflated_pixel_data(fh)
    else:
        # dcmread stopped at the pixel data element: read its tag and length where it starts.
        stream, size = fh, file_size
        length, start, implicit = _pixel_element(fh, values.little_endian)
    _check_pixel_extent(stream, values, length, start, n_frames, size)
    full_read = _full_read_syntax(syntax, implicit, values.little_endian, length)
    per_frame = list(ds.get("PerFrameFunctionalGroupsSequence") or [])
    # A classic file may carry a stray, empty per-frame sequence; only a sequence with one item
    # per frame, in a file without top-level geometry or with several frames, makes it enhanced.
    if len(per_frame) == n_frames and (n_frames > 1 or not values.has("ImagePositionPatient")):
        frames = _enhanced_frames(path, ds, values, per_frame)
    else:
        frames = [replace(_classic_frame(path, values, n_frames), modality_lut=_lut_sequence(ds))]
    return frames if full_read is None else [replace(f, full_read_syntax=full_read) for f in frames]


def _pixel_element(fh: BinaryIO, little_endian: bool) -> tuple[int | None, int, bool | None]:
    """(length, value offset, implicit VR?) of the pixel data element starting at ``fh``'s position.

    The element's own VR bytes say how it is encoded (see ``looks_explicit``): pydicom switches
    to the real encoding silently, so the file meta cannot be trusted for this.
    """
    start = fh.tell()
    head = fh.read(12)
    endian = "<" if little_endian else ">"
    if len(head) < 8 or struct.unpack(f"{endian}HH", head[:4]) not in _PIXEL_GROUP_ELEMENTS:
        return None, start, None
    implicit = not looks_explicit(head)
    offset = 4 if implicit else 8  # implicit VR: no VR and reserved bytes
    if len(head) < offset + 4:
        return None, start, implicit
    return struct.unpack(f"{endian}L", head[offset : offset + 4])[0], start + offset + 4, implicit


def _inflated_pixel_data(
    fh: BinaryIO,
) -> tuple[BinaryIO, int, tuple[int | None, int], bool]:
    """A deflated file's inflated dataset, its size, its pixel data's (length, offset) and VR."""
    fh.seek(0)
    try:
        dataset = open_dataset(fh)
        return dataset.stream, dataset.size, find_pixel_data(dataset), dataset.implicit
    except NeedsPydicom as err:
        raise DicomFileError(f"deflated dataset cannot be inflated or walked ({err})") from err


def _full_read_syntax(
    syntax: str | None, implicit: bool | None, little_endian: bool, pixel_length: int | None
) -> str | None:
    """The transfer syntax to decode with after a whole-file read, or None (see FrameHeader)."""
    if syntax is None:
        if pixel_length == 0xFFFFFFFF:
            raise DicomFileError(
                "no transfer syntax (no file meta information) for compressed pixel data: "
                "the codec is unknown, so the pixels cannot be decoded"
            )
        if implicit:  # implicit VR is always little endian
            return ImplicitVRLittleEndian
        return ExplicitVRLittleEndian if little_endian else ExplicitVRBigEndian
    uid = UID(syntax)
    if uid.is_deflated or (implicit is not None and implicit != uid.is_implicit_VR):
        return uid
    return None


@dataclass(frozen=True)
class FileHeaders:
    """One file's frames, and its raw header when the fast reader read it (None: pydicom)."""

    frames: list[FrameHeader]
    raw: RawHeader | None = None


def _read_frames(fh: BinaryIO, path: Path) -> FileHeaders:
    head = fh.read(HEAD_BYTES)  # the whole header of a typical file: read once, used twice
    if not _sniff_dicom(head):
        _raise_if_not_a_copy(fh, path, head)
        raise NotDicomImageError("not DICOM")
    try:
        raw = read_raw_header(fh, WANTED_TAGS, head)
    except NeedsPydicom:
        fh.seek(0)
        return FileHeaders(_read_with_pydicom(fh, path, os.fstat(fh.fileno()).st_size))
    values = HeaderValues(raw.values)
    n_frames = _check_image(values)
    dataset = raw.dataset
    _check_pixel_extent(
        dataset.stream, values, raw.pixel_length, raw.pixel_offset, n_frames, dataset.size
    )
    frame = _classic_frame(path, values, n_frames)
    if dataset.deflated or not dataset.vr_as_declared:
        frame = replace(frame, full_read_syntax=dataset.transfer_syntax)
    return FileHeaders([frame], raw)


def read_file_headers(path: str | os.PathLike[str]) -> FileHeaders:
    """:func:`read_frame_headers`, with the raw header the frames came from when there is one."""
    path = path if isinstance(path, Path) else Path(path)  # a Path is not parsed again
    with library_noise.captured(str(path)) as noise, open(path, "rb") as fh:
        try:
            return _read_frames(fh, path)
        except DicomFileError as err:
            raise DicomFileError(noise.with_summary(str(err))) from err


def read_frame_headers(path: str | os.PathLike[str]) -> list[FrameHeader]:
    """The frames of one DICOM file, with their geometry and pixel encoding.

    Raises :class:`NotDicomImageError` for files that are not DICOM images (to be counted and
    skipped) and :class:`DicomFileError` for DICOM files that are corrupt or truncated. What
    pydicom says while reading goes to the debug log, and into the reason of a rejected file
    (see :mod:`.library_noise`).
    """
    return read_file_headers(path).frames
