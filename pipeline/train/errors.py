"""Errors the train entry point reports as a message (exit status 2) instead of a traceback."""

from __future__ import annotations


class TrainError(RuntimeError):
    """The cohort, split or settings cannot be trained on; the message says what to change."""


class SplitError(TrainError):
    """A subject split cannot be made or a given split file is not valid for this cohort."""


class NonFiniteLossError(TrainError):
    """The training loss became NaN or infinite."""
