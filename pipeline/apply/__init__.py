"""Applying a trained checkpoint to a cohort: what evaluate and predict have in common.

:func:`apply_checkpoint` loads the checkpoint, opens (or builds) the cohort's cache with the
checkpoint's recipe (:mod:`.cohort`), runs the fold models, applies the checkpoint's decision
rule (:mod:`pipeline.decision`) and returns the predictions table (:mod:`.table`) with
everything that made it (:class:`Applied`). :func:`pipeline.apply.cli.stage_main` is the command
line wrapper of both stages.
"""

from pipeline.apply.cohort import check_overlap, prepare_cohort
from pipeline.apply.errors import LeakageError, user_errors
from pipeline.apply.run import Admit, Applied, apply_checkpoint

__all__ = [
    "Admit",
    "Applied",
    "LeakageError",
    "apply_checkpoint",
    "check_overlap",
    "prepare_cohort",
    "user_errors",
]
