"""Preprocess throughput and memory against two baselines, measured in one run.

    .venv/bin/python benchmarks/bench_preprocess.py          # a fresh demo-like cohort
    .venv/bin/python benchmarks/bench_preprocess.py --cohort data/demo/dev/dicom \\
        --labels data/demo/dev/labels.csv                    # the demo cohort already on disk

Without ``--cohort`` it generates ``--subjects`` subjects with the demo generator
(``pipeline.synthetic.generate_cohort``, site A); ``--simple`` writes plain phantoms instead.

Compares, on the same subjects and the same (page-cached) files:

(a) ``preprocess_cohort`` as users run it: headers only, decode just the chosen slices,
    MONAI normalization, cache assembly and QC montage, ``--workers`` processes; also with
    one process, so the speed-up of reading less is visible apart from parallelism;
(b) MONAI ``LoadImage(reader=PydicomReader)`` of each subject's whole series folder, then
    slicing the middle three slices (one process; normalization not even included);
(c) pydicom reading every file of the subject with its pixels (one process).

and the peak resident memory of a preprocess worker for two cohort sizes (it must not grow with
the cohort). Each (a) run is a fresh child process, so memory figures do not mix. Prints ratios
(targets: a/b >= 5) and a Markdown table the README can quote.

``--volume`` measures 3D volumes instead (:func:`volume_benchmark`): a demo-generator cohort
whose T1 is a sagittal 3D volume (``--volume-slices`` frames of 256 x 256 at 1 mm), resliced
to axial by ``preprocess_cohort``, against MONAI ``LoadImage(PydicomReader)`` plus
``Orientation("RAS")`` and the middle three axial slices, in the same run (target >= 3x), with
the worker's peak memory for two cohort sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


# --------------------------------------------------------------------------------------------
# Plain phantoms (--simple): 44 axial slices of 256 x 256, a localizer, a junk file.


def write_phantom_cohort(root: Path, n_subjects: int, seed: int = 0) -> Path:
    """Write ``n_subjects`` DICOM subjects under ``root/dicom`` and ``root/labels.csv``."""
    from pipeline.synthetic.phantom import DicomWriter, axial_volume, head_volume

    lines = ["subject_id,label"]
    for s in range(n_subjects):
        sid = f"sub-{s:04d}"
        lines.append(f"{sid},{('CN', 'MCI', 'AD')[s % 3]}")
        writer = DicomWriter()  # one study per subject
        for name, n, description in (("t1", 44, "T1 AX"), ("loc", 3, "LOC")):
            pixels = head_volume(n, 256, 256, seed=seed + 2 * s + (name == "loc"))
            volume = axial_volume(pixels, pixel_spacing=0.9, origin=(-115.0, -115.0, -80.0))
            writer.series(
                root / "dicom" / sid / name, volume, description=description, order="shuffled",
                names="random", instance_numbers="geometric", seed=s, series_number=2,
            )  # fmt: skip
        (root / "dicom" / sid / "README.txt").write_text("exported by the benchmark\n")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


# --------------------------------------------------------------------------------------------
# Wall and CPU time: the machine may be shared, so CPU-seconds per subject (this process and
# its finished children, i.e. the workers) are reported beside the throughput.


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


class Clock:
    """``with Clock() as c: ...`` then ``c.wall``, ``c.cpu`` in seconds."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, cpu_seconds() - self.cpu


# --------------------------------------------------------------------------------------------
# (a) ours, in a fresh child process per run


def child(args: argparse.Namespace) -> None:
    """Run preprocess_cohort once and print its figures as JSON (called by :func:`run_ours`)."""
    from pipeline.config import compose
    from pipeline.preprocess.run import preprocess_cohort
    from pipeline.preprocess.subject import peak_rss_mb

    overrides = json.loads(args.child)
    cfg = compose("preprocess", overrides)
    with Clock() as clock:
        out = preprocess_cohort(cfg)
    prov = json.loads((out / "provenance.json").read_text())
    print(
        json.dumps(
            {
                "seconds": clock.wall,
                "cpu_seconds": clock.cpu,
                "accepted": prov["counts"]["rows"],
                "worker_peak_rss_mb": prov["timings"].get("worker_peak_rss_mb"),
                "timings": prov["timings"],
                "main_peak_rss_mb": peak_rss_mb(),
            }
        )
    )


