"""A fast reader of the raw header values of a classic DICOM file, for the common case.

Why this exists: ingestion reads the header of every file of a cohort (44+ per subject) to place
its slice, and pydicom's general-purpose parser costs ~0.3 ms a file (it builds a Dataset,
Tag objects, per-element bookkeeping). This reader walks the element headers with ``struct``,
keeps the raw bytes of the few top-level elements asked for and stops at the pixel data: about
15x faster, which is what makes ingestion several times faster than reading whole series.

It deliberately covers only the plain case: a Part 10 file ('DICM' preamble), little-endian
(implicit or explicit VR, native or encapsulated pixel data, or a deflated dataset, which is
inflated first), no functional groups, no Modality LUT Sequence. For anything else, or anything
unexpected, it raises :class:`NeedsPydicom` and the caller reads the file with pydicom, which
also produces the error message for broken files. Value decoding (numbers, character sets)
stays with the caller and pydicom.

How it reads: one 8 KiB read holds the file meta and the whole header of a typical file; the
walk decodes element headers from those bytes by offset (inline in :func:`_walk`'s loop) and
reads the file again only past their end. Walking the file object instead (a ``read`` and a
``seek`` per element, a function call per element header) cost 222 against 145 us a file on
the demo cohort (4,510 files, best of 3, loaded 2-core machine).

A file that repeats most of an earlier file's header (a slice of the same series) is not
walked at all: :mod:`.dicom_siblings` compares its bytes with that file's. Keeping the last
header's layout here instead, so that a run of unchanged elements cost one comparison (an
earlier round's ``dicom_layout``), stopped paying once siblings did that for whole files: the
scan of 240 demo subjects took 7.2-7.8 ms a subject without the layouts against 7.8-8.5 with
them (three alternated runs), and a 44-file series whose instance UIDs change length took
146-151 us a file without them against 181-202 with them.

The VR encoding is sniffed at the first dataset element, as pydicom does: some writers declare
explicit VR in the file meta and write implicit VR (or the reverse; pydicom's
``SC_rgb_jpeg.dcm`` is one), and trusting the meta would read such a file as garbage.

Why not dicomsdl (0.109.4, a maintained C++ DICOM library), measured by
``benchmarks/bench_ingest.py --cohort data/demo/dev/dicom`` (the 10,878 demo files this reader
takes; three runs, best of 3-5 passes, 2 shared cores): this reader 36.9-47.2 us a file,
dicomsdl 31.7-36.0 us (0.67-0.96x: within the 1.5x asked for), pydicom with ``specific_tags``
292-368 us (earlier, on a more loaded machine: 72.8, 45.8 and 387.9 us). But on the 83 DICOM
files bundled with pydicom and nibabel, dicomsdl crashes the process with a segmentation fault on
``MR_truncated.dcm`` (a truncated copy, which any cohort may hold: a worker would die and the
cohort stop), and refuses ``no_meta.dcm``, ``ExplVR_BigEndNoMeta.dcm`` and
``rtplan_truncated.dcm``, which pydicom reads; it also prints its errors on stderr. It does not
pass the real-file tests, so this reader stays (at most 15 us a file, under 1 ms a subject, are
not worth a crash).
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import BinaryIO, NamedTuple

from pydicom.uid import UID

from pipeline.preprocess.dicom_elements import (
    CHUNK,
    EXPLICIT_HEADER,
    HEAD_BYTES,
    LENGTH,
    LONG_VRS,
    UNDEFINED,
    NeedsPydicom,
    Window,
    element_header,
    looks_explicit,
    skip_sequence,
    value_at,
)

__all__ = [
    "HEAD_BYTES",
    "DatasetStream",
    "NeedsPydicom",
    "RawHeader",
    "find_pixel_data",
    "looks_explicit",
    "open_dataset",
    "read_raw_header",
]

#: Tags whose presence sends the file to pydicom: enhanced multi-frame functional groups and a
#: Modality LUT Sequence (their contents are nested sequences, read properly by pydicom).
_PYDICOM_ONLY = frozenset({0x52009229, 0x52009230, 0x00283000})
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_TRANSFER_SYNTAX, _SOP_CLASS = 0x00020010, 0x00020002


@dataclass(frozen=True)
class DatasetStream:
    """The dataset of a Part 10 file, after its file meta: in the file, or inflated in memory."""

    stream: BinaryIO = field(repr=False, compare=False)  # offsets below are in this stream
    size: int  # bytes in ``stream``: the file's size, or the inflated dataset's end
    meta: dict[int, bytes]  # raw values of the file meta elements
    transfer_syntax: UID
    implicit: bool  # the VR encoding actually found (see :func:`looks_explicit`)
    start: int = 0  # offset of the first dataset element in ``stream``
    # What was read of ``stream`` already, around ``start``: the walk begins there.
    window: Window | None = field(default=None, repr=False, compare=False)

    @property
    def vr_as_declared(self) -> bool:
        """The dataset's VR encoding is the one its transfer syntax names."""
        return self.implicit == syntax_flags(self.transfer_syntax).implicit

    @property
    def deflated(self) -> bool:
        return syntax_flags(self.transfer_syntax).deflated

    def begin(self) -> tuple[Window, int]:
        """A window on ``stream`` and the first element's offset in it."""
        window = self.window or Window(self.stream, b"", self.start)
        return window, self.start - window.base


