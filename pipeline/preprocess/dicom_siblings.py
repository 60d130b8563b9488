"""Read the header of a file that repeats a sibling's, by comparing bytes instead of walking.

The slices of a series repeat almost all of their header byte for byte; in the demo's, only
the instance UIDs, the instance number, the position and the slice location change. So once
one file of a folder has been read in full (:func:`.dicom_headers.read_file_headers`), it is
kept as a :class:`SiblingTemplate`: its bytes up to the pixel data, the elements found there,
and its :class:`FrameHeader`. The next file's same bytes are compared with the template's in a
handful of ``bytes.startswith`` calls (C speed), one per stretch between the elements that were
seen to change; its frame is the template's with the few fields those elements give
recomputed, by the same code as a full read (:func:`.dicom_headers.classic_geometry` and
:func:`.dicom_headers.instance_key`).

Why it is exact: the fast reader's walk, its checks and the frame it builds depend on the bytes
up to the pixel data (and the file's size) alone. Where a file's bytes equal the template's but
in the values of defined-length elements that are either not read at all (a time, a slice
location, the media storage UID, a private tag, the preamble) or read only for the recomputed
fields (:data:`.dicom_headers.PER_FILE_TAGS`), a full read walks the same elements, passes the
same checks and builds the same frame but for those fields. Anything else (another series, an
element added or dropped, a wanted value changed, a file too short for its pixel
data) is read in full, and becomes a template in its turn.

Why hand-written, and what it buys: no DICOM library reads a series this way. On the 10,878
demo files, one reader a folder (``benchmarks/bench_ingest.py --cohort``, h5 against h4, the
first file of each folder read in full): 52.7 against 183.4 us a file (91.6 against 183.5
while the full reads still kept the layouts of :mod:`.dicom_raw`'s docstring). A subject's 45
headers, read as :func:`.ingest.scan_subject` reads them: 3.5 against 10.1 ms (200 demo
subjects, three runs; slow phase of a loaded 2-core machine). A sibling with compressed pixel
data still has its fragments checked, as a full read does: 57-67 against 199-211 us a file on
44 RLE slices. Deflated files, and the files pydicom reads, are read in full every time.

Example (a folder of 44 slices: the first read in full, the others as its siblings)::

    reader = SiblingReader()
    frames = [reader.read(path) for path in sorted(folder.iterdir())]
    reader.stats  # Counter({'sibling': 43, 'full': 1})
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from pipeline.preprocess.dicom_elements import (
    EXPLICIT_HEADER,
    LENGTH,
    LONG_VRS,
    SHORT_LENGTH,
    UNDEFINED,
    sequence_end,
)
from pipeline.preprocess.dicom_headers import (
    PER_FILE_TAGS,
    WANTED_TAGS,
    DicomFileError,
    FileHeaders,
    FrameHeader,
    HeaderValues,
    check_fragments,
    geometry_fields,
    instance_key,
    read_file_headers,
)

#: How many templates a reader keeps: a folder may interleave the files of a few series (a
#: localizer between the slices of an axial series), and a series' UIDs of different lengths
#: give its headers a few layouts.
MAX_TEMPLATES = 4
#: Bytes read past a template's head: room for its values to be longer in a sibling.
SLACK = 512
_PREAMBLE = 128  # bytes before 'DICM', which the reader does not look at once 'DICM' is there
_DATA_START = 132
_META_GROUP = 0x0002
_TRANSFER_SYNTAX = 0x00020010
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_SHORT, _LONG = SHORT_LENGTH, LENGTH  # 2- and 4-byte length fields


class Element(NamedTuple):
    """Where one top-level element lies in a header, and whether a sibling may change it."""

    tag: int
    start: int
    length_at: int  # where its length field starts (the bytes before it: tag and VR)
    value: int  # where its value starts
    end: int
    free: bool  # its value (and so its length) may differ in a sibling

    def value_in(self, head: bytes, shift: int) -> tuple[int, int] | None:
        """(start, end) of this element's value in a sibling's ``head``, where the values
        before it moved it by ``shift`` bytes; None for an undefined length, or past ``head``."""
        field_ = _SHORT if self.value - self.length_at == 2 else _LONG
        start = self.value + shift
        if start > len(head):
            return None
        length = field_.unpack_from(head, self.length_at + shift)[0]
        end = start + length
        return None if length == UNDEFINED or end > len(head) else (start, end)


class _Step(NamedTuple):
    """Compare ``bytes_`` at ``offset`` (in the template; shifted in a sibling), then, unless
    ``element`` is None, read that varying element's length and value."""

    offset: int
    bytes_: bytes
    element: Element | None


