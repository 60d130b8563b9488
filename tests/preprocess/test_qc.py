"""The QC montage: a balanced, deterministic sample drawn into a PNG that opens."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pandas as pd

from pipeline.preprocess.qc import TITLE_PX, montage, sample_rows, write_qc_montage


def manifest(labels: list[str]) -> pd.DataFrame:
    n = len(labels)
    return pd.DataFrame(
        {
            "row": range(n),
            "subject_id": [f"s{i:02d}" for i in range(n)],
            "session_id": [""] * n,
            "label": labels,
            "slice_positions_mm": ["-4.00;0.00;4.00"] * n,
        }
    )


def test_sample_is_balanced_spread_and_deterministic():
    frame = manifest(["CN", "MCI", "AD"] * 8)
    rows = sample_rows(frame, 6)
    assert len(rows) == 6
    assert sorted(frame.loc[rows, "label"]) == ["AD", "AD", "CN", "CN", "MCI", "MCI"]
    assert rows[0] < 3 and rows[-1] > 20  # from both ends of the cohort, not the first six
    assert rows == sample_rows(frame, 6)
    rare = manifest(["CN"] * 8 + ["AD"] * 2)
    assert set(rare.loc[sample_rows(rare, 6), "label"]) == {"CN", "AD"}
    assert sample_rows(rare, 50) == list(range(10))
    assert sample_rows(manifest([]), 5) == []


def test_montage_png_opens(tmp_path):
    images = np.random.default_rng(0).random((5, 3, 32, 32)).astype(np.float32)
    path = write_qc_montage(tmp_path / "qc.png", images, manifest(["CN", "AD"] * 2 + [""]), 4)
    picture = matplotlib.image.imread(path)
    rows = sample_rows(manifest(["CN", "AD"] * 2 + [""]), 4)
    gap, tile = 4, 32 + 4  # four subjects: one per line, slices at their own size
    assert picture.shape[:2] == (TITLE_PX + len(rows) * tile, 3 * tile + gap)
    # The middle of a tile (no text there) shows that subject's slice, in its display window.
    canvas = montage(images, rows, per_line=1, gap=gap)
    y, x = TITLE_PX + tile + 16, gap + tile + 16  # second subject, second slice
    assert abs(picture[y, x, 0] - canvas[tile + 16, gap + tile + 16]) < 1.5 / 255
    assert write_qc_montage(tmp_path / "none.png", images[:0], manifest([]), 4) is None
    assert not (tmp_path / "none.png").exists()
