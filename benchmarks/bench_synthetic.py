"""Demo-generator benchmark: speed of ``python -m pipeline.synthetic`` and the cohorts' difficulty.

    .venv/bin/python benchmarks/bench_synthetic.py                    # both parts
    .venv/bin/python benchmarks/bench_synthetic.py --only speed
    .venv/bin/python benchmarks/bench_synthetic.py --only difficulty --epochs 40 --size 96
    .venv/bin/python benchmarks/bench_synthetic.py --only difficulty seed=7 \
        anatomy.ventricle_mm_per_severity=6          # any conf/synthetic.yaml override

1. Speed. Both default cohorts (conf/synthetic.yaml: 240 + 120 subjects and their defects)
   written to a temporary folder with the default workers. Target: <= 60 s on this 2-core CPU.
   Baseline, same run: the obvious way to make a subject, warping the whole 1 mm template
   volume through the subject's deformation (scipy ``map_coordinates``) and then cutting the 44
   planes out of it, against our per-subject time (render only the written pixels), both in one
   process on the same subjects.
2. Difficulty. The three central slices of every subject of both default cohorts, rendered in
   memory with the generator's own geometry and scanner (no DICOM reading, no preprocess run),
   normalized by the project's own MONAI chain (conf/recipe: 1 mm pixels, crop to the
   head, resize to ``--size``, percentile scaling). Trained on the development cohort (site A),
   tested on the held-out cohort (site B):
   - linear baseline: PCA + logistic regression on the pixels (also 5-fold CV within dev);
   - a small CNN (the project's SimpleCNN) trained from scratch;
   - oracles: logistic regression on the true latent severity (the best any model can do with
     these overlapping classes), and on the true anatomy (ventricle expansion, cortical
     thinning, age) that the images show.
   Targets: linear baseline balanced accuracy roughly 0.45-0.65 (chance 0.33), the CNN clearly
   above it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.config import compose, to_container
from pipeline.models.simple_cnn import SimpleCNN
from pipeline.preprocess.transforms import SliceNormalizer
from pipeline.synthetic.__main__ import plans_from_config
from pipeline.synthetic.atlas import load_atlas
from pipeline.synthetic.cohort import CohortPlan, run_plans, subject_pool
from pipeline.synthetic.render import render
from pipeline.synthetic.subject import SubjectTask, draw_subject, render_slices


def default_config(out: Path, overrides: list[str] | None = None):
    return compose("synthetic", [f"out={out}", *(overrides or [])])


# ---------------------------------------------------------------------------------- speed
def whole_volume_subject(task: SubjectTask) -> None:
    """Baseline: warp the full 1 mm template through the subject's deformation, then slice."""
    atlas = load_atlas()
    draw = draw_subject(task, atlas)
    volume = atlas.fine[0].numpy()  # (2, K, J, I)
    shape = volume.shape[1:]
    index_to_ras = np.linalg.inv(atlas.fine_ras_to_index)
    kji = np.indices(shape, dtype=np.float32).reshape(3, -1)
    ras = (index_to_ras[:3, :3] @ kji[::-1] + index_to_ras[:3, 3:4]).T
    ras = ras + draw.anatomy.deformation(ras)
    idx = (ras @ atlas.fine_ras_to_index[:3, :3].T + atlas.fine_ras_to_index[:3, 3]).T[::-1]
    warped = [ndi.map_coordinates(c, idx, order=1, mode="nearest").reshape(shape) for c in volume]
    geo = draw.placement.geometry
    pts, _ = geo.pixel_points(1)
    native = draw.anatomy.pose.patient_to_template(pts.reshape(-1, 3))
    where = (native @ atlas.fine_ras_to_index[:3, :3].T + atlas.fine_ras_to_index[:3, 3]).T[::-1]
    ndi.map_coordinates(warped[0], where, order=1)


