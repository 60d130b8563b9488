"""``python -m pipeline.synthetic`` end to end: both cohorts, the summary, an instant rerun."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.synthetic import read_stamp

REPO = Path(__file__).resolve().parents[2]


def run_cli(*overrides: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.synthetic", *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_cli_writes_both_cohorts_then_skips_them(tmp_path: Path) -> None:
    small = [
        f"out={tmp_path / 'demo'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        "workers=1",
        "progress=false",
        "cohorts.dev.n_subjects=3",
        "cohorts.heldout.n_subjects=2",
        "cohorts.dev.site.matrix=[[32,32]]",
        "cohorts.heldout.site.matrix=[[32,32]]",
        "cohorts.dev.defects.unlabelled=0",
        "cohorts.dev.defects.truncated=0",
        "cohorts.heldout.defects.truncated=0",
    ]
    first = run_cli(*small)
    assert "made 2 of 2 cohort(s)" in first
    for name, site, n in (("dev", "A", 3), ("heldout", "B", 2)):
        root = tmp_path / "demo" / name
        labels = pd.read_csv(root / "labels.csv", dtype=str)
        assert set(labels["site"]) == {site}
        assert read_stamp(root)["counts"]["usable"] == n
        assert f"{name:<10}{site:<6}{n:>8}" in first
    # dev keeps its one 'no_images' defect: a labels row without a folder
    dev_labels = pd.read_csv(tmp_path / "demo" / "dev" / "labels.csv", dtype=str)
    assert len(dev_labels) == 4 and len(list((tmp_path / "demo" / "dev" / "dicom").iterdir())) == 3

    second = run_cli(*small)
    assert "made 0 of 2 cohort(s)" in second
    assert not list((tmp_path / "demo").glob(".*"))  # no temporary folders left behind