def run_ours(
    root: Path, labels: Path, cache: Path, name: str, workers: int, extra: tuple[str, ...] = ()
) -> dict:
    overrides = [*extra,
        f"data.root={root}",
        f"data.labels={labels}",
        f"data.name={name}",
        f"paths.cache={cache}",
        f"preprocess.workers={workers}",
        "preprocess.force=true",
        "preprocess.progress=false",
    ]
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(overrides)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# (b), (c) baselines


def series_files(root: Path, subject_ids: list[str]) -> dict[str, list[Path]]:
    """Each subject's largest series (untimed set-up: the baselines get it for free)."""
    import pydicom

    out = {}
    for sid in subject_ids:
        groups: dict[str, list[Path]] = defaultdict(list)
        for path in sorted(p for p in (root / sid).rglob("*") if p.is_file()):
            try:
                ds = pydicom.dcmread(
                    path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"]
                )
            except Exception:
                continue
            if "SeriesInstanceUID" in ds:
                groups[str(ds.SeriesInstanceUID)].append(path)
        out[sid] = max(groups.values(), key=len)
    return out


def series_folders(series: dict[str, list[Path]], under: Path) -> dict[str, Path]:
    """One folder of links per series, as LoadImage expects (untimed set-up)."""
    folders = {}
    for sid, files in series.items():
        folder = under / sid
        folder.mkdir(parents=True, exist_ok=True)
        for f in files:
            (folder / f.name).symlink_to(f)
        folders[sid] = folder
    return folders


def monai_baseline(series: dict[str, list[Path]], scratch: Path) -> Clock:
    """LoadImage(PydicomReader) of each series folder, then the middle three slices."""
    from monai.data import PydicomReader
    from monai.transforms import LoadImage

    folders = series_folders(series, scratch / "series")
    loader = LoadImage(reader=PydicomReader(), image_only=True)
    with Clock() as clock:
        for folder in folders.values():
            volume = loader(str(folder))
            mid = volume.shape[-1] // 2
            _ = np.asarray(volume[..., mid - 1 : mid + 2])
    return clock


def pydicom_baseline(root: Path, subject_ids: list[str]) -> Clock:
    """pydicom.dcmread of every file of each subject, with its pixels."""
    import pydicom

    with Clock() as clock:
        for sid in subject_ids:
            for path in (root / sid).rglob("*"):
                if not path.is_file():
                    continue
                try:
                    _ = pydicom.dcmread(path).pixel_array
                except Exception:
                    continue
    return clock


# --------------------------------------------------------------------------------------------
# --volume: 3D sagittal volumes resliced to axial


def sagittal_volume_settings(n_slices: int) -> dict:
    """Generator overrides for a sagittal MP-RAGE-like T1 (pipeline/synthetic, data/README)."""
    return {
        "acquisition": "sagittal_3d",
        "n_slices": n_slices,
        "slice_spacing_mm": [1.0, 1.0],
        "thickness_fraction": [1.0, 1.0],
        "matrix": [[256, 256]],
        "fov_mm": [256.0, 256.0],
    }


def monai_volume_baseline(series: dict[str, list[Path]], scratch: Path) -> Clock:
    """LoadImage(PydicomReader) of each series, Orientation to RAS, the middle 3 axial slices."""
    from monai.data import PydicomReader
    from monai.transforms import Compose, LoadImage, Orientation

    folders = series_folders(series, scratch / "volume_series")
    load = Compose(
        [
            LoadImage(reader=PydicomReader(), image_only=True, ensure_channel_first=True),
            Orientation(axcodes="RAS"),
        ]
    )
    with Clock() as clock:
        for folder in folders.values():
            volume = load(str(folder))
            mid = volume.shape[-1] // 2
            _ = np.asarray(volume[0, :, :, mid - 1 : mid + 2])
    return clock


