"""The evaluate flow end to end on fake caches: files, agreement, k-fold, slice mode, leakage."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    roc_auc_score,
)

from pipeline.apply import LeakageError
from pipeline.cache import read_table
from pipeline.evaluate.run import EvaluationError, evaluate

REJECTED = [
    {
        "subject_id": "sub-bad",
        "session_id": "",
        "path": "sub-bad/series2",
        "level": "series",
        "reason": "43 slices, expected 44",
    },
]


def strict_json(path: Path) -> dict:
    def no_constant(token: str) -> None:
        raise AssertionError(f"{path} holds the non-JSON constant {token}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=no_constant)


def png_ok(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as img:
        img.verify()
        return img.format == "PNG"


class ReportParser(HTMLParser):
    """Collects embedded images and text; fails on unbalanced tables."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.text: list[str] = []
        self.open_tables = 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag == "table":
            self.open_tables += 1

    def handle_endtag(self, tag):
        if tag == "table":
            self.open_tables -= 1

    def handle_data(self, data):
        self.text.append(data)


def parse_report(path: Path) -> ReportParser:
    parser = ReportParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    assert parser.open_tables == 0
    return parser


@pytest.fixture
def cohort(tmp_path, fakes):
    """12 subjects, two with a second session, two sites, one unlabelled case, one rejection."""
    subjects, labels = fakes.cohort_ids((5, 4, 3))
    sessions = [""] * len(subjects)
    subjects += ["sub-000", "sub-005", "sub-nolabel"]
    labels += ["CN", "MCI", ""]
    sessions = ["ses-1" if s in ("sub-000", "sub-005") else "" for s in subjects[:12]]
    sessions += ["ses-2", "ses-2", ""]
    sites = ["siteA" if i % 2 else "siteB" for i in range(len(subjects))]
    fakes.write_cache(
        tmp_path / "cache" / "held",
        subjects,
        labels,
        sessions=sessions,
        sites=sites,
        rejected=REJECTED,
    )
    return subjects, labels


def test_report_folder_files_exist_open_and_agree(tmp_path, fakes, evaluate_cfg, cohort, capsys):
    ckpt = fakes.write_checkpoint(tmp_path / "best.pt", fakes.conv_net())
    out = tmp_path / "report"
    result = evaluate(evaluate_cfg("data.name=held", f"checkpoint={ckpt}"), out, log=lambda _: None)

    metrics = strict_json(out / "metrics.json")
    for key in (
        "classes",
        "n_subjects",
        "accuracy",
        "balanced_accuracy",
        "confusion_matrix",
        "per_class",
        "auc_macro",
        "kappa_quadratic",
        "ci",
        "kappa",
        "mcc",
        "ece",
        "macro",
        "weighted",
        "config_hash",
        "model",
        "allow_overlap",
    ):
        assert key in metrics, key
    for row in metrics["per_class"].values():
        assert set(row) == {
            "precision",
            "recall",
            "sensitivity",
            "specificity",
            "npv",
            "f1",
            "auc",
            "support",
        }
    assert metrics["n_subjects"] == 12 and metrics["n_samples"] == 14
    assert metrics["cohort"]["n_excluded"] == 1 and metrics["cohort"]["n_rejected"] == 1
    assert metrics["cohort"]["rejected_by_level"] == {"series": 1}
    assert metrics["overlap"] is False and metrics["model"]["n_models"] == 1
    assert set(metrics["by_site"]) == {"siteA", "siteB"}

    # metrics.json agrees with predictions.csv recomputed independently
    predictions = read_table(out / "predictions.csv")
    assert list(predictions.columns[:7]) == [
        "subject_id",
        "session_id",
        "label",
        "predicted",
        "prob_CN",
        "prob_MCI",
        "prob_AD",
    ]
    assert len(predictions) == 15
    scored = predictions[predictions["label"] != ""]
    classes = metrics["classes"]
    y = scored["label"].map(classes.index).to_numpy()
    probs = scored[[f"prob_{c}" for c in classes]].to_numpy()
    pred = probs.argmax(axis=1)
    assert (np.asarray(classes)[pred] == scored["predicted"].to_numpy()).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert metrics["kappa_quadratic"] == pytest.approx(
        cohen_kappa_score(y, pred, labels=[0, 1, 2], weights="quadratic")
    )
    assert metrics["confusion_matrix"] == confusion_matrix(y, pred, labels=[0, 1, 2]).tolist()
    for c, name in enumerate(classes):
        assert metrics["per_class"][name]["auc"] == pytest.approx(
            roc_auc_score(y == c, probs[:, c])
        )
        assert metrics["per_class"][name]["support"] == int((y == c).sum())
    assert metrics["n_subjects"] == scored["subject_id"].nunique()

    per_class = pd.read_csv(out / "per_class.csv")
    assert per_class["class"].tolist() == classes
    assert per_class["f1"].tolist() == pytest.approx(
        [metrics["per_class"][c]["f1"] for c in classes]
    )
    assert "auc_ci_low" in per_class
    cm = pd.read_csv(out / "confusion_matrix.csv", index_col="true")
    assert cm.to_numpy().tolist() == metrics["confusion_matrix"]
    excluded = read_table(out / "excluded.csv")
    assert excluded["subject_id"].tolist() == ["sub-nolabel"]

    for name in (
        "confusion_matrix.png",
        "confusion_matrix_normalized.png",
        "roc_curves.png",
        "reliability_diagram.png",
    ):
        assert png_ok((out / name).read_bytes()), name
    explained = sorted((out / "explain").glob("*.png"))
    assert 1 <= len(explained) <= 6 and all(png_ok(p.read_bytes()) for p in explained)

    report = parse_report(out / "report.html")
    text = " ".join(report.text)
    assert len(report.images) == 4 + len(explained)
    for src in report.images:
        assert src.startswith("data:image/png;base64,")
        assert png_ok(base64.b64decode(src.split(",", 1)[1]))
    assert "sub-bad" in text and "43 slices, expected 44" in text  # the rejected list
    assert "rejected by preprocessing (1 series)" in " ".join(text.split())
    assert "sub-nolabel" in text and metrics["config_hash"] in text
    assert (out / "config.yaml").exists() and (out / "pip_freeze.txt").exists()

    printed = capsys.readouterr().out
    assert "Balanced accuracy" in printed and f"Report: {out / 'report.html'}" in printed
    assert result.report == out / "report.html"


