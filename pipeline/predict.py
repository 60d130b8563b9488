"""``python -m pipeline.predict checkpoint=FILE data.root=DIR data.name=NAME``: label a new cohort.

For cohorts without labels (``data.labels=null``). The checkpoint is applied exactly as in
evaluation (:mod:`pipeline.apply`: the cohort's cache made with the checkpoint's recipe, the fold
ensemble, the checkpoint's decision rule), and the run folder gets ``predictions.csv`` (ids,
predicted class, class probabilities, per-fold probabilities for a k-fold ensemble,
``seen_in_training``), ``summary.json`` (model, hashes, predicted class counts) and the config.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from pipeline.apply.cli import stage_main
from pipeline.apply.model_info import model_summary
from pipeline.cache import split_unlabelled
from pipeline.config import config_hash
from pipeline.provenance import package_versions
from pipeline.utils.atomic import write_csv, write_text
from pipeline.utils.jsonable import write_strict_json

if TYPE_CHECKING:  # the apply path imports torch: only predict() itself needs it
    import pandas as pd

    from pipeline.apply import Applied

logger = logging.getLogger(__name__)

PREDICTIONS_CSV = "predictions.csv"
SUMMARY_JSON = "summary.json"


def prediction_summary(cfg: DictConfig, applied: Applied) -> dict[str, Any]:
    """``summary.json``: what was predicted, by which model, from which cache."""
    table, classes = applied.table, applied.classes
    return {
        "classes": classes,
        "n_cases": len(table),
        "n_subjects": int(table["subject_id"].nunique()),
        "predicted_counts": {name: int((table["predicted"] == name).sum()) for name in classes},
        "n_seen_in_training": int(table["seen_in_training"].sum()),
        "n_rejected": len(split_unlabelled(applied.cohort.rejected)[0]),
        "cohort": {"name": str(cfg.data.name), "cache": str(applied.cohort.directory)},
        "model": model_summary(applied.checkpoint, applied.checkpoint_path),
        "config_hash": config_hash(cfg),
        "recipe_hash": applied.cohort.recipe_hash,
        "versions": package_versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def print_summary(summary: dict[str, Any], applied: Applied, predictions: Path) -> None:
    """What a person reads at the end of the command."""
    counts = ", ".join(f"{name} {n}" for name, n in summary["predicted_counts"].items())
    cases, subjects = summary["n_cases"], summary["n_subjects"]
    print(f"Predicted {cases} case(s) of {subjects} subject(s): {counts}.")
    if summary["n_seen_in_training"]:
        seen = summary["n_seen_in_training"]
        print(f"Note: {seen} case(s) are of subjects the model trained on (seen_in_training).")
    if summary["n_rejected"]:
        print(
            f"{summary['n_rejected']} input(s) were rejected by preprocessing: "
            f"{applied.cohort.directory / 'rejected.csv'}"
        )
    print(f"Predictions: {predictions}")


def predict(
    cfg: DictConfig, out_dir: str | Path, log: Callable[[str], None] = logger.info
) -> pd.DataFrame:
    """Predict every case of ``cfg.data`` with ``cfg.checkpoint``; write the run folder files.

    The table's ``seen_in_training`` column marks subjects the model trained on: a prediction for
    one is not a fair test of it, and whoever reads the file should know.
    """
    from pipeline.apply import apply_checkpoint

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    applied = apply_checkpoint(cfg, log)
    summary = prediction_summary(cfg, applied)
    write_csv(out / PREDICTIONS_CSV, applied.table)
    write_strict_json(out / SUMMARY_JSON, summary)
    write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    print_summary(summary, applied, out / PREDICTIONS_CSV)
    return applied.table


main = stage_main("predict", "pipeline.predict:predict")

if __name__ == "__main__":
    from pipeline.utils.command import run_command

    run_command(main)
