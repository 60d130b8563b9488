"""SubjectRecord: the one reader and writer of a subject's record, through its result file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.preprocess.record import StackRecord, SubjectRecord
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