def test_same_config_gives_the_same_numbers(tmp_path, fakes, evaluate_cfg, cohort):
    ckpt = fakes.write_checkpoint(tmp_path / "best.pt", fakes.conv_net())
    cfg = evaluate_cfg("data.name=held", f"checkpoint={ckpt}", "evaluate.explain.enabled=false")
    first = evaluate(cfg, tmp_path / "a", log=lambda _: None).metrics
    second = evaluate(cfg, tmp_path / "b", log=lambda _: None).metrics
    for m in (first, second):
        m.pop("created")
    assert json.dumps(first, default=str) == json.dumps(second, default=str)


def test_kfold_checkpoint_is_ensembled_with_per_fold_numbers(tmp_path, fakes, evaluate_cfg, cohort):
    ckpt = fakes.write_checkpoint(tmp_path / "best.pt", fakes.conv_net(), n_folds=3)
    out = tmp_path / "report"
    metrics = evaluate(
        evaluate_cfg(
            "data.name=held", f"checkpoint={tmp_path / 'best.pt'}", "evaluate.explain.per_class=0"
        ),
        out,
        log=lambda _: None,
    ).metrics
    assert ckpt.exists() and metrics["model"]["n_models"] == 3
    predictions = read_table(out / "predictions.csv")
    classes = metrics["classes"]
    folds = [predictions[[f"fold{k}_prob_{c}" for c in classes]].to_numpy() for k in range(3)]
    ensemble = predictions[[f"prob_{c}" for c in classes]].to_numpy()
    np.testing.assert_allclose(ensemble, np.mean(folds, axis=0), atol=1e-6)
    assert not np.allclose(folds[0], folds[1])  # three different models
    scored = (predictions["label"] != "").to_numpy()
    y = predictions.loc[scored, "label"].map(classes.index).to_numpy()
    assert [f["fold"] for f in metrics["folds"]] == [0, 1, 2]
    assert [f["best_epoch"] for f in metrics["folds"]] == [1, 2, 3]
    for k, fold in enumerate(metrics["folds"]):
        assert fold["accuracy"] == pytest.approx(accuracy_score(y, folds[k][scored].argmax(axis=1)))
    assert "Per fold" in " ".join(parse_report(out / "report.html").text)


