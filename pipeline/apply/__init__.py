"""Applying a trained checkpoint to a cohort: what evaluate and predict have in common.

:func:`apply_checkpoint` loads the checkpoint, opens (or builds) the cohort's cache with the
checkpoint's recipe (:mod:`.cohort`), runs the fold models, applies the checkpoint's decision
rule (:mod:`pipeline.decision`) and returns the predictions table (:mod:`.table`) with
everything that made it (:class:`Applied`). :func:`pipeline.apply.cli.stage_main` is the command
line wrapper of both stages.
"""

# The names below are imported on first use (PEP 562): importing pipeline.apply.cli or .errors
# must not pull in torch through .run.
_EXPORTS = {
    "Admit": "pipeline.apply.run",
    "Applied": "pipeline.apply.run",
    "apply_checkpoint": "pipeline.apply.run",
    "check_overlap": "pipeline.apply.cohort",
    "prepare_cohort": "pipeline.apply.cohort",
    "LeakageError": "pipeline.apply.errors",
    "user_errors": "pipeline.apply.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipeline.apply' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