@dataclass
class SiblingTemplate:
    """A file read in full, against which its siblings are compared.

    ``head`` is its first bytes, up to the pixel data's value; ``elements`` the top-level
    elements found there (:func:`header_elements`). ``varying`` are the indices of the elements seen
    to differ in a sibling so far: :meth:`frame_of` compares the bytes between them.
    """

    frame: FrameHeader
    raw_values: dict[int, bytes]
    head: bytes
    pixel_length: int
    implicit: bool  # the dataset's VR encoding
    elements: list[Element]
    varying: set[int] = field(default_factory=set)
    steps: list[_Step] = field(default_factory=list)
    #: The frame fields a sibling's values give (those reading a varying tag of
    #: :data:`PER_FILE_TAGS`), and how: :func:`.dicom_headers.classic_geometry`'s choice for
    #: the tags :meth:`_per_file_values` returns, which are the same for every sibling.
    recomputed: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        self._plan()

    def frame_of(self, path: Path, head: bytes, size: int) -> FrameHeader | None:
        """The frame of the file ``path`` (its first bytes ``head``, its ``size``), or None
        when it is not a sibling of this template."""
        per_file = self._per_file_values(head)
        if per_file is None and self._learn(head):
            per_file = self._per_file_values(head)
        if per_file is None:
            return None
        values, pixel_offset = per_file
        if not self._pixel_data_whole(path, pixel_offset, size):
            return None  # a truncated copy: the full read says so
        header_values = HeaderValues({**self.raw_values, **values})
        # Only the fields whose tags differ from the template's: 7.3 us a file less (median of
        # 24 interleaved pairs, 9,000 demo files; 23 of 24 pairs faster); chosen once a plan.
        changes = {name: field_of(header_values) for name, field_of in self.recomputed}
        return _with_fields(
            self.frame,
            path=path,
            instance_key=instance_key(header_values, path, None),
            **changes,
        )

    def _pixel_data_whole(self, path: Path, pixel_offset: int, size: int) -> bool:
        """The check of a full read: native pixel data ends inside the file, compressed pixel
        data's fragments and delimiter lie inside it (:func:`.dicom_headers.check_fragments`)."""
        if self.pixel_length != UNDEFINED:
            return size >= pixel_offset + self.pixel_length
        try:
            with open(path, "rb") as fh:
                check_fragments(fh, pixel_offset, size, "<")
        except (DicomFileError, OSError):
            return False
        return True

    def _per_file_values(self, head: bytes) -> tuple[dict[int, bytes], int] | None:
        """The values of :data:`PER_FILE_TAGS` in ``head`` and where its pixel data starts,
        when ``head`` repeats the template's bytes but in the varying elements' values."""
        shift, values = 0, {}
        for offset, bytes_, element in self.steps:
            at = offset + shift
            if not head.startswith(bytes_, at):
                return None
            if element is None:
                break
            span = element.value_in(head, shift)
            if span is None:
                return None
            if element.tag in PER_FILE_TAGS:
                values[element.tag] = head[span[0] : span[1]]
            shift = span[1] - element.end
        pixel_offset = len(self.head) + shift
        return (values, pixel_offset) if pixel_offset <= len(head) else None

    def _learn(self, head: bytes) -> bool:
        """Whether ``head`` differs from the template in free values only; if so, the elements
        where it differs join ``varying``.

        A walk along the template's elements: each is the template's bytes (at the offset the
        longer or shorter values before it moved it to), or a free element with the same tag
        and VR and a defined length.
        """
        template = self.head
        if not head.startswith(template[_PREAMBLE:_DATA_START], _PREAMBLE):
            return False  # no 'DICM' marker
        shift, changed = 0, set()
        for k, element in enumerate(self.elements):
            at = element.start + shift
            if head.startswith(template[element.start : element.end], at):
                continue
            tag_and_vr = template[element.start : element.length_at]
            if not (element.free and head.startswith(tag_and_vr, at)):
                return False
            span = element.value_in(head, shift)
            if span is None:
                return False
            changed.add(k)
            shift = span[1] - element.end
        self.varying |= changed
        self._plan()
        return True

    def _plan(self) -> None:
        self.steps, offset = [], _PREAMBLE
        for k in sorted(self.varying):
            element = self.elements[k]
            self.steps.append(_Step(offset, self.head[offset : element.length_at], element))
            offset = element.end
        self.steps.append(_Step(offset, self.head[offset:], None))
        per_file = PER_FILE_TAGS.intersection(self.elements[k].tag for k in self.varying)
        self.recomputed = geometry_fields(per_file)


def _with_fields(frame: FrameHeader, **changes: Any) -> FrameHeader:
    """``dataclasses.replace(frame, **changes)``, without running ``__init__`` again: 1.9
    against 17.5 us a call (a 25-field frozen dataclass, slow phase of a 2-core machine), which
    is 0.7 ms a subject of 44 files. ``frame`` holds no derived state to recompute."""
    new = object.__new__(FrameHeader)
    new.__dict__.update(frame.__dict__, **changes)
    return new


def _is_free(tag: int, undefined: bool, first_of_dataset: bool) -> bool:
    """Whether a sibling's value of a top-level element may differ from the template's.

    Not the transfer syntax (the walk depends on it), nor a sequence of undefined length (its
    items are walked), nor the dataset's first element (its header is sniffed for the VR).
    """
    if undefined or first_of_dataset or tag == _TRANSFER_SYNTAX:
        return False
    return tag in PER_FILE_TAGS or tag not in WANTED_TAGS


