"""Evaluate and predict through the real preprocess stage on a small raw NIfTI cohort."""

from __future__ import annotations

import pytest

from pipeline.cache import read_table
from pipeline.config import preprocessing_hash
from pipeline.evaluate.run import evaluate
from pipeline.predict import predict


@pytest.mark.slow
def test_raw_cohort_is_preprocessed_with_the_checkpoint_recipe_then_reused(
    tmp_path, fakes, evaluate_cfg, predict_cfg
) -> None:
    root, labels = fakes.write_nifti_cohort(tmp_path)
    pp = fakes.recipe(size=32, expected=12)
    ckpt = fakes.write_checkpoint(tmp_path / "best.pt", fakes.conv_net(), pp=pp)
    args = (
        f"checkpoint={ckpt}",
        f"data.root={root}",
        f"data.labels={labels}",
        "data.name=raw",
        "preprocess.workers=1",
        "evaluate.explain.per_class=0",
    )

    messages: list[str] = []
    first = evaluate(evaluate_cfg(*args), tmp_path / "r1", log=messages.append)
    assert any("Preprocessing" in m for m in messages)
    assert first.metrics["n_subjects"] == 6 and first.metrics["cohort"]["n_rejected"] == 0
    assert first.metrics["preprocessing_hash"] == preprocessing_hash(pp)
    cache = tmp_path / "cache" / "raw"
    assert read_table(cache / "manifest.csv")["subject_id"].tolist() == [
        f"sub-{i:03d}" for i in range(6)
    ]

    messages.clear()
    second = evaluate(evaluate_cfg(*args), tmp_path / "r2", log=messages.append)
    assert any("Using the preprocessed cohort" in m for m in messages)
    assert second.metrics["accuracy"] == first.metrics["accuracy"]

    unlabelled = predict_cfg(
        f"checkpoint={ckpt}",
        f"data.root={root}",
        "data.labels=null",
        "data.name=raw_unlabelled",
        "preprocess.workers=1",
    )
    table = predict(unlabelled, tmp_path / "p", log=lambda _: None)
    assert len(table) == 6 and (table["label"] == "").all()
    assert table["predicted"].tolist() == first.predictions["predicted"].tolist()
