"""preprocess -> train -> evaluate/predict with the real stages and the real checkpoint contract."""

from __future__ import annotations

import pytest

from pipeline.apply import LeakageError
from pipeline.cache import read_table
from pipeline.evaluate.run import evaluate
from pipeline.predict import predict

SMALL = ("slices.expected=12", "normalize.size=32")
QUIET = ("preprocess.workers=1", "preprocess.progress=false")


@pytest.mark.slow
def test_a_trained_checkpoint_on_a_raw_held_out_cohort(
    tmp_path, fakes, evaluate_cfg, predict_cfg
) -> None:
    from pipeline.preprocess.run import preprocess_cohort
    from pipeline.train.run import train

    dev_root, dev_labels = fakes.write_nifti_cohort(tmp_path / "dev", (4, 4, 4))
    held_root, held_labels = fakes.write_nifti_cohort(tmp_path / "held", (2, 2, 2), first=100)
    dev = (f"data.root={dev_root}", f"data.labels={dev_labels}", "data.name=dev")
    preprocess_cohort(fakes.compose(tmp_path, "preprocess", *dev, *QUIET, *SMALL))
    run_dir = tmp_path / "runs" / "train"
    train(
        fakes.compose(
            tmp_path, "train", "data.name=dev", *SMALL, "model.net.channels=[8,16]",
            "split.folds=1", "trainer.max_epochs=2", "trainer.min_epochs=1",
            "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
            "datamodule.batch_size=8",
        ),
        run_dir,
    )  # fmt: skip

    # The held-out cohort has no cache yet: it is preprocessed with the checkpoint's recipe.
    held = (f"data.root={held_root}", f"data.labels={held_labels}", "data.name=held", *QUIET)
    messages: list[str] = []
    first = evaluate(evaluate_cfg(f"checkpoint={run_dir}", *held), tmp_path / "r1", messages.append)
    assert any(m.startswith("Preprocessing") for m in messages)
    assert first.metrics["n_subjects"] == 6 and first.metrics["cohort"]["n_rejected"] == 0
    assert first.metrics["model"]["target"] == "pipeline.models.CumulativeLinkHead"
    assert first.metrics["model"]["target_short"] == "CumulativeLinkHead(SimpleCNN)"
    assert len(list((tmp_path / "r1" / "explain").glob("*.png"))) >= 1
    manifest = read_table(tmp_path / "cache" / "held" / "manifest.csv")
    assert manifest["subject_id"].tolist() == [f"sub-{i:03d}" for i in range(100, 106)]

    # The second time the cache is reused, with the same numbers.
    messages.clear()
    second = evaluate(
        evaluate_cfg(f"checkpoint={run_dir}", *held), tmp_path / "r2", messages.append
    )
    assert any(m.startswith("Using the preprocessed cohort") for m in messages)
    assert second.metrics["ci"] == first.metrics["ci"]

    # predict: the same images without labels give the same predictions.
    unlabelled = predict_cfg(
        f"checkpoint={run_dir}", f"data.root={held_root}", "data.name=held_new", *QUIET
    )
    table = predict(unlabelled, tmp_path / "p", log=lambda _: None)
    assert (table["label"] == "").all() and not table["seen_in_training"].any()
    assert table["predicted"].tolist() == first.predictions["predicted"].tolist()

    # The development cohort is refused: the model trained on it.
    with pytest.raises(LeakageError, match="sub-000"):
        evaluate(evaluate_cfg(f"checkpoint={run_dir}", *dev), tmp_path / "leak", lambda _: None)