@pytest.mark.slow
def test_slices_mode_with_a_monai_network(tmp_path, fakes, evaluate_cfg, cohort):
    ckpt = fakes.write_checkpoint(
        tmp_path / "best.pt", fakes.monai_densenet(in_channels=1), slice_mode="slices", n_folds=2
    )
    out = tmp_path / "report"
    result = evaluate(
        evaluate_cfg("data.name=held", f"checkpoint={ckpt}", "evaluate.bootstrap.resamples=50"),
        out,
        log=lambda _: None,
    )
    assert result.metrics["model"]["slice_mode"] == "slices"
    assert len(list((out / "explain").glob("*.png"))) >= 1


def test_leakage_is_refused_then_allowed_loudly(tmp_path, fakes, evaluate_cfg, cohort):
    ckpt = fakes.write_checkpoint(
        tmp_path / "best.pt",
        fakes.conv_net(),
        train_subjects=["sub-003", "x"],
        val_subjects=["sub-007"],
    )
    args = ("data.name=held", f"checkpoint={ckpt}", "evaluate.explain.enabled=false")
    with pytest.raises(LeakageError, match="sub-003, sub-007"):
        evaluate(evaluate_cfg(*args), tmp_path / "refused", log=lambda _: None)
    assert not (tmp_path / "refused" / "metrics.json").exists()

    out = tmp_path / "allowed"
    metrics = evaluate(
        evaluate_cfg(*args, "evaluate.allow_overlap=true"), out, log=lambda _: None
    ).metrics
    assert metrics["allow_overlap"] and metrics["overlap_subjects"] == ["sub-003", "sub-007"]
    assert "NOT AN INDEPENDENT EVALUATION" in (out / "report.html").read_text(encoding="utf-8")


def test_a_leakage_check_model_is_flagged(tmp_path, fakes, evaluate_cfg, cohort):
    ckpt = fakes.write_checkpoint(tmp_path / "best.pt", fakes.conv_net(), shuffle_labels=True)
    said: list[str] = []
    out = tmp_path / "report"
    args = ("data.name=held", f"checkpoint={ckpt}", "evaluate.explain.enabled=false")
    metrics = evaluate(evaluate_cfg(*args), out, log=said.append).metrics
    assert metrics["model"]["shuffle_labels"] is True
    assert any("train.shuffle_labels=true" in line for line in said)
    assert "LEAKAGE-CHECK MODEL" in (out / "report.html").read_text(encoding="utf-8")


def test_absent_class_is_undefined_end_to_end(tmp_path, fakes, evaluate_cfg):
    subjects, labels = fakes.cohort_ids((4, 4, 0))
    fakes.write_cache(tmp_path / "cache" / "noad", subjects, labels)
    ckpt = fakes.write_checkpoint(tmp_path / "best.pt", fakes.conv_net())
    out = tmp_path / "report"
    evaluate(evaluate_cfg("data.name=noad", f"checkpoint={ckpt}"), out, log=lambda _: None)
    metrics = strict_json(out / "metrics.json")
    ad = metrics["per_class"]["AD"]
    assert ad["support"] == 0 and ad["recall"] is None and ad["auc"] is None
    assert metrics["ci"]["per_class"]["AD"]["recall"] is None
    assert "per_class.AD.recall" in metrics["undefined"]
    normalized = pd.read_csv(out / "confusion_matrix_normalized.csv", index_col="true")
    assert normalized.loc["AD"].isna().all()
    assert "undefined" in (out / "report.html").read_text(encoding="utf-8")


def test_a_cohort_without_labels_points_to_predict(tmp_path, fakes, evaluate_cfg):
    fakes.write_cache(tmp_path / "cache" / "unl", ["a", "b"], ["", ""])
    ckpt = fakes.write_checkpoint(tmp_path / "best.pt", fakes.conv_net())
    with pytest.raises(EvaluationError, match=r"pipeline\.predict"):
        evaluate(
            evaluate_cfg("data.name=unl", f"checkpoint={ckpt}"), tmp_path / "r", log=lambda _: None
        )