def render_only(task: SubjectTask) -> None:
    """Ours: draw the subject and render only the pixels of its 44 slices."""
    atlas = load_atlas()
    draw = draw_subject(task, atlas)
    render(atlas, draw.anatomy, draw.placement.geometry)


def per_subject_seconds(tasks: list[SubjectTask], fn) -> float:
    started = time.perf_counter()
    for task in tasks:
        fn(task)
    return (time.perf_counter() - started) / len(tasks)


def bench_speed(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_synthetic_") as tmp:
        cfg = default_config(Path(tmp) / "demo", [f"workers={args.workers}", *args.overrides])
        started = time.perf_counter()
        plans = plans_from_config(cfg)
        run_plans(plans, workers=args.workers)
        total = time.perf_counter() - started
        n = sum(len(p.tasks) for p in plans)
        print(
            f"ours, both default cohorts: {n} subjects in {total:.1f} s with {args.workers} "
            f"workers ({n / total:.1f} subjects/s); target <= 60 s"
        )

        load_atlas()
        sample = plans[0].tasks[: args.baseline_subjects]
        torch.set_num_threads(1)
        ours = per_subject_seconds(sample, render_only)
        baseline = per_subject_seconds(sample, whole_volume_subject)
        print(
            f"one process, rendering only: ours {ours:.3f} s/subject, whole-volume warp "
            f"{baseline:.3f} s/subject -> {baseline / ours:.1f}x faster"
        )
    return {
        "subjects": n,
        "seconds": round(total, 2),
        "workers": args.workers,
        "ours_render_s": round(ours, 4),
        "whole_volume_s": round(baseline, 4),
        "speedup": round(baseline / ours, 2),
    }


# ----------------------------------------------------------------------------- difficulty
def _central_slices(task: SubjectTask) -> np.ndarray:
    n = task.site.n_slices
    return render_slices(task, [n // 2 - 1, n // 2, n // 2 + 1])


def central_slices(
    plans: list[CohortPlan], workers: int
) -> list[list[tuple[np.ndarray, tuple[float, float]]]]:
    """Per cohort, usable subjects only, in task order: (slices, pixel spacing)."""
    out = []
    with subject_pool(workers) as pool:
        for plan in plans:
            tasks = [t for t in plan.tasks if not t.defect]
            images = list(
                pool.map(_central_slices, tasks, chunksize=4)
                if pool
                else map(_central_slices, tasks)
            )
            out.append(images)
    return out


def normalise(stacks: list[tuple[np.ndarray, tuple[float, float]]], size: int) -> np.ndarray:
    """The preprocess stage's normalization (conf/recipe/default.yaml) at ``size``."""
    cfg = compose("preprocess", [f"normalize.size={size}"])
    normalizer = SliceNormalizer(to_container(cfg.normalize))
    return np.stack([normalizer(images, spacing) for images, spacing in stacks])


def labels_of(plan: CohortPlan, classes: list[str]) -> np.ndarray:
    return np.array([classes.index(t.label) for t in plan.tasks if not t.defect])


def linear_baseline(seed: int) -> object:
    return make_pipeline(
        StandardScaler(),
        PCA(n_components=50, random_state=seed),
        LogisticRegression(C=0.05, class_weight="balanced", max_iter=2000),
    )


def train_cnn(x: np.ndarray, y: np.ndarray, args: argparse.Namespace) -> SimpleCNN:
    torch.manual_seed(args.seed)
    model = SimpleCNN(in_channels=x.shape[1], num_classes=3, dropout=0.3)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=2e-3, total_steps=args.epochs * int(np.ceil(len(x) / 16))
    )
    weights = torch.tensor(len(y) / (3 * np.bincount(y, minlength=3)), dtype=torch.float32)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(args.seed)
    for _ in range(args.epochs):
        model.train()
        for idx in torch.randperm(len(xt), generator=g).split(16):
            xb = xt[idx]
            flip = torch.rand(len(idx), generator=g) < 0.5  # left-right: the brain is symmetric
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            xb = xb * (1 + 0.1 * (torch.rand(len(idx), 1, 1, 1, generator=g) - 0.5))
            opt.zero_grad()
            loss_fn(model(xb), yt[idx]).backward()
            opt.step()
            sched.step()
    return model.eval()


def bench_difficulty(args: argparse.Namespace) -> dict:
    cfg = default_config(Path(tempfile.gettempdir()) / "unused", args.overrides)
    plans = plans_from_config(cfg)
    classes = list(plans[0].model.classes)
    started = time.perf_counter()
    raw = central_slices(plans, args.workers)
    x_dev, x_test = (normalise(r, args.size) for r in raw)
    y_dev, y_test = (labels_of(p, classes) for p in plans)
    print(
        f"rendered and normalised {len(x_dev)} + {len(x_test)} subjects' central slices in "
        f"{time.perf_counter() - started:.1f} s"
    )

    flat_dev, flat_test = x_dev.reshape(len(x_dev), -1), x_test.reshape(len(x_test), -1)
    folds = StratifiedKFold(5, shuffle=True, random_state=args.seed)
    cv = cross_val_predict(linear_baseline(args.seed), flat_dev, y_dev, cv=folds)
    lin = linear_baseline(args.seed).fit(flat_dev, y_dev)
    results = {
        "linear_cv_dev": balanced_accuracy_score(y_dev, cv),
        "linear_dev_to_heldout": balanced_accuracy_score(y_test, lin.predict(flat_test)),
    }

    truth = {}
    for name, plan in zip(("dev", "heldout"), plans, strict=True):
        rows = []
        for task in plan.tasks:
            if task.defect:
                continue
            d = draw_subject(task, load_atlas())
            rows.append(
                [
                    d.person.severity,
                    d.anatomy.ventricle_expansion_mm,
                    d.anatomy.cortical_thinning_mm,
                    d.person.age,
                ]
            )
        truth[name] = np.array(rows)
    oracle = LogisticRegression(class_weight="balanced").fit(truth["dev"][:, :1], y_dev)
    results["oracle_severity"] = balanced_accuracy_score(
        y_test, oracle.predict(truth["heldout"][:, :1])
    )
    anat = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced"))
    anat.fit(truth["dev"][:, 1:], y_dev)
    results["oracle_anatomy"] = balanced_accuracy_score(
        y_test, anat.predict(truth["heldout"][:, 1:])
    )

    if args.epochs > 0:
        torch.set_num_threads(args.workers)
        started = time.perf_counter()
        model = train_cnn(x_dev, y_dev, args)
        with torch.no_grad():
            pred = model(torch.from_numpy(x_test)).argmax(1).numpy()
        results["cnn_dev_to_heldout"] = balanced_accuracy_score(y_test, pred)
        print(
            f"trained the CNN ({args.epochs} epochs, {args.size}px) in "
            f"{time.perf_counter() - started:.1f} s"
        )

    print("balanced accuracy (3 classes, chance 0.33):")
    for key, value in results.items():
        print(f"  {key:<24}{value:.3f}")
    if "cnn_dev_to_heldout" in results:
        ratio = results["cnn_dev_to_heldout"] / results["linear_dev_to_heldout"]
        print(f"CNN / linear baseline on the held-out cohort: {ratio:.2f}x")
    return {k: round(float(v), 4) for k, v in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["speed", "difficulty"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baseline-subjects", type=int, default=3)
    parser.add_argument("--size", type=int, default=128, help="image size (normalize.size)")
    parser.add_argument("--epochs", type=int, default=40, help="CNN epochs (0: skip the CNN)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("overrides", nargs="*", help="conf/synthetic.yaml overrides (key=value)")
    args = parser.parse_args()
    report = {}
    if args.only in (None, "speed"):
        report["speed"] = bench_speed(args)
    if args.only in (None, "difficulty"):
        report["difficulty"] = bench_difficulty(args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return None


if __name__ == "__main__":
    sys.exit(main())