def template_of(path: Path, headers: FileHeaders) -> SiblingTemplate | None:
    """The template made of a file read in full, or None when its siblings cannot be read
    against it: read by pydicom, deflated, several frames."""
    raw = headers.raw
    if raw is None or len(headers.frames) != 1 or raw.dataset.deflated:
        return None
    if raw.pixel_length is None:
        return None
    head = _read_head(path, raw.pixel_offset)[0]
    elements = header_elements(head, raw.dataset.implicit)
    if elements is None or elements[-1].value != raw.pixel_offset:
        return None
    return SiblingTemplate(
        frame=headers.frames[0],
        raw_values=dict(raw.values),
        head=head,
        pixel_length=raw.pixel_length,
        implicit=raw.dataset.implicit,
        elements=elements,
    )


def header_elements(head: bytes, implicit: bool) -> list[Element] | None:
    """The top-level elements of a Part 10 header, from the file meta up to the header of the
    pixel data element, which ends the list; None when ``head`` does not reach it.

    The file meta is explicit VR, the dataset ``implicit`` or not (the fast reader's
    :class:`~.dicom_raw.DatasetStream` says which), as the reader walks them. Element headers
    are decoded inline, as in :func:`.dicom_raw._walk` (0.44 -> 0.2 ms a header of 67 elements
    against a function call each); a sequence of undefined length is skipped to its delimiter.
    """
    elements: list[Element] = []
    pos, in_meta, first_of_dataset, end = _DATA_START, True, False, len(head)
    unpack_header, unpack_length = EXPLICIT_HEADER.unpack_from, LENGTH.unpack_from
    while pos + 8 <= end:  # the shortest element header
        group, number, vr, length = unpack_header(head, pos)
        tag = group << 16 | number
        if in_meta and group != _META_GROUP:
            in_meta, first_of_dataset = False, True
        implicit_here = implicit and not in_meta
        if implicit_here or group == 0xFFFE:  # items and delimiters carry no VR
            length_at, value = pos + 4, pos + 8
        elif vr in LONG_VRS:
            length_at, value = pos + 8, pos + 12
        else:
            length_at, value = pos + 6, pos + 8
        if tag in _PIXEL_TAGS:  # its header ends the head; its length is compared, not free
            elements.append(Element(tag, pos, length_at, value, value, False))
            return elements
        if value - length_at == 4 and value <= end:
            length = unpack_length(head, length_at)[0]
        undefined = length == UNDEFINED and value - length_at == 4
        if not undefined:
            element_end = value + length
        elif not in_meta and (implicit_here or vr in (b"SQ", b"UN")):  # as the walk allows
            element_end = sequence_end(head, value, implicit_here or vr == b"UN")
        else:
            return None
        if element_end is None or element_end > end:
            return None
        free = _is_free(tag, undefined, first_of_dataset)
        elements.append(Element(tag, pos, length_at, value, element_end, free))
        pos, first_of_dataset = element_end, False
    return None


def _read_head(path: Path, n: int) -> tuple[bytes, os.stat_result]:
    """The first ``n`` bytes of a file, and its status (``os.fstat``)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, n, 0), os.fstat(fd)
    finally:
        os.close(fd)


class SiblingReader:
    """Reads the headers of one folder's files, each as a sibling of a file read before when
    it is one (see the module docstring), else in full: the same frames, and the same errors,
    as :func:`.dicom_headers.read_frame_headers`, file for file."""

    def __init__(self) -> None:
        self.templates: list[SiblingTemplate] = []
        self.stats: Counter[str] = Counter()
        #: (size, mtime in ns) of the files read as siblings, by path string, from the
        #: ``fstat`` the read makes anyway: the series' fingerprint need not stat them again.
        self.file_stats: dict[str, tuple[int, int]] = {}

    def read(self, path: Path) -> list[FrameHeader]:
        """The frames of ``path``; raises what :func:`read_frame_headers` raises."""
        if self.templates:
            frame = self._as_sibling(path)
            if frame is not None:
                self.stats["sibling"] += 1
                return [frame]
        self.stats["full"] += 1  # counted whether it succeeds or raises
        headers = read_file_headers(path)
        template = template_of(path, headers)
        if template is not None:
            self.templates = [template, *self.templates[: MAX_TEMPLATES - 1]]
        return headers.frames

    def _as_sibling(self, path: Path) -> FrameHeader | None:
        try:
            head, status = _read_head(path, max(len(t.head) for t in self.templates) + SLACK)
        except OSError:
            return None  # the full read says what is wrong
        self.file_stats[os.fspath(path)] = (status.st_size, status.st_mtime_ns)
        for index, template in enumerate(self.templates):
            frame = template.frame_of(path, head, status.st_size)
            if frame is not None:
                if index:  # the most recently matched first
                    self.templates.insert(0, self.templates.pop(index))
                return frame
        return None
