"""``python -m pipeline.evaluate checkpoint=FILE data.root=DIR data.labels=FILE data.name=NAME``."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from pipeline.config import CONF_DIR
from pipeline.evaluate.errors import user_errors
from pipeline.evaluate.run import evaluate


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    """Evaluate ``cfg.checkpoint`` on the cohort ``cfg.data``; the report goes to the run folder."""
    try:
        evaluate(cfg, Path(HydraConfig.get().runtime.output_dir))
    except user_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