def volume_benchmark(args: argparse.Namespace, scratch: Path) -> None:
    """Ours (``preprocess_cohort``, reslicing) against MONAI load + reorient, same subjects."""
    from pipeline.synthetic import generate_cohort

    t = time.perf_counter()
    settings = sagittal_volume_settings(args.volume_slices)
    generate_cohort(scratch / "volumes", n_subjects=args.subjects, seed=0, workers=2, **settings)
    root, labels = scratch / "volumes" / "dicom", scratch / "volumes" / "labels.csv"
    print(f"generated {args.subjects} sagittal 3D subjects ({args.volume_slices} frames of "
          f"256 x 256) in {time.perf_counter() - t:.1f} s")
    ids = sorted(p.name for p in root.iterdir() if p.is_dir())
    n_small = min(args.small, len(ids))
    extra = ("slices.expected=null",)
    pydicom_baseline(root, ids)  # warm the page cache and imports for every contender
    cache = scratch / "volume_cache"
    ours = run_ours(root, labels, cache, "volumes", args.workers, extra)
    ours_1 = run_ours(root, labels, cache, "volumes1", 1, extra)
    small = run_ours(root, labels_subset(labels, n_small, scratch), cache, "volumes_small",
                     args.workers, extra)
    base_ids = ids[: min(args.baseline_subjects, len(ids))]
    monai = monai_volume_baseline(series_files(root, base_ids), scratch)
    runs = {
        f"(a) preprocess, resliced to axial, {args.workers} workers": (
            ours["accepted"], ours["seconds"], ours["cpu_seconds"]),
        "(a) the same, 1 process": (ours_1["accepted"], ours_1["seconds"], ours_1["cpu_seconds"]),
        "(b) MONAI LoadImage(PydicomReader) + Orientation(RAS) + middle 3": (
            len(base_ids), monai.wall, monai.cpu),
    }
    rate = {k: n / wall for k, (n, wall, _) in runs.items()}
    cpu_ms = {k: 1000 * cpu / n for k, (n, _, cpu) in runs.items()}
    first, single, baseline = list(runs)
    print(f"\n3D volumes: {len(ids)} subjects in (a) ({ours['accepted']} accepted), "
          f"{len(base_ids)} in (b); load average {os.getloadavg()[0]:.1f}\n")
    print("| method | subjects/s | CPU ms per subject |")
    print("|---|---:|---:|")
    for label in runs:
        print(f"| {label} | {rate[label]:.1f} | {cpu_ms[label]:.0f} |")
    print(
        f"\nratios (target >= 3): a/b = {rate[first] / rate[baseline]:.1f} with "
        f"{args.workers} workers, {rate[single] / rate[baseline]:.1f} in one process; CPU per "
        f"subject b/a = {cpu_ms[baseline] / cpu_ms[single]:.1f}; worker peak RSS "
        f"{n_small} -> {len(ids)} subjects: {small['worker_peak_rss_mb']:.0f} -> "
        f"{ours['worker_peak_rss_mb']:.0f} MB"
    )