@dataclass(frozen=True)
class RawHeader:
    """Raw value bytes of the requested top-level elements, and where the pixel data lies."""

    values: dict[int, bytes]
    dataset: DatasetStream
    pixel_length: int | None  # None when the dataset ends before any pixel data element
    pixel_offset: int  # offset in ``dataset.stream`` of the first byte of the pixel data value

    @property
    def transfer_syntax(self) -> UID:
        return self.dataset.transfer_syntax


def _guarded(error: Exception) -> NeedsPydicom:
    return NeedsPydicom(f"{type(error).__name__}: {error}")


_ERRORS = (struct.error, ValueError, OverflowError, OSError, RecursionError, zlib.error)


def open_dataset(fh: BinaryIO, head: bytes | None = None) -> DatasetStream:
    """The dataset of the Part 10 file open in ``fh`` (at 0), past its file meta.

    ``head``: the file's first bytes when the caller has read them already (``fh`` is then
    just past them). A deflated dataset is inflated into memory. Raises :class:`NeedsPydicom`
    for a file without a 'DICM' preamble, a big-endian one, or a file meta this reader cannot
    use.
    """
    try:
        return _open_dataset(fh, fh.read(CHUNK) if head is None else head)
    except _ERRORS as err:
        raise _guarded(err) from err


class SyntaxFlags(NamedTuple):
    """What the reader needs to know of a transfer syntax."""

    usable: bool  # a transfer syntax pydicom knows, little endian
    deflated: bool
    implicit: bool  # implicit VR, as declared


@functools.lru_cache(maxsize=64)
def syntax_flags(uid: UID) -> SyntaxFlags:
    """pydicom's properties of ``uid``, memoized (each is a lookup and a check per call)."""
    usable = uid.is_transfer_syntax and uid.is_little_endian
    return SyntaxFlags(usable, usable and uid.is_deflated, usable and uid.is_implicit_VR)


@functools.lru_cache(maxsize=64)
def _transfer_syntax(raw: bytes) -> UID:
    """The UID of a raw TransferSyntaxUID value (memoized: pydicom's UID checks its value, and
    a cohort uses a handful)."""
    return UID(raw.rstrip(b"\x00 ").decode("ascii"))


def _open_dataset(fh: BinaryIO, head: bytes) -> DatasetStream:
    window = Window(fh, head)
    if len(window.data) < 132 or window.data[128:132] != b"DICM":
        raise NeedsPydicom("no DICM preamble")
    meta: dict[int, bytes] = {}
    pos = 132
    while True:  # file meta information: always explicit VR little endian
        header = element_header(window, pos, implicit=False)
        if header is None or header[0] >> 16 != 0x0002:
            break
        tag, _, length, pos = header
        if length == UNDEFINED:
            raise NeedsPydicom("undefined length in the file meta information")
        meta[tag], pos = value_at(window, pos, length)
    try:
        syntax = _transfer_syntax(meta[_TRANSFER_SYNTAX])
    except (KeyError, UnicodeDecodeError) as err:
        raise NeedsPydicom(f"unusable transfer syntax ({err})") from err
    flags = syntax_flags(syntax)
    if not flags.usable:
        raise NeedsPydicom(f"transfer syntax {syntax.name}")
    stream: BinaryIO = fh
    if flags.deflated:  # PS3.5 A.5: raw deflate (no zlib header) of the whole dataset
        fh.seek(window.base + pos)
        inflated = zlib.decompress(fh.read(), -zlib.MAX_WBITS)
        stream, size = io.BytesIO(inflated), len(inflated)
        window, pos = Window(stream, inflated), 0
    else:
        size = fh.seek(0, io.SEEK_END)
    if pos + 6 > len(window.data):
        pos = window.refill(pos, 6)
    explicit = looks_explicit(window.data[pos : pos + 6])
    implicit = flags.implicit if explicit is None else not explicit
    return DatasetStream(stream, size, meta, syntax, implicit, window.base + pos, window)


