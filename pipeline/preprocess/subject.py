"""One subject, start to end: scan its files, choose slices, decode only those, normalize, save.

:func:`process_subject` runs inside a worker process (or in the caller's, with one worker). It
writes the subject's result file itself (see :mod:`pipeline.preprocess.results`) and returns
only its small :class:`~pipeline.preprocess.record.SubjectRecord`, so no pixel array crosses a
process boundary. Any failure is turned into a rejection row naming the subject and the reason:
one bad subject never stops a cohort. A session whose chosen series fails at decoding tries its
next qualifying series first (:func:`extract_session`). What the imaging libraries say goes to
the debug log, not the console (:mod:`.library_noise`).

This is the compute path: it imports torch and MONAI (through :mod:`.transforms`), which the
cohort's planning, "up to date" answer and config errors never need.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import resource
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from pipeline.preprocess import library_noise
from pipeline.preprocess.discover import relative_path, relative_reason
from pipeline.preprocess.ingest import ScanResult, scan_subject
from pipeline.preprocess.pixels import SliceReadError
from pipeline.preprocess.record import StackRecord, SubjectContext, SubjectRecord
from pipeline.preprocess.results import ResultStore, SubjectTask
from pipeline.preprocess.slices import choose_slices
from pipeline.preprocess.stack import Rejection, SliceStack
from pipeline.preprocess.transforms import SliceNormalizer

log = logging.getLogger(__name__)


class StepClock:
    """CPU seconds per named step: ``with clock("scan"): ...``; nested steps count once, in
    the inner step (decoding inside slice choice is "decode")."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        now = time.process_time()
        if self._stack:  # pause the enclosing step
            outer, since = self._stack[-1]
            self.seconds[outer] += now - since
        self._stack.append((step, now))
        try:
            yield
        finally:
            end = time.process_time()
            _, since = self._stack.pop()
            self.seconds[step] += end - since
            if self._stack:
                self._stack[-1] = (self._stack[-1][0], end)


class MemoReader:
    """Decode each slice of a stack at most once (brain mode samples, then reads the block)."""

    def __init__(self, stack: SliceStack, clock: StepClock) -> None:
        self.stack = stack
        self.clock = clock
        self.decoded: dict[int, np.ndarray] = {}

    def __call__(self, indices: Sequence[int]) -> np.ndarray:
        missing = sorted({int(i) for i in indices} - self.decoded.keys())
        if missing:
            with self.clock("decode"):
                self.decoded.update(zip(missing, self.stack.read(missing), strict=True))
        return np.stack([self.decoded[int(i)] for i in indices])


