"""Real labels are learnt clearly above a linear baseline; shuffled labels stay near chance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.cache import load_cohort
from pipeline.checkpoint import load_checkpoint
from pipeline.config import compose
from pipeline.preprocess.run import preprocess_cohort
from pipeline.synthetic import generate_cohort
from pipeline.train import train

pytestmark = pytest.mark.slow

#: Small, fast settings.
LEARN = ("trainer.max_epochs=15", "datamodule.batch_size=8", "model.optimizer.lr=3e-3")


def _pca_logistic_bal_acc(cache, run) -> float:
    """PCA + logistic regression on the pixels, same training/validation subjects as the CNN
    (class-balanced, as the CNN's loss)."""
    cohort = load_cohort(cache)
    split = pd.read_csv(run / "split.csv", dtype={"subject_id": str})
    train_ids = set(split.loc[split["role"] == "train", "subject_id"])
    is_train = cohort.manifest["subject_id"].isin(train_ids).to_numpy()
    x = np.asarray(cohort.images).reshape(len(cohort), -1)
    y = cohort.manifest["label"].to_numpy()
    baseline = make_pipeline(
        StandardScaler(),
        PCA(n_components=20, random_state=0),
        LogisticRegression(max_iter=2000, class_weight="balanced"),
    )
    baseline.fit(x[is_train], y[is_train])
    return balanced_accuracy_score(y[~is_train], baseline.predict(x[~is_train]))


def test_default_model_learns_above_a_linear_baseline(
    tmp_path, train_cfg, fake_cache, quick_freeze
) -> None:
    cfg = train_cfg(*LEARN, "split.val_fraction=0.3")
    cache = fake_cache(cfg, n_subjects=90)
    result = train(cfg, tmp_path / "run")
    cnn = result.mean_val_bal_acc
    linear = _pca_logistic_bal_acc(cache, tmp_path / "run")
    print(f"CNN {cnn:.3f} vs PCA+LR {linear:.3f}")
    assert cnn >= 0.70, cnn
    assert cnn >= linear + 0.15, (cnn, linear)


def test_default_model_learns_the_demo_cohort_above_a_linear_baseline(tmp_path, quick_freeze):
    """The demo generator's anatomy and scanner (200 subjects, site A), written as DICOM,
    preprocessed and trained through the real stages with the default network and
    augmentation; smaller images and fewer epochs than the demo, so it runs in about 30 s."""
    cohort = generate_cohort(
        tmp_path / "demo", n_subjects=200, seed=0, workers=2, matrix=[[128, 128]]
    )
    paths = [f"paths.cache={tmp_path / 'cache'}", "data.name=mini", "normalize.size=64"]
    pre = compose(
        "preprocess",
        [
            *paths,
            f"data.root={cohort / 'dicom'}",
            f"data.labels={cohort / 'labels.csv'}",
            "preprocess.progress=false",
        ],
    )
    cfg = compose(
        "train",
        [
            *paths,
            "trainer.max_epochs=40",
            "trainer.min_epochs=10",
            "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
            "split.val_fraction=0.3",
            "datamodule.batch_size=16",
        ],
    )
    cache = preprocess_cohort(pre)
    result = train(cfg, tmp_path / "run")
    cnn = result.mean_val_bal_acc
    linear = _pca_logistic_bal_acc(cache, tmp_path / "run")
    print(f"demo-like cohort: CNN {cnn:.3f} vs PCA+LR {linear:.3f}")
    assert cnn >= 0.55, cnn
    assert cnn >= linear + 0.15, (cnn, linear)


def test_shuffled_labels_land_near_chance(tmp_path, train_cfg, fake_cache, quick_freeze) -> None:
    """The same learnable cohort (see the first test: 0.8+) with labels permuted by subject:
    nothing is left to learn, so validation stays at chance, 1/3, both for the saved (best)
    epoch and on average over the epochs. 90 validation subjects keep the noise near 0.05."""
    cfg = train_cfg(*LEARN, "split.val_fraction=0.5", "train.shuffle_labels=true")
    fake_cache(cfg, n_subjects=180)
    result = train(cfg, tmp_path / "run")
    per_epoch = pd.read_csv(tmp_path / "run" / "metrics.csv")["val_bal_acc"].dropna()
    print(f"shuffled labels: best {result.mean_val_bal_acc:.3f}, mean {per_epoch.mean():.3f}")
    assert abs(result.mean_val_bal_acc - 1 / 3) < 0.1, result.mean_val_bal_acc
    assert abs(per_epoch.mean() - 1 / 3) < 0.08, per_epoch.tolist()
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.shuffle_labels is True
    split = pd.read_csv(tmp_path / "run" / "split.csv")
    assert len(split) == 180
