"""``python -m pipeline.predict checkpoint=FILE data.root=DIR data.name=NAME``: label a new cohort.

For cohorts without labels (``data.labels=null``). The cohort gets the same preprocessing
guarantee as in evaluation (its cache is made with the checkpoint's recipe), and the run folder
gets ``predictions.csv`` (ids, predicted class, class probabilities; per-fold probabilities for a
k-fold ensemble), ``summary.json`` (model, hashes, predicted class counts) and the resolved config.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from pipeline.checkpoint import build_models, load_checkpoint, trained_subjects
from pipeline.config import CONF_DIR, config_hash
from pipeline.evaluate.cohort import prepare_cohort
from pipeline.evaluate.errors import user_errors
from pipeline.evaluate.model_info import (
    SHUFFLED_LABELS_WARNING,
    checkpoint_file,
    model_summary,
    pick_device,
)
from pipeline.evaluate.outputs import PREDICTIONS_CSV, write_metrics_json
from pipeline.evaluate.predictions import predictions_table
from pipeline.inference import ensemble_probabilities
from pipeline.provenance import package_versions
from pipeline.utils.atomic import write_csv, write_text

logger = logging.getLogger(__name__)

SUMMARY_JSON = "summary.json"


def predict(
    cfg: DictConfig, out_dir: str | Path, log: Callable[[str], None] = logger.info
) -> pd.DataFrame:
    """Predict every case of ``cfg.data`` with ``cfg.checkpoint``; write the run folder files.

    The table gets a ``seen_in_training`` column: a prediction for a subject the model trained on
    is not a fair test of it, and whoever reads the file should know.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = cfg.predict
    ckpt_path = checkpoint_file(cfg.checkpoint)
    ckpt = load_checkpoint(ckpt_path)
    classes = [str(c) for c in ckpt["classes"]]
    if ckpt.get("shuffle_labels"):
        log(SHUFFLED_LABELS_WARNING)
    cohort = prepare_cohort(cfg, ckpt, log=log)
    device = pick_device(settings.get("device"))
    models = build_models(ckpt, device)
    log(f"Predicting {len(cohort)} case(s) with {len(models)} model(s) on {device}.")
    probs, fold_probs = ensemble_probabilities(
        models, cohort.images, str(ckpt["slice_mode"]), int(settings.batch_size), device
    )
    table = predictions_table(cohort.manifest, probs, classes, fold_probs)
    table["seen_in_training"] = table["subject_id"].isin(trained_subjects(ckpt))

    write_csv(out / PREDICTIONS_CSV, table)
    summary: dict[str, Any] = {
        "classes": classes,
        "n_cases": len(table),
        "n_subjects": int(table["subject_id"].nunique()),
        "predicted_counts": {name: int((table["predicted"] == name).sum()) for name in classes},
        "n_seen_in_training": int(table["seen_in_training"].sum()),
        "n_rejected": len(cohort.rejected),
        "cohort": {"name": str(cfg.data.name), "cache": str(cohort.directory)},
        "model": model_summary(ckpt, ckpt_path),
        "config_hash": config_hash(cfg),
        "preprocessing_hash": cohort.preprocessing_hash,
        "versions": package_versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_metrics_json(out / SUMMARY_JSON, summary)
    write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    counts = ", ".join(f"{name} {n}" for name, n in summary["predicted_counts"].items())
    print(f"Predicted {len(table)} case(s) of {summary['n_subjects']} subject(s): {counts}.")
    if summary["n_seen_in_training"]:
        seen = summary["n_seen_in_training"]
        print(f"Note: {seen} case(s) are of subjects the model trained on (seen_in_training).")
    if summary["n_rejected"]:
        print(
            f"{summary['n_rejected']} input(s) were rejected by preprocessing: "
            f"{cohort.directory / 'rejected.csv'}"
        )
    print(f"Predictions: {out / PREDICTIONS_CSV}")
    return table


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    """Predict ``cfg.data`` with ``cfg.checkpoint``; files go to the run folder."""
    try:
        predict(cfg, Path(HydraConfig.get().runtime.output_dir))
    except user_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
