"""Keep what the imaging libraries say about a file off the console, and with that file.

pydicom, the pylibjpeg decoders and nibabel report odd files through their own loggers and
:mod:`warnings` ("Expected explicit VR, but found implicit VR", "Invalid value for VR UI",
a decoder's traceback). On a damaged cohort a console full of them reads like a crash. Inside
:func:`captured` they are collected per file instead:

- what matters goes into that file's rejection reason (:meth:`Noise.summary`, used by the
  readers when they reject the file);
- everything is written at DEBUG level to the ``pipeline.preprocess.library`` logger, which
  the Hydra config sends to ``<job>_debug.log`` in the run folder (``conf/hydra/default.yaml``)
  and nowhere else: the console keeps the project's own lines.

Library messages can quote header values (pydicom's validation warnings show the offending
value, which may be a UID or a name), so quoted text is blanked before a message is kept.

Capturing is set up once per subject (:func:`routed`, cheap per file afterwards) and by each
:func:`captured` block when no routing is active (for callers outside the preprocess stage).
Single-threaded by design: each worker process handles one file at a time.
"""

from __future__ import annotations

import logging
import re
import traceback
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

#: Loggers of the libraries that read images for the preprocess stage.
LIBRARY_LOGGERS = ("pydicom", "pylibjpeg", "openjpeg", "libjpeg", "rle", "nibabel")
#: Where captured messages go, at DEBUG level (see the module docstring).
DEBUG_LOGGER = "pipeline.preprocess.library"
_MAX_SUMMARY = 160

debug_log = logging.getLogger(DEBUG_LOGGER)

_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")


def scrub(text: str) -> str:
    """``text`` on one line, with quoted values (possibly header content) blanked."""
    return " ".join(_QUOTED.sub("'…'", str(text)).split())


@dataclass
class Message:
    """One thing a library said: where from, the message, and any traceback (debug log only)."""

    source: str  # logger name, or the warning's category
    text: str  # scrubbed, one line
    detail: str = ""  # a traceback, scrubbed


@dataclass
class Noise:
    """What the libraries said inside one :func:`captured` block."""

    label: str
    messages: list[Message] = field(default_factory=list)

    def summary(self) -> str:
        """The first message, for a rejection reason ("" when the libraries said nothing)."""
        if not self.messages:
            return ""
        first = self.messages[0]
        text = first.text if len(first.text) <= _MAX_SUMMARY else first.text[:_MAX_SUMMARY] + "…"
        others = len({m.text for m in self.messages}) - 1
        more = f"; {others} more in the debug log" if others > 0 else ""
        return f"{first.source} said: {text}{more}"

    def with_summary(self, reason: str) -> str:
        """``reason`` followed by :meth:`summary` in brackets, when there is one."""
        summary = self.summary()
        return f"{reason} [{summary}]" if summary else reason


class _Router:
    """The state of one process's capture: where messages go now."""

    def __init__(self) -> None:
        self.active = False
        self.current: Noise | None = None

    def add(self, message: Message) -> None:
        if self.current is not None:
            self.current.messages.append(message)
        else:
            _write_debug("outside any file", message)


_router = _Router()


class _Handler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        detail = ""
        if record.exc_info:
            detail = scrub("".join(traceback.format_exception(*record.exc_info)))
        try:
            text = record.getMessage()
        except Exception:  # a library's bad format string must not break the read
            text = str(record.msg)
        _router.add(Message(record.name, scrub(text), detail))


_HANDLER = _Handler(level=logging.DEBUG)


def _on_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    _router.add(Message(category.__name__, scrub(str(message))))


def _write_debug(label: str, message: Message) -> None:
    debug_log.debug("%s: %s: %s", label, message.source, message.text)
    if message.detail:
        debug_log.debug("%s: %s", label, message.detail)


@contextmanager
def routed() -> Iterator[None]:
    """Inside, library log records and warnings go to the current :func:`captured` block.

    Records and warnings outside any block go straight to the debug log. Re-entrant.
    """
    if _router.active:
        yield
        return
    loggers = [logging.getLogger(name) for name in LIBRARY_LOGGERS]
    propagate = [lg.propagate for lg in loggers]
    _router.active = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")  # each file's warnings, not only the first one's
            warnings.showwarning = _on_warning
            for lg in loggers:
                lg.addHandler(_HANDLER)
                lg.propagate = False
            yield
    finally:
        for lg, flag in zip(loggers, propagate, strict=True):
            lg.removeHandler(_HANDLER)
            lg.propagate = flag
        _router.active = False


class captured:  # lower case: used as a function, ``with captured(label) as noise``
    """Collect what the libraries say inside into a :class:`Noise`; log it at the end.

    ``label`` names the file (or subject) in the debug log. A class rather than a generator
    context manager: it wraps every file a cohort reads, and inside :func:`routed` (the
    preprocess stage) entering and leaving it is two assignments.
    """

    def __init__(self, label: str) -> None:
        self.noise = Noise(label)
        self._previous: Noise | None = None
        self._routing: ExitStack | None = None

    def __enter__(self) -> Noise:
        if not _router.active:
            self._routing = ExitStack()
            self._routing.enter_context(routed())
        self._previous, _router.current = _router.current, self.noise
        return self.noise

    def __exit__(self, *exc: object) -> None:
        _router.current = self._previous
        for message in self.noise.messages:
            _write_debug(self.noise.label, message)
        if self._routing is not None:
            self._routing.close()
