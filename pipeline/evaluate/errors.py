"""The error evaluate adds to the apply path's (:mod:`pipeline.apply.errors`)."""

from __future__ import annotations


class EvaluationError(RuntimeError):
    """The cohort cannot be evaluated (no labelled case of the model's classes)."""
