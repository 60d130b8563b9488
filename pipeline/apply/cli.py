"""The command-line wrapper evaluate and predict share: Hydra app, run folder, user errors.

The stage's code is named, not imported, here (``"pipeline.evaluate.run:evaluate"``): it pulls
in torch, MONAI and matplotlib, which ``--help`` and a config error (a missing value, a
checkpoint that does not exist) answer without. Those checks run first, then the stage.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from pipeline.config import CONF_DIR


def resolve(name: str) -> Any:
    """``"package.module:attribute"`` -> that attribute (the module is imported now)."""
    module, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module), attribute)


def check_config(cfg: DictConfig) -> None:
    """The checks that need no model: every value set, and the checkpoint file there.

    Raises ``MissingMandatoryValue`` (a ``???`` left unset) or
    :class:`~pipeline.checkpoint.CheckpointError`.
    """
    from pipeline.checkpoint import existing_checkpoint

    body = {key: value for key, value in cfg.items() if key != "hydra"}
    OmegaConf.to_container(OmegaConf.create(body), resolve=True, throw_on_missing=True)
    existing_checkpoint(cfg.checkpoint)


def stage_main(config_name: str, run: str, errors: Sequence[str] = ()) -> Callable[[], None]:
    """A ``main()`` for ``python -m``: compose ``conf/<config_name>.yaml`` and call ``run``.

    ``run`` and ``errors`` are ``"module:name"`` strings, imported once the config passed
    :func:`check_config`. A user error (:func:`pipeline.apply.errors.user_errors`, plus
    ``errors``) is printed as one message with exit status 2 instead of a traceback.
    """

    @hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=config_name)
    def main(cfg: DictConfig) -> None:
        from hydra.core.hydra_config import HydraConfig

        from pipeline.apply.errors import user_errors
        from pipeline.utils.monai_import import import_monai

        handled = (*user_errors(), MissingMandatoryValue)
        try:
            check_config(cfg)
            import_monai()  # before the stage's imports: see pipeline.utils.monai_import
            stage = resolve(run)
            handled = (*handled, *(resolve(name) for name in errors))
            stage(cfg, Path(HydraConfig.get().runtime.output_dir))
        except handled as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    return main
