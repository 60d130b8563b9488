"""The command-line wrapper evaluate and predict share: Hydra app, run folder, user errors."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from pipeline.apply.errors import user_errors
from pipeline.config import CONF_DIR

#: A stage's entry: the composed config and its run folder (``hydra.run.dir``).
StageRun = Callable[[DictConfig, Path], Any]


def stage_main(
    config_name: str, run: StageRun, errors: tuple[type[BaseException], ...] = ()
) -> Callable[[], None]:
    """A ``main()`` for ``python -m``: compose ``conf/<config_name>.yaml`` and call ``run``.

    A user error (:func:`pipeline.apply.errors.user_errors`, plus ``errors``) is printed as one
    message with exit status 2 instead of a traceback.
    """

    @hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=config_name)
    def main(cfg: DictConfig) -> None:
        try:
            run(cfg, Path(HydraConfig.get().runtime.output_dir))
        except (*user_errors(), *errors) as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    return main