def _join(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    return ";".join(fmt.format(v) for v in values)


def stack_record(stack: SliceStack, indices: Sequence[int]) -> StackRecord:
    """The manifest fields of one accepted stack (labels and row are added at assembly)."""
    return StackRecord(
        subject_id=stack.subject_id,
        session_id=stack.session_id,
        source_format=stack.source_format,
        series_hash=stack.series_hash,
        source_hash=stack.source_hash,
        n_slices=stack.n_slices,
        slice_spacing_mm=round(float(stack.spacing_mm), 4),
        slice_indices=";".join(str(int(i)) for i in indices),
        slice_positions_mm=_join([float(stack.positions_mm[i]) for i in indices]),
        pixel_spacing_mm=_join(stack.pixel_spacing_mm, "{:.4f}"),
        rows=int(stack.shape[0]),
        cols=int(stack.shape[1]),
        acquired_plane=stack.acquired_plane,
        resliced=bool(stack.resliced),
    )


def normalize_stack(
    stack: SliceStack, context: SubjectContext, normalizer: SliceNormalizer, clock: StepClock
) -> tuple[np.ndarray, StackRecord]:
    """Choose, decode and normalize the slices of one stack: ``(S, size, size)`` and its record."""
    read = MemoReader(stack, clock)
    indices = choose_slices(stack.positions_mm, read, context.slices, stack.affine)
    slices = read(indices)
    with clock("normalize"):
        pixels = normalizer(slices, stack.pixel_spacing_mm)
    return pixels, stack_record(stack, indices)


def extraction_failure(
    stack: SliceStack, exc: Exception, where: str, root: Path
) -> list[Rejection]:
    """The rows saying why ``stack`` (its series at ``where``) gave no slices.

    A file that cannot be decoded gets a file row of its own, named relative to ``data.root``.
    """
    rows = []
    reason = relative_reason(library_noise.scrub(str(exc)), root)
    if isinstance(exc, SliceReadError):
        reason = relative_reason(exc.reason(root), root)
        rows.append(
            Rejection(
                stack.subject_id,
                stack.session_id,
                relative_path(exc.path, root),
                "file",
                f"pixels cannot be decoded ({relative_reason(exc.detail, root)})",
            )
        )
    level = "series" if where else "session"
    rows.append(
        Rejection(
            stack.subject_id,
            stack.session_id,
            where,
            level,
            f"slices could not be extracted: {reason}",
        )
    )
    return rows


def extract_session(
    scan: ScanResult,
    stack: SliceStack,
    context: SubjectContext,
    normalizer: SliceNormalizer,
    clock: StepClock,
) -> tuple[np.ndarray, StackRecord] | None:
    """A session's slices from its chosen series or, when that fails, its next qualifying one.

    Every failure is added to ``scan.rejections``; None when no qualifying series gave slices.
    """
    current: SliceStack | None = stack
    while current is not None:
        try:
            return normalize_stack(current, context, normalizer, clock)
        except Exception as exc:  # a corrupt pixel block, a too-short stack: try the next one
            where = scan.fallbacks.location(current)
            scan.rejections.extend(extraction_failure(current, exc, where, context.ingest.root))
            current = scan.fallbacks.next_stack(current.session_id, scan.rejections)
    return None


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    Linux's ``VmHWM`` when available: ``getrusage``'s ``ru_maxrss`` survives ``fork`` and
    ``exec``, so a worker would report its parent's peak instead of its own.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def init_worker() -> None:
    """Worker-process initializer: one intra-op thread each, the processes give the parallelism.

    The tensors are small (three slices): several threads per process only contend for the
    cores, which costs far more than it gains when other processes are busy.
    """
    torch.set_num_threads(1)


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """:func:`init_worker`'s setting for in-process runs, restored afterwards for the caller."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _scan(context: SubjectContext, task: SubjectTask) -> ScanResult:
    return scan_subject(task.subject_id, Path(task.path), context.ingest, sessions=task.sessions)


class _Outcome:
    """What :func:`process_subject` gathers for one subject before saving it."""

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []
        self.stacks: list[StackRecord] = []
        self.rejections: list[Rejection] = []
        self.n_files = self.n_non_dicom = 0


def _read_subject(
    context: SubjectContext, task: SubjectTask, where: str, clock: StepClock
) -> _Outcome:
    """Scan, then each session's stack: the accepted slices and every rejection on the way."""
    outcome = _Outcome()
    normalizer = context.normalizer
    with clock("scan"):
        scan = _scan(context, task)
    outcome.n_files, outcome.n_non_dicom = int(scan.n_files), int(scan.n_non_dicom)
    for stack in scan.stacks:
        extracted = extract_session(scan, stack, context, normalizer, clock)
        if extracted is None:
            scan.rejections.append(
                Rejection(
                    stack.subject_id,
                    stack.session_id,
                    where,
                    "session",
                    "no qualifying series gave usable slices (see the series rows)",
                )
            )
            continue
        outcome.images.append(extracted[0])
        outcome.stacks.append(extracted[1])
    outcome.rejections.extend(scan.rejections)
    if scan.stacks and not outcome.stacks:
        outcome.rejections.append(
            _subject_rejection(
                task, where, "no session gave usable slices (see the session rows of this subject)"
            )
        )
    return outcome


def _subject_rejection(task: SubjectTask, where: str, reason: str) -> Rejection:
    return Rejection(task.subject_id, "", where, "subject", reason)


@library_noise.routed()  # what the imaging libraries say goes to the debug log, not the console
def process_subject(context: SubjectContext, task: SubjectTask) -> SubjectRecord:
    """Process one subject, save its result file, and return its record (no pixels).

    The record's ``cpu_s`` covers the whole call: the named steps, and ``other`` for the rest
    (the record itself, the bookkeeping between the steps).
    """
    started = time.perf_counter()
    clock = StepClock()
    with clock("other"):  # the enclosing step: what the named steps inside leave over
        record = _process(context, task, clock, started)
    # The stored copy cannot hold the time spent storing it; the returned one does.
    return dataclasses.replace(record, cpu_s=_rounded(clock.seconds))


def _process(
    context: SubjectContext, task: SubjectTask, clock: StepClock, started: float
) -> SubjectRecord:
    where = context.ingest.where(task.path)
    try:
        outcome = _read_subject(context, task, where, clock)
    except Exception as exc:  # nothing about this subject could be read
        log.debug("subject %s failed", task.subject_id, exc_info=True)
        outcome = _Outcome()
        detail = relative_reason(library_noise.scrub(str(exc)), context.ingest.root)
        outcome.rejections.append(
            _subject_rejection(task, where, f"could not be read: {type(exc).__name__}: {detail}")
        )
    record = SubjectRecord(
        subject_id=task.subject_id,
        key=task.key(context.recipe_hash),
        stacks=tuple(outcome.stacks),
        rejections=tuple(outcome.rejections),
        n_files=outcome.n_files,
        n_non_dicom=outcome.n_non_dicom,
        seconds=round(time.perf_counter() - started, 4),
        cpu_s=_rounded(clock.seconds),
        peak_rss_mb=peak_rss_mb(),
    )
    with clock("save"):
        images = (
            np.stack(outcome.images)
            if outcome.images
            else np.zeros((0, *context.image_shape), np.float32)
        )
        store = ResultStore(context.cohort_dir)
        store.save(store.path(task, context.recipe_hash), images, record)
    return record


def process_subjects(context: SubjectContext, tasks: Sequence[SubjectTask]) -> list[SubjectRecord]:
    """:func:`process_subject` for each of ``tasks``: one worker call for a chunk of subjects."""
    return [process_subject(context, task) for task in tasks]


def _rounded(seconds: dict[str, float]) -> dict[str, float]:
    return {step: round(value, 5) for step, value in seconds.items()}
