"""The building blocks of a DICOM element walk: element headers, values and sequences read
from a window of bytes, for :mod:`.dicom_raw` (the fast header reader) and
:mod:`.dicom_siblings` (its comparison of a file with a sibling's header).

Everything here is little endian: the readers hand any other file to pydicom. Anything
malformed raises :class:`NeedsPydicom`.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF
#: Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
TAG = struct.Struct("<HH")
LENGTH = struct.Struct("<L")
SHORT_LENGTH = struct.Struct("<H")
#: An explicit VR element header with a 2-byte length: group, element, VR, length.
EXPLICIT_HEADER = struct.Struct("<HH2sH")
#: Bytes read at a time: the whole header of a typical file in one read, or the next part.
#: Callers that read a file's start themselves (to sniff it) read this much and pass it on.
HEAD_BYTES = 8192
CHUNK = HEAD_BYTES


class NeedsPydicom(Exception):
    """The file is outside this reader's scope (or malformed): read it with pydicom."""


def looks_explicit(head: bytes) -> bool | None:
    """Whether an element header (tag + 2 bytes) carries an explicit VR; None if too short.

    pydicom's own test (``filereader._is_implicit_vr``): two upper-case letters after the tag.
    In implicit VR those bytes are the low half of a length, which would have to exceed 16 kB
    with both bytes in 'A'-'Z' for the test to be fooled.
    """
    if len(head) < 6:
        return None
    return 0x40 < head[4] < 0x5B and 0x40 < head[5] < 0x5B


class Window:
    """The bytes of a stream around the walk: ``data`` holds the stream from offset ``base``.

    The walk reads element headers and values from ``data`` by offset; only when it passes the
    end of ``data`` is the stream read again, from there (:meth:`refill`).
    """

    __slots__ = ("base", "data", "stream")

    def __init__(self, stream: BinaryIO, data: bytes, base: int = 0) -> None:
        self.stream, self.data, self.base = stream, data, base

    def refill(self, pos: int, n: int) -> int:
        """Read the stream from ``pos`` (an offset in ``data``), at least ``n`` bytes unless it
        ends first; return ``pos``'s offset in the new ``data`` (0)."""
        self.base += pos
        self.stream.seek(self.base)
        self.data = self.stream.read(max(CHUNK, n))
        return 0


def element_header(
    window: Window, pos: int, implicit: bool
) -> tuple[int, bytes | None, int, int] | None:
    """(tag, VR or None, length, value offset) of the element at ``pos`` in ``window.data``
    (refilled if needed: offsets are in the window's ``data`` afterwards), or None at the end
    of the stream."""
    data = window.data
    if pos + 12 > len(data):
        pos = window.refill(pos, 12)
        data = window.data
        if len(data) < 8:
            if not data:
                return None
            raise NeedsPydicom("file ends inside an element header")
    group, element = TAG.unpack_from(data, pos)
    tag = group << 16 | element
    if implicit or group == 0xFFFE:  # items and delimiters never carry a VR
        return tag, None, LENGTH.unpack_from(data, pos + 4)[0], pos + 8
    vr = data[pos + 4 : pos + 6]
    if vr in LONG_VRS:
        if pos + 12 > len(data):
            raise NeedsPydicom("file ends inside an element")
        return tag, vr, LENGTH.unpack_from(data, pos + 8)[0], pos + 12
    return tag, vr, SHORT_LENGTH.unpack_from(data, pos + 6)[0], pos + 8


def value_at(window: Window, pos: int, length: int) -> tuple[bytes, int]:
    """The ``length`` bytes at ``pos`` in ``window.data`` and the offset after them."""
    if pos + length > len(window.data):
        pos = window.refill(pos, length)
        if length > len(window.data):
            raise NeedsPydicom("file ends inside an element")
    return window.data[pos : pos + length], pos + length


def skip_sequence(window: Window, pos: int, implicit: bool) -> int:
    """Skip the items of an undefined-length sequence, up to its delimiter; the offset after."""
    while True:
        header = element_header(window, pos, implicit)
        if header is None:
            raise NeedsPydicom("sequence without its delimiter")
        tag, _, length, pos = header
        if tag == SEQUENCE_END:
            return pos
        if tag != ITEM:
            raise NeedsPydicom(f"unexpected tag {tag:08X} inside a sequence")
        if length != UNDEFINED:
            pos += length
            continue
        while True:  # an undefined-length item: skip its elements up to the item delimiter
            header = element_header(window, pos, implicit)
            if header is None:
                raise NeedsPydicom("item without its delimiter")
            tag, vr, length, pos = header
            if tag == ITEM_END:
                break
            if length == UNDEFINED:
                pos = skip_sequence(window, pos, implicit or vr == b"UN")  # UN: implicit VR
            else:
                pos += length


def sequence_end(data: bytes, value: int, implicit: bool) -> int | None:
    """Where the undefined-length sequence whose items start at ``value`` ends (just after its
    delimiter), when all of it lies in ``data``; None when it does not or is malformed.

    ``implicit``: its items are implicit VR (an implicit VR dataset, or a sequence of VR UN).
    """
    window = Window(_NOTHING_MORE, data)
    try:
        end = skip_sequence(window, value, implicit)
    except (NeedsPydicom, struct.error, RecursionError):
        return None
    return end if window.base == 0 and window.data is data else None


class _NothingMore:
    """A stream with nothing past the bytes at hand: a walk that needs more stops."""

    def seek(self, offset: int) -> int:
        return offset

    def read(self, n: int = -1) -> bytes:
        return b""


_NOTHING_MORE: BinaryIO = _NothingMore()  # type: ignore[assignment]
