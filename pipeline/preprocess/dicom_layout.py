"""Skip, in a DICOM header, the bytes that the previous file of the series repeated.

The slices of a series repeat almost all of their header byte for byte: the patient, study and
series, the protocol, the geometry but for the position, the pixel encoding. Only a handful of
elements change from file to file (the instance UID and number, the position, a time). So
:mod:`.dicom_raw` keeps the :class:`Layout` of the last header it walked, and walks the next
one along it (:meth:`Layout.walk`): a run of elements that has been the same in every file so
far is one ``bytes`` comparison (C speed) and its wanted values are the template's; only the
elements that changed before are decoded one by one.

Why it is exact: from an element boundary, with the same VR encoding, the walk over a run of
complete elements depends on their bytes alone. Where a file's bytes equal the template's run,
the walk would find the same elements with the same values. Where they differ, the elements
are decoded one by one and each tag must be the template's; at the first element that is not
(another series, an element added or dropped), the layout ends there and the ordinary walk
reads the rest of the file from that boundary.

Why hand-written: no DICOM library reads a series this way, and the measured gain is given in
:mod:`pipeline.preprocess.dicom_raw`'s docstring (1.4-1.5x on the demo files, 2.3x on a series of
Siemens headers; ``benchmarks/bench_ingest.py --cohort``, h1 against h1b).

One process reads one file at a time (the preprocess workers): the layouts are per process.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.preprocess.dicom_elements import element_in

#: A layout whose elements changed in more than this fraction of its elements is rebuilt from
#: the next file read: walking it would cost about as much as the ordinary walk.
MAX_VARYING_FRACTION = 0.25


class Layout:
    """The top-level elements of one header, as the walk found them in a template's first bytes.

    ``starts[k]`` is where element ``k`` (tag ``tags[k]``) starts in ``data``; ``starts[-1]``
    is where the layout ends (the element the walk stops at, or the end of what was read).
    ``runs`` are ``(first, end, values)``: elements ``first .. end - 1``, which have been the
    same in every file so far (``values``: the raw values of their wanted elements), or which
    changed (``values`` None).

    Example (two explicit VR elements, then Rows, where the walk stops):
        >>> import struct
        >>> def element(tag, vr, value):
        ...     return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value
        >>> rows = element(0x00280010, b"US", bytes([64, 0])) + bytes(2)
        >>> first = element(0x00080018, b"UI", b"1.2\\0") + element(0x00200013, b"IS", b"7 ")
        >>> layout = Layout.of(first + rows, 0, False, lambda t: True, lambda t: t == 0x00280010)
        >>> second = element(0x00080018, b"UI", b"1.2\\0") + element(0x00200013, b"IS", b"8 ")
        >>> values = {}
        >>> layout.walk(second + rows, 0, values), values[0x00200013], layout.varying
        ((22, True), b'8 ', [False, True])
    """

    __slots__ = ("data", "implicit", "runs", "sequences", "starts", "tags", "varying", "wanted")

    def __init__(
        self,
        data: bytes,
        implicit: bool,
        starts: list[int],
        tags: list[int],
        wanted: list[bool],
        sequences: bool,
    ) -> None:
        self.data, self.implicit, self.sequences = data, implicit, sequences
        self.starts, self.tags, self.wanted = starts, tags, wanted
        self.varying = [False] * len(tags)
        self.runs: list[tuple[int, int, dict[int, bytes] | None]] = []
        self._plan()

    @classmethod
    def of(
        cls,
        data: bytes,
        pos: int,
        implicit: bool,
        is_wanted: Callable[[int], bool],
        stops_at: Callable[[int], bool],
        sequences: bool = True,
    ) -> Layout:
        """The layout of the elements in ``data`` from ``pos`` (an element boundary), up to
        the first tag ``stops_at`` accepts or the first element not wholly inside ``data``."""
        starts, tags, wanted = [], [], []
        while (element := element_in(data, pos, implicit, sequences)) and not stops_at(
            element[0]
        ):
            starts.append(pos)
            tags.append(element.tag)
            wanted.append(is_wanted(element.tag))
            pos = element.end
        starts.append(pos)
        return cls(data, implicit, starts, tags, wanted, sequences)

    @property
    def stale(self) -> bool:
        """Too many of its elements changed for a walk along it to save time."""
        return sum(self.varying) > MAX_VARYING_FRACTION * max(len(self.tags), 1)

    def walk(self, data: bytes, pos: int, values: dict[int, bytes]) -> tuple[int, bool]:
        """Walk ``data`` from ``pos`` (an element boundary) along this layout.

        The wanted values go into ``values``. Returns the offset reached, an element boundary
        of ``data``, and whether all of the layout's elements were found there (False: the
        file parted ways at that offset, and the ordinary walk goes on from it).
        """
        template, starts, tags = self.data, self.starts, self.tags
        learned = False
        for first, end, run_values in self.runs:
            if run_values is not None:
                after = pos + starts[end] - starts[first]
                if data[pos:after] == template[starts[first] : starts[end]]:
                    values.update(run_values)
                    pos = after
                    continue
            for k in range(first, end):
                element = element_in(data, pos, self.implicit, self.sequences)
                if element is None or element.tag != tags[k]:
                    if learned:
                        self._plan()
                    return pos, False
                tag, value, after, undefined = element
                changed = data[pos:after] != template[starts[k] : starts[k + 1]]
                if run_values is not None and changed:
                    self.varying[k] = learned = True
                if self.wanted[k] and not undefined:
                    values[tag] = data[value:after]
                pos = after
        if learned:
            self._plan()
        return pos, True

    def _value(self, k: int) -> bytes | None:
        """The raw value of element ``k`` as the walk keeps it (None for a sequence of
        undefined length, whose value the walk skips)."""
        start, end = self.starts[k], self.starts[k + 1]
        element = element_in(self.data, start, self.implicit, self.sequences)
        assert element is not None and element.end == end  # the layout was built from it
        return None if element.undefined else self.data[element.value : end]

    def _plan(self) -> None:
        """Group the elements into runs: those that never changed, and those that did."""
        runs: list[tuple[int, int, dict[int, bytes] | None]] = []
        first = 0
        for k in range(len(self.tags) + 1):
            if k < len(self.tags) and not self.varying[k]:
                continue
            if first < k:
                kept = ((self.tags[i], self._value(i)) for i in range(first, k) if self.wanted[i])
                runs.append((first, k, {tag: value for tag, value in kept if value is not None}))
            if k < len(self.tags):
                runs.append((k, k + 1, None))
            first = k + 1
        self.runs = runs
