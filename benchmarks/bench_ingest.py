"""Ingestion alone (headers + the 3 chosen slices), against whole-series readers, in one run.

    .venv/bin/python benchmarks/bench_ingest.py [--subjects 8] [--syntax RLELossless]

Writes ``--subjects`` subjects of 44 axial 256 x 256 slices (shuffled file names, a 72 kB private
block per file like a Siemens CSA header, a 3-slice localizer beside each series) and times, in
one process, best of ``--repeats`` runs on page-cached files:

(a) ``scan_subject`` + ``stack.read`` of the middle three slices (what a preprocess worker does
    before normalization);
(b) the same with the fast header reader switched off (pydicom parses every header), to show
    what :mod:`pipeline.preprocess.dicom_raw` buys;
(c) MONAI ``LoadImage(reader=PydicomReader)`` of the whole series folder, then the middle three;
(d) pydicom reading every file with its pixels.

The full preprocess benchmark (workers, normalization, cache) is ``bench_preprocess.py``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pipeline.preprocess.dicom_headers as dicom_headers
from pipeline.preprocess.dicom_raw import NeedsPydicom
from pipeline.preprocess.ingest import IngestContext, scan_subject
from pipeline.synthetic.phantom import DicomWriter, make_volume

SERIES_CFG = {"modality": "MR", "description_exclude": "(?i)localizer", "plane": "axial"}


def write_series(folder: Path, n: int, size: int, description: str, syntax: UID, seed: int) -> None:
    def csa_header(ds: Dataset, _k: int) -> None:
        ds.add_new(0x00290010, "LO", "SIEMENS CSA HEADER")
        ds.add_new(0x00291010, "OB", bytes(12000))
        ds.add_new(0x00291020, "OB", bytes(60000))

    volume = make_volume(n, size, size, seed=seed, spacing=(4.0, 0.94, 0.94),
                         origin=(-120.0, -120.0, -80.0))  # fmt: skip
    DicomWriter().series(
        folder, volume, description=description, order="shuffled", names="random",
        instance_numbers="geometric",  # MONAI's PydicomReader orders by it
        series_number=2, transfer_syntax=syntax, seed=seed, edit=csa_header,
    )  # fmt: skip


def best_of(fn: Callable[[], None], repeats: int) -> float:
    fn()  # warm imports and the page cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--syntax", default="ExplicitVRLittleEndian", help="pydicom.uid keyword")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    syntax = UID(getattr(pydicom.uid, args.syntax))
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        subjects = [root / f"sub-{i:03d}" for i in range(args.subjects)]
        for i, subject in enumerate(subjects):
            write_series(subject / "t1", 44, 256, "T1 MPRAGE", syntax, seed=i)
            write_series(subject / "loc", 3, 256, "localizer", syntax, seed=1000 + i)
        recipe = {"series": SERIES_CFG, "slices": {"expected": 44}}
        context = IngestContext.from_recipe(root, recipe)

        def ours() -> None:
            for subject in subjects:
                [stack] = scan_subject(subject.name, subject, context).stacks
                stack.read([21, 22, 23])

        def pydicom_headers() -> None:
            def refuse(*_: object) -> None:
                raise NeedsPydicom("benchmark: pydicom only")

            fast, dicom_headers.read_raw_header = dicom_headers.read_raw_header, refuse
            try:
                ours()
            finally:
                dicom_headers.read_raw_header = fast

        def monai_series() -> None:
            from monai.data import PydicomReader
            from monai.transforms import LoadImage

            load = LoadImage(reader=PydicomReader(), image_only=True)
            for subject in subjects:
                np.asarray(load(str(subject / "t1")))[..., 21:24]

        def pydicom_all() -> None:
            for subject in subjects:
                for path in subject.rglob("*"):
                    if path.is_file():
                        pydicom.dcmread(path).pixel_array  # noqa: B018

        runs = {
            "(a) ingest: headers + 3 slices": ours,
            "(b) same, pydicom for every header": pydicom_headers,
            "(c) MONAI LoadImage whole series": monai_series,
            "(d) pydicom every file + pixels": pydicom_all,
        }
        seconds = {name: best_of(fn, args.repeats) for name, fn in runs.items()}
    base = seconds["(a) ingest: headers + 3 slices"]
    print(f"{args.subjects} subjects x 44 slices 256x256, {syntax.name}, best of {args.repeats}")
    print("| reader | subjects/s | (a) is faster by |")
    print("|---|---:|---:|")
    for name, value in seconds.items():
        print(f"| {name} | {args.subjects / value:.1f} | {value / base:.1f}x |")


if __name__ == "__main__":
    main()