def read_raw_header(fh: BinaryIO, wanted: Collection[int], head: bytes | None = None) -> RawHeader:
    """Raw bytes of the ``wanted`` top-level tags of the Part 10 file open in ``fh`` (at 0, or
    just past ``head``, its first bytes, when the caller has read them).

    Raises :class:`NeedsPydicom` when the file is not a plain little-endian classic image file,
    or is malformed in any way (pydicom then reads it, or says what is wrong with it).
    """
    dataset = open_dataset(fh, head)
    meta = dataset.meta
    values = {tag: meta[tag] for tag in (_TRANSFER_SYNTAX, _SOP_CLASS) if tag in meta}
    try:
        length, offset = _walk(dataset, wanted, values, refuse=_PYDICOM_ONLY)
    except _ERRORS as err:
        raise _guarded(err) from err
    return RawHeader(values, dataset, length, offset)


def find_pixel_data(dataset: DatasetStream) -> tuple[int | None, int]:
    """(length, value offset) of the pixel data element of ``dataset``, skipping everything.

    For files pydicom reads whose pixel data pydicom cannot locate for us (a deflated dataset:
    pydicom inflates it into a buffer of its own). Raises :class:`NeedsPydicom` if malformed.
    """
    try:
        return _walk(dataset, (), {}, refuse=frozenset())
    except _ERRORS as err:
        raise _guarded(err) from err


def _walk(
    dataset: DatasetStream,
    wanted: Collection[int],
    values: dict[int, bytes],
    refuse: Collection[int],
) -> tuple[int | None, int]:
    """Walk the top-level elements into ``values`` up to the pixel data: (length, offset).

    The element header is decoded inline while it lies inside the window (one ``struct`` call,
    no function call per element: this loop runs ~70 times a file); :func:`element_header`
    takes the rest (a window to refill, the end of the file).
    """
    window, pos = dataset.begin()
    implicit = dataset.implicit
    data = window.data
    end = len(data)
    stop = _PIXEL_TAGS | frozenset(refuse)
    # Locals, not globals, and one set test for the rare tags: this loop is the hot path.
    unpack_header, unpack_length, long_vrs = (
        EXPLICIT_HEADER.unpack_from,
        LENGTH.unpack_from,
        LONG_VRS,
    )
    while True:
        if pos + 12 <= end:
            group, element, vr, length = unpack_header(data, pos)
            tag = group << 16 | element
            if implicit or group == 0xFFFE:  # items and delimiters never carry a VR
                vr, length, pos = None, unpack_length(data, pos + 4)[0], pos + 8
            elif vr in long_vrs:
                length, pos = unpack_length(data, pos + 8)[0], pos + 12
            else:
                pos += 8
        else:
            header = element_header(window, pos, implicit)
            if header is None:
                return None, window.base + len(window.data)
            tag, vr, length, pos = header
            data = window.data
            end = len(data)
        if tag in stop:
            if tag in _PIXEL_TAGS:
                return length, window.base + pos
            raise NeedsPydicom(f"element {tag:08X} needs pydicom")
        if length == UNDEFINED:
            if not implicit and vr not in (b"SQ", b"UN"):
                raise NeedsPydicom(f"undefined length on VR {vr!r}")
            pos = skip_sequence(window, pos, implicit or vr == b"UN")
            data = window.data
            end = len(data)
        elif tag in wanted:
            if pos + length <= end:
                values[tag] = data[pos : pos + length]
                pos += length
            else:
                values[tag], pos = value_at(window, pos, length)
                data = window.data
                end = len(data)
        else:
            pos += length
