"""Both notebooks run end to end (nbclient) on a tiny demo they make themselves in a temp folder.

With no cache at CACHE_DIR each notebook takes its "make a small demo" path: generate synthetic
DICOM, preprocess, (train, evaluate). Everything is written under ``tmp_path``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipeline.cache import is_complete, load_cohort, read_table
from pipeline.checkpoint import load_checkpoint


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
    assert ckpt["data_name"] == "demo_dev" and ckpt["preprocessing"]["normalize"]["size"] == 64
    assert "subjects in both train and validation: 0" in text

    # The held-out cohort was preprocessed by evaluate, with the checkpoint's recipe.
    heldout = load_cohort(tmp_path / "cache" / "demo_heldout")
    assert heldout.preprocessing_hash == ckpt["preprocessing_hash"]
    assert (run_dir / "evaluate" / "report.html").is_file()
    assert "Balanced accuracy" in text and "held-out subjects: balanced accuracy" in text
    predictions = read_table(run_dir / "evaluate" / "predictions.csv")
    assert set(predictions["subject_id"]) == set(heldout.manifest["subject_id"])

    # The leakage guard refused the development cohort, which is left as it was.
    assert "Refused, as it should be:" in text and "NOT refused" not in text
    dev = load_cohort(tmp_path / "cache" / "demo_dev")
    assert set(dev.manifest["subject_id"]) == set(ckpt["folds"][0]["train_subjects"]) | set(
        ckpt["folds"][0]["val_subjects"]
    )
    assert not (run_dir / "leakage_check" / "metrics.json").exists()

    # Pictures: curves, two confusion matrices and at least one Grad-CAM/occlusion figure.
    explained = list((run_dir / "evaluate" / "explain").glob("*.png"))
    assert explained
    assert nbtools.png_count(nb) >= 3 + len(explained)
