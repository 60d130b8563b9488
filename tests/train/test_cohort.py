"""Labels and pixels of the cache as training checks them: clear errors that name the problem."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.train.cohort import check_finite, class_indices, count_classes, rebuild_command
from pipeline.train.errors import TrainError

CLASSES = ["CN", "MCI", "AD"]


def _manifest(labels: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject_id": [f"s{i}" for i in range(len(labels))],
            "session_id": [""] * len(labels),
            "label": labels,
        }
    )


def test_class_indices_follow_the_configured_order() -> None:
    got = class_indices(_manifest(["AD", "CN", "MCI", "CN"]), CLASSES, "m.csv")
    assert got.tolist() == [2, 0, 1, 0]


def test_empty_class_is_an_error_with_counts() -> None:
    with pytest.raises(TrainError, match=r"\['AD'\] have no subjects \(CN=2, MCI=1, AD=0\)"):
        class_indices(_manifest(["CN", "CN", "MCI"]), CLASSES, "m.csv")


def test_unknown_label_is_an_error() -> None:
    with pytest.raises(TrainError, match=r"labels \['SMC'\] are not in data.classes"):
        class_indices(_manifest(["CN", "MCI", "AD", "SMC"]), CLASSES, "m.csv")


def test_unlabeled_rows_are_an_error() -> None:
    with pytest.raises(TrainError, match="have no label"):
        class_indices(_manifest(["CN", "", "AD", "MCI"]), CLASSES, "m.csv")


def test_nan_pixels_name_the_subject() -> None:
    images = np.zeros((600, 3, 4, 4), dtype=np.float32)  # spans several check chunks
    images[517, 1, 2, 2] = np.nan
    images[3, 0, 0, 0] = np.inf
    manifest = _manifest(["CN"] * 600)
    with pytest.raises(TrainError, match=r"2 row\(s\) have NaN/Inf pixels \(\['s3', 's517'\]\)"):
        check_finite(images, manifest, "images.npy")
    check_finite(np.zeros((5, 3, 4, 4), dtype=np.float32), manifest.iloc[:5], "images.npy")


def test_class_counts_count_subjects_and_sessions() -> None:
    counts = count_classes(["a", "a", "b", "c"], np.array([0, 0, 2, 2]), CLASSES)
    assert counts.subjects == (1, 0, 2)
    assert counts.rows == (2, 0, 2)
    assert "total" in counts.table()


def test_rebuild_command_repeats_the_recipe_overrides() -> None:
    text = rebuild_command("mine", "/data/x", None, ["normalize.size=64"])
    assert text == (
        "python -m pipeline.preprocess data.name=mine data.root=/data/x data.labels=FILE "
        "normalize.size=64"
    )
