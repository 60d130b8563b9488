"""How every ``python -m pipeline.<stage>`` command runs: its config composed once
(:mod:`.hydra_start`), and no interpreter teardown after its work (:mod:`.quick_exit`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from pipeline.utils.hydra_start import compose_once
from pipeline.utils.quick_exit import run_then_exit


def run_command(main: Callable[[], Any]) -> NoReturn:
    """Run a ``@hydra.main`` function as the command of this process, then exit."""
    compose_once()
    run_then_exit(main)
