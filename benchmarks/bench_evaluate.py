"""Evaluate-stage speed: the subject bootstrap against a scikit-learn loop, and a whole run.

    .venv/bin/python benchmarks/bench_evaluate.py                      # fake demo-sized cohort
    .venv/bin/python benchmarks/bench_evaluate.py --checkpoint runs/demo/.../best.pt \\
        --cache cache --name demo_heldout                              # the real demo held-out

(a) Bootstrap intervals for ``--resamples`` subject-level resamples of a ``--subjects`` cohort:
    ours (one weight matrix, every metric vectorized) against the obvious baseline (a loop that
    draws subjects, gathers their rows and calls scikit-learn's metric functions), with the same
    draws. Prints both times, the ratio (target >= 20x) and the largest interval difference
    (must be ~0: same numbers).
(b) ``pipeline.evaluate.run.evaluate`` end to end (prediction, metrics, intervals, pictures,
    Grad-CAM and occlusion, report), timed by step. Target: well under 60 s on 2 CPU cores for
    the demo held-out cohort (about 120 subjects).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.evaluate.bootstrap import (  # noqa: E402
    bootstrap_intervals,
    percentile_interval,
    subject_resample_weights,
)

CLASSES = ["CN", "MCI", "AD"]


def fake_predictions(n_subjects: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Labels, probabilities and subject ids (a third of the subjects with two sessions)."""
    rng = np.random.default_rng(seed)
    subjects = [f"s{i}" for i in range(n_subjects)] + [f"s{i}" for i in range(n_subjects // 3)]
    y = rng.choice(3, size=n_subjects, p=[0.45, 0.35, 0.2])
    y = np.concatenate([y, y[: n_subjects // 3]])
    logits = rng.normal(0, 1, (len(y), 3))
    logits[np.arange(len(y)), y] += 1.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs, subjects


def sklearn_loop_intervals(
    y: np.ndarray, probs: np.ndarray, subjects: list[str], resamples: int, seed: int
) -> dict[str, list[float] | None]:
    """The baseline: per resample, gather the drawn subjects' rows and call scikit-learn."""
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        cohen_kappa_score,
        matthews_corrcoef,
        roc_auc_score,
    )

    counts = subject_resample_weights(subjects, resamples, seed).astype(int)
    pred = probs.argmax(axis=1)
    values: dict[str, list[float]] = {
        k: [] for k in ("accuracy", "balanced_accuracy", "kappa_quadratic", "mcc", "auc_macro")
    }
    for row_counts in counts:
        rows = np.repeat(np.arange(len(y)), row_counts)
        yt, yp, pr = y[rows], pred[rows], probs[rows]
        values["accuracy"].append(accuracy_score(yt, yp))
        values["balanced_accuracy"].append(balanced_accuracy_score(yt, yp))
        values["kappa_quadratic"].append(
            cohen_kappa_score(yt, yp, labels=[0, 1, 2], weights="quadratic")
        )
        values["mcc"].append(matthews_corrcoef(yt, yp))
        aucs = [roc_auc_score(yt == c, pr[:, c]) for c in range(3) if 0 < (yt == c).sum() < len(yt)]
        values["auc_macro"].append(float(np.mean(aucs)) if aucs else np.nan)
    return {k: percentile_interval(np.asarray(v), 0.95) for k, v in values.items()}


def bench_bootstrap(n_subjects: int, resamples: int) -> None:
    y, probs, subjects = fake_predictions(n_subjects)
    tick = time.perf_counter()
    ours = bootstrap_intervals(y, probs, subjects, CLASSES, resamples=resamples, seed=0)
    t_ours = time.perf_counter() - tick
    tick = time.perf_counter()
    baseline = sklearn_loop_intervals(y, probs, subjects, resamples, seed=0)
    t_base = time.perf_counter() - tick
    diff = max(abs(a - b) for k, v in baseline.items() for a, b in zip(v, ours[k], strict=True))
    print(
        f"(a) bootstrap, {n_subjects} subjects ({len(y)} cases), {resamples} resamples: "
        f"ours {t_ours:.3f} s, scikit-learn loop {t_base:.2f} s, "
        f"ratio {t_base / t_ours:.0f}x (target >= 20x), max interval difference {diff:.1e}"
    )


def bench_evaluate(checkpoint: str | None, cache: str | None, name: str | None) -> None:
    from pipeline.apply import run as apply_run
    from pipeline.config import compose
    from pipeline.evaluate import run

    with tempfile.TemporaryDirectory() as tmp:
        if checkpoint is None:
            checkpoint, cache, name = fake_demo(Path(tmp))
        steps: dict[str, float] = {}
        for module, step in (
            (apply_run, "prepare_cohort"), (apply_run, "run_models"), (run, "score"),
            (run, "write_figures"), (run, "explain_cases"), (run, "write_report"),
        ):  # fmt: skip
            original = getattr(module, step)

            def timed(*args, _f=original, _s=step, **kwargs):
                tick = time.perf_counter()
                try:
                    return _f(*args, **kwargs)
                finally:
                    steps[_s] = steps.get(_s, 0.0) + time.perf_counter() - tick

            setattr(module, step, timed)
        cfg = compose(
            "evaluate", [f"checkpoint={checkpoint}", f"paths.cache={cache}", f"data.name={name}"]
        )
        tick = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the run's own summary table
            result = run.evaluate(cfg, Path(tmp) / "report", log=lambda _: None)
        total = time.perf_counter() - tick
    detail = ", ".join(f"{k} {v:.1f} s" for k, v in steps.items())
    print(
        f"(b) evaluate end to end, {result.metrics['n_samples']} cases, "
        f"{result.metrics['model']['n_models']} model(s): {total:.1f} s (target < 60 s)\n"
        f"    {detail}"
    )


def fake_demo(tmp: Path) -> tuple[str, str, str]:
    """A demo-sized held-out cache (120 subjects, 3 x 128 x 128) and a default-CNN checkpoint."""
    import json

    import pandas as pd
    import torch
    from omegaconf import OmegaConf

    from pipeline.cache import MANIFEST_COLUMNS
    from pipeline.checkpoint import Checkpoint, FoldEntry, build_model, save_checkpoint
    from pipeline.config import CONF_DIR, recipe_config, recipe_hash

    pp = recipe_config(OmegaConf.load(Path(CONF_DIR) / "recipe" / "default.yaml"))
    rng = np.random.default_rng(0)
    n = 120
    labels = rng.choice(CLASSES, size=n, p=[0.45, 0.35, 0.2])
    directory = tmp / "cache" / "bench"
    directory.mkdir(parents=True)
    np.save(directory / "images.npy", rng.normal(0, 1, (n, 3, 128, 128)).astype(np.float32))
    manifest = pd.DataFrame({c: [""] * n for c in MANIFEST_COLUMNS})
    manifest["row"], manifest["subject_id"], manifest["label"] = (
        range(n),
        [f"sub-{i:03d}" for i in range(n)],
        labels,
    )
    manifest.to_csv(directory / "manifest.csv", index=False)
    (directory / "provenance.json").write_text(
        json.dumps({"recipe": pp, "recipe_hash": recipe_hash(pp)})
    )
    model = {"_target_": "pipeline.models.SimpleCNN", "in_channels": 3, "num_classes": 3}
    torch.manual_seed(0)
    state = build_model(model).state_dict()
    fold = FoldEntry(state, ("t",), ("v",), best_epoch=1, epochs_trained=2)
    ckpt = Checkpoint(
        classes=tuple(CLASSES), network=model, slice_mode="channels", recipe=pp,
        recipe_hash=recipe_hash(pp), folds=(fold,),
    )  # fmt: skip
    path = save_checkpoint(tmp / "best.pt", ckpt)
    return str(path), str(tmp / "cache"), "bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=120)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--checkpoint", help="a train run's best.pt (default: a fake demo)")
    parser.add_argument("--cache", help="paths.cache holding --name")
    parser.add_argument("--name", help="data.name of the held-out cache")
    args = parser.parse_args()
    bench_bootstrap(args.subjects, args.resamples)
    bench_evaluate(args.checkpoint, args.cache, args.name)


if __name__ == "__main__":
    main()
