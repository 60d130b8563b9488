"""SubjectRecord: the one reader and writer of a subject's record, through its result file."""

from __future__ import annotations

import dataclasses
import json
import pickle

import numpy as np
import pytest

from pipeline.config import recipe_config
from pipeline.preprocess.record import StackRecord, SubjectContext, SubjectRecord
from pipeline.preprocess.results import ResultStore, SubjectTask
from pipeline.preprocess.stack import Rejection

STACK = StackRecord(
    subject_id="007", session_id="bl", source_format="dicom", series_hash="ab12",
    source_hash="cd34", n_slices=44, slice_spacing_mm=4.0, slice_indices="21;22;23",
    slice_positions_mm="-4.00;0.00;4.00", pixel_spacing_mm="0.9375;0.9375", rows=256, cols=256,
    acquired_plane="axial", resliced=False,
)  # fmt: skip
RECORD = SubjectRecord(
    subject_id="007",
    key="k1",
    stacks=(STACK,),
    rejections=(Rejection("007", "bl", "007/loc", "series", "localizer"),),
    n_files=47,
    n_non_dicom=1,
    seconds=0.02,
    cpu_s={"scan": 0.004, "normalize": 0.003},
    peak_rss_mb=300.0,
)


def test_record_survives_its_result_file(tmp_path) -> None:
    store = ResultStore(tmp_path)
    task = SubjectTask("007", str(tmp_path / "007"), None, "fingerprint")
    path = store.path(task, "recipe")
    store.save(path, np.zeros((1, 3, 8, 8), np.float32), RECORD)
    assert store.read_record(path) == RECORD
    assert RECORD.stacks[0].as_row()["slice_indices"] == "21;22;23"


def test_record_json_is_the_dataclass_as_a_whole() -> None:
    # to_json copies the fields itself (asdict is slower): the same JSON, nested records too
    assert RECORD.to_json() == json.dumps(dataclasses.asdict(RECORD), sort_keys=True)
    assert STACK.as_row() == dataclasses.asdict(STACK)
    assert RECORD.rejections[0].as_row() == dataclasses.asdict(RECORD.rejections[0])


def test_a_record_written_before_cpu_times_still_reads() -> None:
    old = json.loads(RECORD.to_json())
    del old["cpu_s"]
    assert SubjectRecord.from_json(json.dumps(old)).cpu_s == {}


def test_foreign_json_is_not_a_record() -> None:
    data = json.loads(RECORD.to_json()) | {"surprise": 1}
    with pytest.raises(ValueError, match="surprise"):
        SubjectRecord.from_json(json.dumps(data))
    with pytest.raises(KeyError):
        SubjectRecord.from_json(json.dumps({"subject_id": "x", "key": "k"}))


def test_record_not_matching_its_images_is_damaged(tmp_path) -> None:
    store = ResultStore(tmp_path)
    path = tmp_path / "subjects" / "x.npz"
    store.save(path, np.zeros((2, 3, 8, 8), np.float32), RECORD)  # 2 images, 1 stack
    assert store.read_record(path) is None and not path.exists()


def test_context_builds_its_normalizer_once_and_does_not_pickle_it(preprocess_cfg, tmp_path):
    recipe = recipe_config(preprocess_cfg)
    context = SubjectContext.from_recipe(tmp_path, recipe, "recipe-hash", tmp_path / "cache")
    first = context.normalizer
    assert context.normalizer is first and first.size == recipe["normalize"]["size"]
    copy = pickle.loads(pickle.dumps(context))
    assert "normalizer" not in copy.__dict__  # what a worker receives holds no MONAI chain
    assert copy == context and copy.normalizer is not first
    assert copy.normalizer.size == first.size