def labels_subset(labels: Path, n: int, scratch: Path) -> Path:
    lines = labels.read_text().splitlines()
    out = scratch / f"labels_{n}.csv"
    out.write_text("\n".join(lines[: n + 1]) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--cohort", type=Path, help="DICOM root (default: generate one)")
    parser.add_argument("--labels", type=Path, help="labels table of --cohort")
    parser.add_argument(
        "--simple", action="store_true", help="plain phantoms, not the demo generator"
    )
    parser.add_argument("--subjects", type=int, default=96, help="subjects in the large run")
    parser.add_argument("--small", type=int, default=24, help="subjects in the small run (memory)")
    parser.add_argument(
        "--baseline-subjects", type=int, default=24, help="subjects timed in (b), (c)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--volume", action="store_true", help="3D sagittal volumes resliced to axial instead"
    )
    parser.add_argument("--volume-slices", type=int, default=170, help="--volume: frames")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.volume:
        with tempfile.TemporaryDirectory(prefix="bench_preprocess_") as tmp:
            volume_benchmark(args, Path(tmp))
        return

    with tempfile.TemporaryDirectory(prefix="bench_preprocess_") as tmp:
        scratch = Path(tmp)
        if args.cohort:
            root, labels = args.cohort.resolve(), args.labels.resolve()
        else:
            t = time.perf_counter()
            if args.simple:
                write_phantom_cohort(scratch / "cohort", args.subjects)
            else:
                from pipeline.synthetic import generate_cohort

                generate_cohort(scratch / "cohort", n_subjects=args.subjects, seed=0, workers=2)
            root, labels = scratch / "cohort" / "dicom", scratch / "cohort" / "labels.csv"
            kind = "phantom" if args.simple else "demo-generator"
            print(f"generated {args.subjects} {kind} subjects in {time.perf_counter() - t:.1f} s")
        from pipeline.labels import read_labels

        ids = [
            s for s in read_labels(labels, ["CN", "MCI", "AD"])["subject_id"] if (root / s).exists()
        ]
        n_large = min(args.subjects, len(ids))
        n_small = min(args.small, n_large)
        large_labels = labels_subset(labels, n_large, scratch)
        cache = scratch / "cache"

        # Warm the page cache and imports so every contender reads from memory alike.
        pydicom_baseline(root, ids[:n_large])

        ours = run_ours(root, large_labels, cache, "large", args.workers)
        ours_1 = run_ours(root, large_labels, cache, "large1", 1)
        small = run_ours(
            root, labels_subset(labels, n_small, scratch), cache, "small", args.workers
        )

        base_ids = ids[: min(args.baseline_subjects, n_large)]
        series = series_files(root, base_ids)
        monai = monai_baseline(series, scratch)
        plain = pydicom_baseline(root, base_ids)

    ours_label = f"(a) preprocess, {args.workers} workers"
    monai_label = "(b) MONAI LoadImage(PydicomReader) + middle 3"
    pydicom_label = "(c) pydicom, every file with pixels"
    # label: (subjects, wall seconds, CPU seconds)
    runs = {
        ours_label: (ours["accepted"], ours["seconds"], ours["cpu_seconds"]),
        "(a) preprocess, 1 process": (ours_1["accepted"], ours_1["seconds"], ours_1["cpu_seconds"]),
        monai_label: (len(base_ids), monai.wall, monai.cpu),
        pydicom_label: (len(base_ids), plain.wall, plain.cpu),
    }
    rate = {k: n / wall for k, (n, wall, _) in runs.items()}
    cpu_ms = {k: 1000 * cpu / n for k, (n, _, cpu) in runs.items()}
    print(
        f"\nsubjects: {n_large} in (a) ({ours['accepted']} accepted), {len(base_ids)} in (b), (c)"
    )
    print(f"CPU cores: {os.cpu_count()}; load average now: {os.getloadavg()[0]:.1f}\n")
    print("| method | subjects/s | (a) faster by | CPU ms per subject | (a) cheaper by |")
    print("|---|---:|---:|---:|---:|")
    for label in runs:
        print(
            f"| {label} | {rate[label]:.1f} | {rate[ours_label] / rate[label]:.1f}x "
            f"| {cpu_ms[label]:.0f} | {cpu_ms[label] / cpu_ms[ours_label]:.1f}x |"
        )
    print("\n| cohort size | worker peak RSS (MB) | main process peak RSS (MB) |")
    print("|---:|---:|---:|")
    for n, figures in ((n_small, small), (n_large, ours)):
        print(f"| {n} | {figures['worker_peak_rss_mb']:.0f} | {figures['main_peak_rss_mb']:.0f} |")
    t = ours["timings"]
    print(
        f"\n(a), {args.workers} workers, seconds: find + fingerprint {t['plan_s']:.2f}, "
        f"process {t['process_s']:.2f}, write cache + QC {t['assemble_s']:.2f}; "
        f"wall per subject in a worker {t['subject_mean_s'] * 1000:.0f} ms"
    )
    print(
        f"\nratios: a/b = {rate[ours_label] / rate[monai_label]:.1f} (target >= 5), "
        f"a/c = {rate[ours_label] / rate[pydicom_label]:.1f}; CPU per subject b/a = "
        f"{cpu_ms[monai_label] / cpu_ms[ours_label]:.1f}, c/a = "
        f"{cpu_ms[pydicom_label] / cpu_ms[ours_label]:.1f}; worker RSS {n_small} -> {n_large} "
        f"subjects: {small['worker_peak_rss_mb']:.0f} -> {ours['worker_peak_rss_mb']:.0f} MB"
    )
    if os.getloadavg()[0] > (os.cpu_count() or 1) * 0.75:
        print(
            "note: the machine is busy with other work; wall-clock rates (and the gain from "
            "workers) are understated, CPU ms per subject is the steadier comparison"
        )


if __name__ == "__main__":
    main()
