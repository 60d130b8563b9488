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
from pipeline.train import train

pytestmark = pytest.mark.slow

LEARN = ("trainer.max_epochs=15", "train.batch_size=8", "train.lr=3e-3")  # small, fast settings


def _pca_logistic_bal_acc(cache, run) -> float:
    """PCA + logistic regression on the pixels, same training/validation subjects as the CNN."""
    cohort = load_cohort(cache)
    split = pd.read_csv(run / "split.csv", dtype={"subject_id": str})
    train_ids = set(split.loc[split["role"] == "train", "subject_id"])
    is_train = cohort.manifest["subject_id"].isin(train_ids).to_numpy()
    x = np.asarray(cohort.images).reshape(len(cohort), -1)
    y = cohort.manifest["label"].to_numpy()
    baseline = make_pipeline(
        StandardScaler(), PCA(n_components=20, random_state=0), LogisticRegression(max_iter=2000)
    )
    baseline.fit(x[is_train], y[is_train])
    return balanced_accuracy_score(y[~is_train], baseline.predict(x[~is_train]))


def test_default_model_learns_above_a_linear_baseline(
    tmp_path, train_cfg, fake_cache, quick_freeze
) -> None:
    cfg = train_cfg(*LEARN, "train.val_fraction=0.3")
    cache = fake_cache(cfg, n_subjects=90)
    result = train(cfg, tmp_path / "run")
    cnn = result.mean_val_bal_acc
    linear = _pca_logistic_bal_acc(cache, tmp_path / "run")
    print(f"CNN {cnn:.3f} vs PCA+LR {linear:.3f}")
    assert cnn >= 0.70, cnn
    assert cnn >= linear + 0.15, (cnn, linear)


def test_shuffled_labels_land_near_chance(tmp_path, train_cfg, fake_cache, quick_freeze) -> None:
    cfg = train_cfg(*LEARN, "train.val_fraction=0.5", "train.shuffle_labels=true")
    fake_cache(cfg, n_subjects=90)
    result = train(cfg, tmp_path / "run")
    print(f"shuffled labels: {result.mean_val_bal_acc:.3f}")
    assert abs(result.mean_val_bal_acc - 1 / 3) < 0.2, result.mean_val_bal_acc
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt["shuffle_labels"] is True
    # the permutation keeps the class counts of the real labels
    split = pd.read_csv(tmp_path / "run" / "split.csv")
    assert len(split) == 90
