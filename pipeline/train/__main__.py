"""``python -m pipeline.train data.name=NAME [overrides]``: train on a preprocessed cohort."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import hydra
from omegaconf import DictConfig

from pipeline.config import CONF_DIR

log = logging.getLogger("pipeline.train")

# Lightning 2.6 on torch 2.13 trips torch's own deprecation of LeafSpec; nothing a user can act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Train, print where the results are, and return the mean validation balanced accuracy
    (the value a Hydra sweeper such as Optuna would optimise)."""
    # torch and Lightning are imported after the check that needs neither (a cache that is
    # missing or made with another recipe, with the command that builds it): it answers at once.
    from hydra.core.hydra_config import HydraConfig

    from pipeline.cache import CacheError
    from pipeline.train.cohort import open_training_cohort
    from pipeline.train.errors import TrainError
    from pipeline.utils.monai_import import import_monai

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    try:
        open_training_cohort(cfg, overrides)
        import_monai()  # before the stage's imports: see pipeline.utils.monai_import
        from pipeline.train.run import train
        from pipeline.train.trainer import is_rank_zero

        result = train(cfg, run_dir, command_overrides=overrides)
    except (CacheError, TrainError) as exc:
        print(f"\nerror: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    if is_rank_zero() and result.checkpoint is not None:
        for item in result.folds:
            metrics = item["val_metrics"]
            log.info(
                "Fold %d: kept epoch %d of %d, validation balanced accuracy %.3f (AUC %.3f)",
                item["fold"],
                item["best_epoch"],
                item["epochs_trained"],
                metrics.get("val_bal_acc", float("nan")),
                metrics.get("val_auc", float("nan")),
            )
        print(f"Run folder: {run_dir}")
        print(f"Best checkpoint: {result.checkpoint}", flush=True)
    return result.mean_val_bal_acc


if __name__ == "__main__":
    from pipeline.utils.command import run_command

    run_command(main)
