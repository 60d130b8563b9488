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

With ``--cohort DIR`` (the demo cohort: ``--cohort data/demo/dev/dicom``), or ``--from-file
FILE`` (44 slices written from one real file, e.g. nibabel's Siemens
``nibabel/nicom/tests/data/0.dcm``), it times the header readers alone on every file of that
cohort that the fast reader takes (the others go to pydicom whatever reader is chosen), best of
``--repeats`` passes, in one process:

(h1) :func:`pipeline.preprocess.dicom_raw.read_raw_header`, the hand-written reader: raw bytes
     of the wanted elements and where the pixel data lies;
(h2) ``dicomsdl.open_file`` up to the pixel data, its values of the same elements and the pixel
     data's offset and length (the same work), when dicomsdl is installed
     (``pip install dicomsdl==0.109.4``, the ``bench`` extra);
(h3) pydicom ``dcmread(stop_before_pixels, specific_tags)``, what the reader falls back to;
(h4) :func:`pipeline.preprocess.dicom_headers.read_frame_headers`, the whole header scan of a
     file (reader, value decoding, checks), for scale;
(h5) the same frames through :class:`pipeline.preprocess.dicom_siblings.SiblingReader`, one
     per folder, as ingestion reads them: each file compared with a sibling read before.

and opens every DICOM file bundled with pydicom and nibabel with dicomsdl, each in its own
process (a crash must not end the benchmark), to say which it reads (non-images without Rows
included), refuses or crashes on.

The full preprocess benchmark (workers, normalization, cache) is ``bench_preprocess.py``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
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
from pipeline.preprocess.dicom_raw import NeedsPydicom, read_raw_header
from pipeline.preprocess.dicom_siblings import SiblingReader
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


def fast_path_files(root: Path) -> list[Path]:
    """Every file under ``root`` that the hand-written reader takes."""
    files = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            try:
                with open(path, "rb") as fh:
                    read_raw_header(fh, dicom_headers.WANTED_TAGS)
            except (NeedsPydicom, OSError):
                continue
            files.append(path)
    return sorted(files)


def header_readers(files: list[Path]) -> dict[str, Callable[[], None]]:
    """The header readers of ``--cohort``, each reading the same values of every file."""
    wanted = dicom_headers.WANTED_TAGS
    tags = sorted(wanted)

    def hand_written() -> None:
        for path in files:
            with open(path, "rb") as fh:
                read_raw_header(fh, wanted)

    def pydicom_headers() -> None:
        for path in files:
            pydicom.dcmread(path, stop_before_pixels=True, specific_tags=tags)

    def scan_files() -> None:
        for path in files:
            dicom_headers.read_frame_headers(path)

    readers = {"(h1) hand-written reader (dicom_raw)": hand_written}
    try:
        import dicomsdl
    except ImportError:
        print("dicomsdl is not installed: pip install dicomsdl==0.109.4 (the bench extra)")
    else:
        names = [str(path) for path in files]

        def with_dicomsdl() -> None:
            for name in names:
                ds = dicomsdl.open_file(name, 0x7FE00010)
                ds.getValues(tags)
                pixels = ds.getDataElement(0x7FE00010)
                pixels.offset(), pixels.length()

        readers["(h2) dicomsdl.open_file + values"] = with_dicomsdl
    readers["(h3) pydicom dcmread, specific tags"] = pydicom_headers
    readers["(h4) read_frame_headers (whole scan)"] = scan_files

    def as_siblings() -> None:
        reader, folder = SiblingReader(), None
        for path in files:
            if path.parent != folder:  # one reader a folder, as ingestion has one a subject
                reader, folder = SiblingReader(), path.parent
            reader.read(path)

    readers["(h5) the same, each file as a sibling (dicom_siblings)"] = as_siblings
    return readers


_DICOMSDL_OPEN = """
import sys, dicomsdl
dicomsdl.set_loglevel(dicomsdl.LogLevel.DISABLE)
try:
    ds = dicomsdl.open_file(sys.argv[1], 0x7FE00010)
    rows = ds.getValues(["Rows"])[0]
except Exception as err:
    print("refused:", type(err).__name__, str(err)[:60]); sys.exit(0)
print("read" if rows is not None else "read, no Rows")
"""


def dicomsdl_on_real_files() -> list[tuple[str, str]]:
    """(file, outcome) for every DICOM file bundled with pydicom and nibabel, opened by dicomsdl
    in a process of its own: "read", "refused: ..." or "crashed (signal N)"."""
    import nibabel
    from pydicom.data import get_testdata_file

    folders = [
        Path(get_testdata_file("MR_small.dcm")).parent,
        Path(nibabel.__file__).parent / "nicom" / "tests" / "data",
    ]
    outcomes = []
    for path in sorted(p for folder in folders for p in folder.glob("*.dcm")):
        done = subprocess.run([sys.executable, "-c", _DICOMSDL_OPEN, str(path)],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        crashed = f"crashed (signal {-done.returncode})"
        outcomes.append((path.name, done.stdout.strip() if done.returncode >= 0 else crashed))
    return outcomes


def bench_cohort(root: Path, repeats: int) -> None:
    files = fast_path_files(root)
    print(f"{len(files)} files under {root} take the fast path; best of {repeats} passes")
    seconds = {name: best_of(fn, repeats) for name, fn in header_readers(files).items()}
    base = seconds["(h1) hand-written reader (dicom_raw)"]
    print("| header reader | us per file | time / (h1) |")
    print("|---|---:|---:|")
    for name, value in seconds.items():
        print(f"| {name} | {1e6 * value / len(files):.1f} | {value / base:.2f} |")
    try:
        import dicomsdl  # noqa: F401
    except ImportError:
        return
    outcomes = dicomsdl_on_real_files()
    failed = [(name, outcome) for name, outcome in outcomes if not outcome.startswith("read")]
    print(f"dicomsdl on the {len(outcomes)} bundled pydicom/nibabel DICOM files: "
          f"{len(outcomes) - len(failed)} read, {len(failed)} not:")  # fmt: skip
    for name, outcome in failed:
        print(f"  {name}: {outcome}")


def series_from_file(source: Path, folder: Path, n: int) -> Path:
    """``n`` slices of one series written from the real file ``source``: its whole header (a
    Siemens CSA header, say) with a new instance UID, number and position in each slice."""
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(source)
    ds.SeriesInstanceUID = generate_uid()
    x, y, z = (float(v) for v in ds.get("ImagePositionPatient", (0.0, 0.0, 0.0)))
    for k in range(n):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [x, y, round(z + 3.1 * k, 4)]
        ds.SliceLocation = round(z + 3.1 * k, 4)
        ds.save_as(folder / f"IM{k:04d}.dcm")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--syntax", default="ExplicitVRLittleEndian", help="pydicom.uid keyword")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cohort", type=Path, help="time the header readers on this cohort")
    parser.add_argument(
        "--from-file", type=Path,
        help="time the header readers on 44 slices written from this real DICOM file",
    )  # fmt: skip
    args = parser.parse_args()
    if args.from_file is not None:
        warnings.simplefilter("ignore")
        with tempfile.TemporaryDirectory() as tmp:
            bench_cohort(series_from_file(args.from_file, Path(tmp), 44), args.repeats)
        return
    if args.cohort is not None:
        warnings.simplefilter("ignore")
        bench_cohort(args.cohort, args.repeats)
        return
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
