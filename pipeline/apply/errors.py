"""Errors a user can fix; the ``evaluate`` and ``predict`` CLIs print them without a traceback."""

from __future__ import annotations

from pipeline.cache import CacheError
from pipeline.checkpoint import CheckpointError
from pipeline.labels import LabelsError


class LeakageError(RuntimeError):
    """The held-out cohort shares subjects with the checkpoint's training or validation data."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message is the whole story (bad input, missing file, leakage)."""
    # Imported on demand: the preprocess stage is heavy and often not needed.
    from pipeline.preprocess.run import PreprocessError

    return (
        CheckpointError,
        CacheError,
        LabelsError,
        PreprocessError,
        LeakageError,
        FileNotFoundError,
    )
