"""What pydicom and the decoders say stays off the console: it goes with the file (its rejection
reason) and to the debug log, never as a raw warning, log record or traceback.

The damaged cohort is the issue's experiment in small: truncated, zeroed, garbage, empty and
flipped-byte files, and compressed frames no decoder can read, across several subjects."""

from __future__ import annotations

import logging
import random
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
from pydicom.uid import RLELossless

import pipeline.preprocess.dicom_headers as headers
from pipeline import cache
from pipeline.preprocess import library_noise
from pipeline.preprocess.pixels import SliceReadError
from pipeline.synthetic.phantom import PHI, DicomWriter, axial_volume, head_volume

from .test_fallback import break_rle_header
from .test_generated_cases import scan

LIBRARY_RECORD = re.compile(r"\]\[(pydicom|pylibjpeg|openjpeg|libjpeg|rle|nibabel)[.\]]")


def flip_transfer_syntax_length(path: Path) -> None:
    """XOR one byte of the (0002,0010) length: pydicom then warns about a 77-byte UI value."""
    data = bytearray(path.read_bytes())
    data[data.find(b"\x02\x00\x10\x00UI") + 6] ^= 0x5A
    path.write_bytes(bytes(data))


def garbage_after_preamble(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:132] + random.Random(path.name).randbytes(len(data) - 132))


DAMAGES = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "zeroed": lambda p: p.write_bytes(bytes(p.stat().st_size)),
    "garbage": garbage_after_preamble,
    "empty": lambda p: p.write_bytes(b""),
    "flipped": flip_transfer_syntax_length,
}


@pytest.fixture
def captured_log(caplog):
    """Everything logged, at every level, on every logger that propagates to the root."""
    caplog.set_level(logging.DEBUG)
    return caplog


def test_pydicom_warnings_go_into_the_reason_and_the_debug_log(
    tmp_path, dicom_writer, truth_volume, captured_log
):
    [path] = dicom_writer.series(tmp_path / "S1", dicom_writer.make_volume(n=1))
    flip_transfer_syntax_length(path)
    with warnings.catch_warnings(record=True) as raised:
        warnings.simplefilter("always")
        with pytest.raises(headers.DicomFileError) as err:
            headers.read_frame_headers(path)
    assert raised == []
    assert "[pydicom said: The value length (77) exceeds the maximum length of 64" in str(err.value)
    library = [r for r in captured_log.records if not r.name.startswith("pipeline")]
    assert library == []
    debug = [r.getMessage() for r in captured_log.records if r.name == library_noise.DEBUG_LOGGER]
    assert any(str(path) in m and "value length (77)" in m for m in debug)


def test_decoder_tracebacks_go_to_the_debug_log_only(
    tmp_path, dicom_writer, truth_volume, series_cfg, captured_log
):
    paths = dicom_writer.series(tmp_path / "S1", truth_volume, transfer_syntax=RLELossless)
    break_rle_header(paths[0])
    [stack] = scan(tmp_path / "S1", series_cfg).stacks
    with pytest.raises(SliceReadError) as err:
        stack.read([0])
    reason = err.value.reason(tmp_path)
    assert reason.startswith(f"cannot decode the pixels of S1/{paths[0].name} (RuntimeError")
    assert "\n" not in reason and "Invalid segment offset found in the RLE header" in reason
    assert [r for r in captured_log.records if not r.name.startswith("pipeline")] == []
    debug = "\n".join(
        r.getMessage() for r in captured_log.records if r.name == library_noise.DEBUG_LOGGER
    )
    assert "Traceback (most recent call last)" in debug


def test_quoted_values_are_blanked():
    message = "Invalid value for VR UI: '1.2.826.0.1.3680043.10.999.7x'. Also \"Doe^Jane\"\n next"
    assert library_noise.scrub(message) == "Invalid value for VR UI: '…'. Also '…' next"


def damaged_cohort(base: Path) -> tuple[Path, Path, dict[str, list[Path]], list[str]]:
    """Three good subjects, one per damage kind with two damaged files, one RLE subject whose
    frames no decoder reads. Returns root, labels, damaged files by subject, good subjects."""
    root, writer = base / "dicom", DicomWriter()
    damaged: dict[str, list[Path]] = {}
    subjects = [*(f"good-{i}" for i in range(3)), *DAMAGES, "undecodable"]
    for i, subject in enumerate(subjects):
        volume = axial_volume(head_volume(12, 40, 36, seed=i), spacing=4.0, pixel_spacing=2.0)
        syntax = RLELossless if subject == "undecodable" else "1.2.840.10008.1.2.1"
        paths = writer.series(
            root / subject / "t1", volume, names="random", seed=i, transfer_syntax=syntax
        )
        if subject in DAMAGES:
            damaged[subject] = paths[3:5]
            for path in damaged[subject]:
                DAMAGES[subject](path)
        elif subject == "undecodable":
            damaged[subject] = paths  # every frame: no series of this subject can be decoded
            for path in paths:
                break_rle_header(path)
    labels = base / "labels.csv"
    labels.write_text("subject_id,label\n" + "".join(f"{s},CN\n" for s in subjects))
    return root, labels, damaged, subjects[:3]


@pytest.mark.slow
def test_damaged_cohort_log_has_no_library_noise(tmp_path, repo_root):
    root, labels, damaged, good = damaged_cohort(tmp_path)
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.preprocess",
            "data=custom",
            f"data.root={root}",
            f"data.labels={labels}",
            "data.name=damaged",
            f"paths.cache={tmp_path / 'cache'}",
            "slices.expected=12",
            "normalize.size=32",
            "preprocess.workers=2",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [job_log] = [p for p in run_dir.glob("*.log") if not p.name.endswith("_debug.log")]
    for where, text in [
        ("stdout", done.stdout),
        ("stderr", done.stderr),
        (job_log.name, job_log.read_text()),
    ]:
        assert "Traceback" not in text, where
        assert "Warning:" not in text and "warn(" not in text, where  # raw warnings
        assert not LIBRARY_RECORD.search(text), where  # library loggers' records
    debug_log = next(run_dir.glob("*_debug.log")).read_text()
    assert "Traceback (most recent call last)" in debug_log  # the decoders' tracebacks
    assert "The value length (77) exceeds the maximum length of 64" in debug_log
    for secret in (*PHI.values(), "1.2.826.0.1.3680043.10.999"):
        assert secret not in debug_log

    out = tmp_path / "cache" / "damaged"
    rejected = pd.read_csv(out / cache.REJECTED, keep_default_na=False)
    files = rejected[rejected["level"] == "file"].set_index("path")["reason"]
    for subject, paths in damaged.items():
        names = [path.relative_to(root).as_posix() for path in paths]
        listed = [name for name in names if name in files.index]
        # Header damage shows in every file; a frame's damage only in the first one decoded.
        assert listed == names if subject in DAMAGES else len(listed) == 1, subject
        if subject == "undecodable":
            assert files[listed[0]].startswith("pixels cannot be decoded (RuntimeError")
    assert not rejected["reason"].str.contains(str(tmp_path), regex=False).any()
    manifest = pd.read_csv(out / cache.MANIFEST)
    assert sorted(manifest["subject_id"]) == good
