"""``python -m pipeline.evaluate`` and ``python -m pipeline.predict`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cache import read_table


def run(module: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *overrides],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_evaluate_cli_end_to_end_and_its_user_errors(tmp_path, fakes) -> None:
    subjects, labels = fakes.cohort_ids((4, 3, 3))
    fakes.write_cache(tmp_path / "cache" / "held", subjects, labels)
    ckpt = fakes.write_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt", fakes.conv_net())
    common = ("paths.cache=cache", "data.name=held", "evaluate.bootstrap.resamples=100")

    # A run folder is accepted for checkpoint=; relative paths mean the user's folder.
    done = run("pipeline.evaluate", *common, "checkpoint=run", "hydra.run.dir=report", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"Report: {tmp_path / 'report' / 'report.html'}" in done.stdout
    assert "Balanced accuracy" in done.stdout
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["n_subjects"] == 10
    assert metrics["model"]["checkpoint_sha256"] and (tmp_path / "report" / ".hydra").is_dir()
    assert (tmp_path / "report" / "evaluate.log").exists()
    assert ckpt.exists()

    leaked = fakes.write_checkpoint(
        tmp_path / "leaky.pt", fakes.conv_net(), train_subjects=["sub-001"]
    )
    refused = run(
        "pipeline.evaluate", *common, f"checkpoint={leaked}", "hydra.run.dir=r2", cwd=tmp_path
    )
    assert refused.returncode == 2
    assert "sub-001" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.slow
def test_predict_cli_on_an_unlabelled_cohort(tmp_path, fakes) -> None:
    fakes.write_cache(tmp_path / "cache" / "new", ["p1", "p2", "train-001"], ["", "", ""])
    ckpt = fakes.write_checkpoint(tmp_path / "best.pt", fakes.conv_net(), n_folds=2)
    done = run(
        "pipeline.predict",
        f"checkpoint={ckpt}",
        "paths.cache=cache",
        "data.name=new",
        "data.root=unused",
        "hydra.run.dir=out",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert f"Predictions: {tmp_path / 'out' / 'predictions.csv'}" in done.stdout
    table = read_table(tmp_path / "out" / "predictions.csv")
    assert table["subject_id"].tolist() == ["p1", "p2", "train-001"]
    assert (table["label"] == "").all()
    assert {"prob_CN", "prob_MCI", "prob_AD", "fold1_prob_AD"} <= set(table.columns)
    assert table["seen_in_training"].tolist() == [False, False, True]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert sum(summary["predicted_counts"].values()) == 3
