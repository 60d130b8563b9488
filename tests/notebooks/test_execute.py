"""Both notebooks run end to end (nbclient) on tiny cohorts, writing only under ``tmp_path``.

With no cache at CACHE_DIR a notebook takes its "make a small demo" path (generate synthetic
DICOM, preprocess, ...). The last test instead gives notebook 02 caches built the way `make demo`
builds them (paths relative to the project folder) and runs it from a ``notebooks/`` folder, as
Jupyter does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pipeline.cache import is_complete, load_cohort, read_table
from pipeline.checkpoint import load_checkpoint
from pipeline.config import compose
from pipeline.synthetic import generate_cohort


def small_params(tmp_path: Path) -> dict[str, object]:
    return {
        "DATA_DIR": str(tmp_path / "data" / "demo"),
        "CACHE_DIR": str(tmp_path / "cache"),
        "SMALL": True,
    }


def check_ran_cleanly(nb, nbtools) -> str:
    """Assert no cell raised and the kernel was this interpreter; return the notebook's text."""
    errors = nbtools.error_report(nb)
    assert not errors, errors
    text = nbtools.text_of(nb)
    assert f"KERNEL {sys.executable}" in text
    return text


@pytest.mark.slow
def test_explore_cohort_notebook(tmp_path, run_notebook, nbtools) -> None:
    nb = run_notebook("01_explore_cohort.ipynb", tmp_path, PER_CLASS=1, **small_params(tmp_path))
    text = check_ran_cleanly(nb, nbtools)

    # The notebook made its own small demo, in the temp folder only.
    assert "generating 18 synthetic subjects" in text
    cache = tmp_path / "cache" / "demo_dev"
    assert is_complete(cache)
    cohort = load_cohort(cache)
    assert cohort.images.shape[1:] == (3, 64, 64)
    assert not (tmp_path / "runs").exists()

    # What it reports matches the cache: cases, rejected subjects and their reasons.
    assert f"{len(cohort)} case(s) of {cohort.manifest['subject_id'].nunique()} subject(s)" in text
    rejected = read_table(cache / "rejected.csv")
    left_out = rejected.loc[rejected["level"] == "subject", "subject_id"]
    assert len(left_out) == 3  # the demo's truncated, unlabelled and image-less subjects
    assert f"{(rejected['level'] == 'subject').sum()} subject(s) left out entirely" in text
    assert all(subject in text for subject in left_out)
    assert "no row in the labels table" in text
    # Pictures: the slices of each class, the balance plots, the QC montage.
    assert nbtools.png_count(nb) >= 3


@pytest.mark.slow
def test_train_and_evaluate_notebook(tmp_path, run_notebook, nbtools) -> None:
    runs = tmp_path / "runs"
    nb = run_notebook(
        "02_train_and_evaluate.ipynb", tmp_path, RUNS_DIR=str(runs), EPOCHS=2,
        **small_params(tmp_path),
    )  # fmt: skip
    text = check_ran_cleanly(nb, nbtools)

    # A trained checkpoint under RUNS_DIR, from the notebook's own small development cohort.
    (run_dir,) = (runs / "notebook").iterdir()
    ckpt = load_checkpoint(run_dir / "train" / "checkpoints" / "best.pt")
    assert ckpt.data_name == "demo_dev" and ckpt.recipe["normalize"]["size"] == 64
    assert "subjects in both train and validation: 0" in text

    # The held-out cohort was preprocessed by evaluate, with the checkpoint's recipe.
    heldout = load_cohort(tmp_path / "cache" / "demo_heldout")
    assert heldout.recipe_hash == ckpt.recipe_hash
    assert (run_dir / "evaluate" / "report.html").is_file()
    assert "Balanced accuracy" in text and "held-out subjects: balanced accuracy" in text
    predictions = read_table(run_dir / "evaluate" / "predictions.csv")
    assert set(predictions["subject_id"]) == set(heldout.manifest["subject_id"])

    # The leakage guard refused the development cohort, which is left as it was.
    assert "Refused, as it should be:" in text and "NOT refused" not in text
    dev = load_cohort(tmp_path / "cache" / "demo_dev")
    assert set(dev.manifest["subject_id"]) == set(ckpt.folds[0].train_subjects) | set(
        ckpt.folds[0].val_subjects
    )
    assert not (run_dir / "leakage_check" / "metrics.json").exists()

    # Pictures: curves, two confusion matrices and at least one Grad-CAM/occlusion figure.
    explained = list((run_dir / "evaluate" / "explain").glob("*.png"))
    assert explained
    assert nbtools.png_count(nb) >= 3 + len(explained)


def make_demo_like(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Raw cohorts and caches under ``project`` as `make demo` makes them, but tiny."""
    from pipeline.preprocess.run import preprocess_cohort

    small = {"matrix": [[64, 64]], "workers": 2}
    generate_cohort(project / "data/demo/dev", n_subjects=12, seed=3, site="A", **small)
    generate_cohort(project / "data/demo/heldout", n_subjects=6, seed=4, site="B", **small)
    monkeypatch.chdir(project)  # the conf/ defaults: relative paths data/..., cache/...
    for data in ("demo_dev", "demo_heldout"):
        cfg = compose("preprocess", [
            f"data={data}", "normalize.size=64", "preprocess.workers=1",
            "preprocess.progress=false",
        ])  # fmt: skip
        preprocess_cohort(cfg)


@pytest.mark.slow
def test_train_and_evaluate_notebook_reuses_make_demo_caches(
    tmp_path, monkeypatch, run_notebook, nbtools
) -> None:
    project = tmp_path / "project"
    make_demo_like(project, monkeypatch)
    caches = {name: project / "cache" / name for name in ("demo_dev", "demo_heldout")}
    recorded = {name: json.loads((c / "provenance.json").read_text()) for name, c in caches.items()}
    assert recorded["demo_heldout"]["config"]["data"]["root"] == "data/demo/heldout/dicom"

    (project / "notebooks").mkdir()
    nb = run_notebook(
        "02_train_and_evaluate.ipynb", project / "notebooks", DATA_DIR=str(project / "data/demo"),
        CACHE_DIR=str(project / "cache"), RUNS_DIR=str(project / "runs"), EPOCHS=2,
    )  # fmt: skip
    text = check_ran_cleanly(nb, nbtools)

    # Nothing was generated or preprocessed again: both caches were used as they are.
    assert "generating" not in text and "No preprocessed cohort" not in text
    assert "Preprocessing " not in text and "preprocessing again" not in text
    assert text.count("Using the preprocessed cohort") == 2  # evaluate, then the leakage check
    for name, cache in caches.items():
        assert json.loads((cache / "provenance.json").read_text()) == recorded[name]
    assert "Refused, as it should be:" in text
    (run_dir,) = (project / "runs" / "notebook").iterdir()
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    assert metrics["n_subjects"] == 6 and metrics["cohort"]["name"] == "demo_heldout"
