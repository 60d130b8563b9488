"""``python -m pipeline.preprocess data.root=DIR data.labels=FILE data.name=NAME``.

Writes ``${paths.cache}/${data.name}/`` (see :mod:`pipeline.cache`); the Hydra run folder keeps
the resolved config (``.hydra/``), the log, the package versions and a copy of the provenance.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from pipeline.config import CONF_DIR

log = logging.getLogger("pipeline.preprocess")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="preprocess")
def main(cfg: DictConfig) -> None:
    # Imported here, not above: ``--help`` and Hydra's own config errors answer without them.
    from hydra.core.hydra_config import HydraConfig

    from pipeline import cache
    from pipeline.labels import LabelsError
    from pipeline.preprocess.run import PreprocessError, preprocess_cohort
    from pipeline.provenance import write_pip_freeze
    from pipeline.utils.atomic import write_text

    try:
        out = preprocess_cohort(cfg)
    except (LabelsError, PreprocessError) as exc:
        log.error("%s", exc)
        sys.exit(2)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    write_pip_freeze(run_dir)
    provenance = out / cache.PROVENANCE
    if provenance.exists():
        write_text(run_dir / cache.PROVENANCE, provenance.read_text(encoding="utf-8"))
    print(f"Cache: {out}\nRun folder: {run_dir}")


if __name__ == "__main__":
    from pipeline.utils.command import run_command

    run_command(main)
