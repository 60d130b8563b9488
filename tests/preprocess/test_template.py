"""Mid-brain slices wherever the slab sits: ``slices.mode=template`` (registration to MNI152) and
``slices.mode=brain`` on 2D stacks and resliced 3D volumes of generated heads whose pose is
known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.preprocess.geometry import LPS_TO_RAS
from pipeline.preprocess.ingest import IngestContext, scan_subject
from pipeline.preprocess.slices import choose_slices
from pipeline.synthetic import generate_cohort

SERIES = {"modality": "MR", "description_exclude": "(?i)localizer", "plane": "axial"}
#: Slabs placed far from the brain's centre: 25 mm for the axial series; the sagittal field of
#: view moved up to 40 mm towards the neck.
INPUTS = {
    "axial_2d": {"stack_offset_mm": 25.0, "matrix": [[96, 96]]},
    "sagittal_3d": {
        "acquisition": "sagittal_3d",
        "n_slices": 80,
        "slice_spacing_mm": [2.0, 2.0],
        "thickness_fraction": [1.0, 1.0],
        "matrix": [[128, 128]],
        "fov_mm": [256.0, 256.0],
        "stack_offset_mm": 40.0,
    },
}


def truth_index(stack, centre_ras: np.ndarray) -> float:
    """Fractional index of the slice through the template's brain centre as the generator put
    it (``HeadPose.position``)."""
    normal = np.cross(stack.affine[:3, 1], stack.affine[:3, 2])
    origins = stack.affine[:3, 3] + np.arange(stack.n_slices)[:, None] * stack.affine[:3, 0]
    along = origins @ normal
    if along[-1] < along[0]:
        normal, along = -normal, -along
    return float(np.interp(centre_ras @ normal, along, np.arange(stack.n_slices)))


@pytest.fixture(scope="module", params=sorted(INPUTS))
def subjects(request, tmp_path_factory):
    """(stack, true centre index) of two generated subjects of one kind of input."""
    out = generate_cohort(
        tmp_path_factory.mktemp(request.param),
        n_subjects=2,
        seed=4,
        p_localizer=0.0,
        **INPUTS[request.param],
    )
    root = out / "dicom"
    context = IngestContext.from_recipe(root, {"series": SERIES, "slices": {"expected": None}})
    found = []
    for row in pd.read_csv(out / "truth.csv").itertuples():
        [stack] = scan_subject(row.subject_id, root / row.subject_id, context).stacks
        centre = LPS_TO_RAS[:3, :3] @ np.array([float(v) for v in row.translation_mm.split(";")])
        found.append((stack, truth_index(stack, centre)))
    return request.param, found


@pytest.mark.slow
def test_template_and_brain_modes_find_the_brain_centre_where_the_stack_middle_does_not(
    subjects,
):
    kind, found = subjects
    misses = {"center": [], "brain": [], "template": []}
    for stack, want in found:
        for mode in misses:
            cfg = {"mode": mode, "count": 3}
            middle = choose_slices(stack.positions_mm, stack.read, cfg, stack.affine)[1]
            misses[mode].append(abs(middle - want) * stack.spacing_mm)
    # mm between the chosen middle slice and the true centre, for each subject
    assert max(misses["template"]) <= 6.0, misses
    assert max(misses["center"]) >= 15.0, misses  # the placement really is off-centre
    if kind == "sagittal_3d":
        # Brain mode on resliced volumes: the sagittal field of view holds the whole head.
        # (A 44-slice axial slab moved 25 mm cuts the head off, so its extent is biased.)
        assert all(stack.resliced for stack, _ in found)
        assert max(misses["brain"]) <= 8.0, misses


def test_template_mode_needs_the_affine():
    with pytest.raises(ValueError, match="needs the stack's affine"):
        choose_slices(
            np.arange(10.0),
            lambda idx: np.zeros((len(idx), 4, 4)),
            {"mode": "template", "count": 3},
        )
