"""3D sagittal volumes through ``preprocess_cohort`` with the default plane: resliced to axial,
said so in the manifest and the QC montage, and no header identifier in any output."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline import cache
from pipeline.preprocess.run import preprocess_cohort
from pipeline.synthetic import generate_cohort
from pipeline.synthetic.subject import identity_columns
from tests.helpers import compose_in

pytestmark = pytest.mark.slow

SAGITTAL = {
    "acquisition": "sagittal_3d",
    "n_slices": 48,
    "slice_spacing_mm": [2.5, 2.5],
    "thickness_fraction": [1.0, 1.0],
    "matrix": [[96, 96]],
    "fov_mm": [240.0, 240.0],
}


@pytest.mark.parametrize("multiframe", [False, True], ids=["classic", "enhanced"])
def test_sagittal_volumes_are_resliced_and_leak_nothing(tmp_path, multiframe):
    cohort = generate_cohort(
        tmp_path / "cohort",
        n_subjects=3,
        seed=2,
        p_localizer=1.0,
        multiframe=multiframe,
        **SAGITTAL,
    )
    cfg = compose_in(
        tmp_path,
        "preprocess",
        f"data.root={cohort / 'dicom'}",
        f"data.labels={cohort / 'labels.csv'}",
        "data.name=sag",
        "slices.expected=null",
        "normalize.size=32",
        "preprocess.workers=1",
        "preprocess.progress=false",
    )
    out = preprocess_cohort(cfg)
    loaded = cache.load_cohort(out)
    manifest = loaded.manifest
    assert len(manifest) == 3 and loaded.images.shape == (3, 3, 32, 32)
    assert manifest["acquired_plane"].tolist() == ["sagittal"] * 3
    assert manifest["resliced"].tolist() == [True] * 3
    assert manifest["n_slices"].tolist() == [96] * 3  # axial slices: rows of the frames
    assert (out / cache.QC_MONTAGE).exists()

    truth = pd.read_csv(cohort / "truth.csv", dtype=str)
    secrets = {v.encode() for c in identity_columns() for v in truth[c]}
    outputs = [p for p in out.rglob("*") if p.is_file()]
    assert len(outputs) >= 5
    for path in outputs:
        content = path.read_bytes()
        for secret in secrets:
            assert secret not in content, f"{secret!r} leaked into {path}"
