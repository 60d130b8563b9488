"""Train-stage benchmark: data-path overhead, demo training time, held-out quality vs a baseline.

    .venv/bin/python benchmarks/bench_train.py                 # all three parts
    .venv/bin/python benchmarks/bench_train.py --only throughput
    .venv/bin/python benchmarks/bench_train.py --run runs/train/demo_dev/<run>   # reuse a run

1. Data-path overhead: training images/s of the default model fed by the real data path (the
   memory-mapped cache, the epoch sampler and the default batch augmentation) against the same
   model fed in-memory tensors without augmentation, both through the same Lightning loop,
   alternated round by round; the overhead is the median of the rounds' ratios (steady when
   other work on the machine comes and goes). Target: overhead <= 10%. Uses the ``demo_dev``
   cache when it exists, otherwise a random cache of the same shape in a temporary folder.
2. Demo training wall time: ``python -m pipeline.train data=demo_dev`` (default config) as a
   subprocess, start to finish. Target: <= 300 s on a 2-core CPU.
3. Held-out quality: balanced accuracy on ``demo_heldout`` of that model, scored as evaluate
   scores it (the ensemble and the stored decision rule), against the quality benchmark's PCA +
   logistic regression trained on the same training subjects' slices, in the same run.

Parts 2 and 3 need the demo caches (``make demo``, or ``python -m pipeline.synthetic`` then
``python -m pipeline.preprocess data=demo_dev`` and ``data=demo_heldout``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from sklearn.metrics import balanced_accuracy_score

from pipeline.cache import IMAGES, CacheError, cohort_dir, is_complete, load_cohort
from pipeline.checkpoint import load_checkpoint
from pipeline.config import compose, to_container
from pipeline.evaluate.bootstrap import paired_difference_interval
from pipeline.models import input_channels, network_config
from pipeline.train.module import StageClassifier

DEMO_HINT = (
    "build it with `make demo`, or: python -m pipeline.synthetic && "
    "python -m pipeline.preprocess data=demo_dev && python -m pipeline.preprocess data=demo_heldout"
)


class EpochTimer(L.Callback):
    """Wall time of every training epoch (data loading included)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._start)


class _Batches:
    """An iterable of ready batches (Lightning would take a bare list as several loaders)."""

    def __init__(self, batches: list[dict[str, torch.Tensor]]) -> None:
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class InMemoryBatches(L.LightningDataModule):
    """The baseline: the same images as ready-made tensor batches, no augmentation, no files."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int) -> None:
        super().__init__()
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        y = torch.from_numpy(labels.astype(np.int64))
        n = len(x) // batch_size * batch_size
        self.batches = [
            {"image": x[i : i + batch_size], "label": y[i : i + batch_size]}
            for i in range(0, n, batch_size)
        ]

    def train_dataloader(self) -> _Batches:
        return _Batches(self.batches)


def compose_default(cache_root: str, *overrides: str):
    return compose("train", [f"paths.cache={cache_root}", *overrides])


def _fit_images_per_second(
    module: StageClassifier, datamodule: L.LightningDataModule, epochs: int
) -> float:
    timer = EpochTimer()
    trainer = L.Trainer(
        accelerator="auto",
        devices=1,
        max_epochs=epochs,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(module, datamodule=datamodule)
    images = sum(len(b["label"]) for b in _batches(datamodule))
    return images / min(timer.seconds[1:])  # first epoch warms up


def _batches(datamodule: L.LightningDataModule) -> list[dict[str, torch.Tensor]]:
    return list(datamodule.train_dataloader())


class KorniaAugment:
    """The default augmentation (conf/augment/default.yaml) built from ``kornia.augmentation``,
    for the data-path comparison only: what the pipeline would run had it adopted kornia.

    RandomAffine, RandomGamma (contrast), RandomContrast (intensity scale), RandomBrightness
    (shift), RandomGaussianBlur and RandomGaussianNoise with the same probabilities and ranges
    where kornia has them (its noise has a fixed std, its gamma works on [0, 1]), plus the
    pipeline's own bias field, which kornia lacks. Same call as
    :class:`~pipeline.train.augment.BatchAugment`; kornia draws from torch's global generator.
    """

    def __init__(self, transforms: dict) -> None:
        import kornia.augmentation as K

        a, c = transforms["affine"], transforms["contrast"]
        scale, shift = transforms["scale_intensity"], transforms["shift_intensity"]
        smooth, noise = transforms["smooth"], transforms["noise"]
        radius = max(1, int(np.ceil(3.0 * smooth.sigma_max)))
        self.sequence = torch.nn.Sequential(
            K.RandomAffine(
                degrees=a.rotate_deg, translate=(a.translate_frac, a.translate_frac),
                scale=(1 - a.scale_frac, 1 + a.scale_frac), padding_mode="zeros", p=a.prob,
            ),
            K.RandomGamma(gamma=(1 / c.gamma, c.gamma), p=c.prob),
            K.RandomContrast(contrast=(1 - scale.factors, 1 + scale.factors), clip_output=False,
                             p=scale.prob),
            K.RandomBrightness(brightness=(1 - shift.offsets, 1 + shift.offsets),
                               clip_output=False, p=shift.prob),
            K.RandomGaussianBlur(kernel_size=2 * radius + 1,
                                 sigma=(smooth.sigma_min, smooth.sigma_max), p=smooth.prob),
            K.RandomGaussianNoise(std=noise.std, p=noise.prob),
        )  # fmt: skip
        self.bias_field = transforms["bias_field"]

    def __bool__(self) -> bool:
        return True

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.bias_field(self.sequence(x), generator)


@dataclass(frozen=True)
class Throughput:
    """Part 1's result: training images/s fed from memory, and per augmentation (``ours``, and
    ``kornia`` when installed) the images/s of the real path and its overhead over memory."""

    memory_images_per_s: float
    real_images_per_s: dict[str, float]
    overhead: dict[str, float]


def _timing_images(cfg: Any, cache_root: str, n_images: int, tmp: Path) -> tuple[Path, str]:
    """The demo_dev cache's images, or random ones of the same shape: (path, description)."""
    directory = cohort_dir(cache_root, cfg.data.name)
    if is_complete(directory):
        return directory / IMAGES, f"cache {directory}"
    shape = (n_images, int(cfg.slices.count), int(cfg.normalize.size), int(cfg.normalize.size))
    path = tmp / IMAGES
    np.save(path, np.random.default_rng(0).normal(size=shape).astype(np.float32))
    return path, f"random images of shape {shape} (no demo_dev cache)"


def _augmentations(cfg: Any) -> dict[str, Any]:
    """The default batch augmentation, and the same built from kornia when it is installed."""
    augment = instantiate(cfg.augment, _convert_="all")
    augments: dict[str, Any] = {"ours": augment}
    try:
        augments["kornia"] = KorniaAugment(augment.transforms)
    except ImportError:
        print("[throughput] kornia is not installed (pip install -e '.[bench]'): not compared")
    return augments


def throughput(cache_root: str, n_images: int, rounds: int, epochs: int) -> Throughput:
    """Part 1: images/s, real data path (each augmentation) vs in-memory tensors."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_default(cache_root)
        images_path, source = _timing_images(cfg, cache_root, n_images, Path(tmp))
        images = np.load(images_path, mmap_mode="r")
        batch = int(cfg.datamodule.batch_size)
        # Whole batches only, the same images both ways: a short last batch would cost the real
        # path a step's fixed overhead that the in-memory one does not pay. Rows repeat when the
        # cache holds fewer images than --images asks for (the demo cache has 240).
        n = max(batch, n_images // batch * batch)
        rows = np.arange(n) % len(images)
        labels = np.arange(n) % len(cfg.data.classes)
        model_cfg = network_config(
            to_container(cfg.model.net),
            to_container(cfg.head) if cfg.get("head") else None,
            input_channels(str(cfg.data.slice_mode), images.shape[1]),
            len(cfg.data.classes),
        )
        augments = _augmentations(cfg)

        def module(augment: Any) -> StageClassifier:
            torch.manual_seed(0)
            return instantiate(
                cfg.model,
                net=instantiate(model_cfg),
                scheduler=None,
                classes=list(cfg.data.classes),
                slice_mode=str(cfg.data.slice_mode),
                class_weight=None,
                augment=augment,
                _convert_="all",
            )

        def real_path() -> L.LightningDataModule:
            return instantiate(
                cfg.datamodule,
                images_path=images_path,
                labels=labels,
                train_rows=rows,
                val_rows=rows[:batch],
                num_workers=0,
                seed=0,
                _convert_="all",
            )

        speeds: dict[str, list[float]] = {name: [] for name in (*augments, "memory")}
        for _ in range(rounds):
            for name, augment in augments.items():
                speeds[name].append(_fit_images_per_second(module(augment), real_path(), epochs))
            in_memory = InMemoryBatches(images[rows], labels, batch)
            speeds["memory"].append(_fit_images_per_second(module(None), in_memory, epochs))
    # Each round times all of them back to back; the median of the rounds' ratios is steadier
    # than a ratio of bests when other work on the machine comes and goes.
    overhead = {}
    for name in augments:
        ratios = [m / r for r, m in zip(speeds[name], speeds["memory"], strict=True)]
        overhead[name] = float(np.median(ratios)) - 1.0
        print(
            f"[throughput] {source}; {n} images/epoch, batch {batch}, {rounds} rounds x "
            f"{epochs} epochs; per-round overhead ({name}) "
            + ", ".join(f"{100 * (q - 1):.1f}%" for q in ratios)
        )
    return Throughput(
        memory_images_per_s=float(np.median(speeds["memory"])),
        real_images_per_s={name: float(np.median(speeds[name])) for name in augments},
        overhead=overhead,
    )


def demo_training(cache_root: str, runs_root: Path) -> tuple[Path, float]:
    """Part 2: the default training on demo_dev as a user runs it."""
    run_dir = runs_root / f"bench_train_{time.strftime('%Y%m%d_%H%M%S')}"
    command = [
        sys.executable,
        "-m",
        "pipeline.train",
        "data=demo_dev",
        f"paths.cache={cache_root}",
        f"hydra.run.dir={run_dir}",
        "trainer.enable_progress_bar=false",
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return run_dir, time.perf_counter() - started


def heldout_quality(cache_root: str, run_dir: Path) -> dict[str, float]:
    """Part 3: held-out balanced accuracy, the trained model vs PCA + logistic regression.

    The model is scored as evaluate scores it (:func:`pipeline.apply.apply_checkpoint`: every
    fold's model, the ensemble, the checkpoint's stored decision rule). The baseline is the
    quality benchmark's (``bench_quality.fit_baseline``), fitted on every subject the ensemble
    trained on, so the two benchmarks' reference numbers agree.
    """
    from bench_quality import fit_baseline

    from pipeline.apply import apply_checkpoint

    best = run_dir / "checkpoints" / "best.pt"
    ckpt = load_checkpoint(best)
    classes = list(ckpt.classes)
    dev = load_cohort(cohort_dir(cache_root, ckpt.data_name), expected_hash=ckpt.recipe_hash)
    heldout = load_cohort(cohort_dir(cache_root, "demo_heldout"), expected_hash=ckpt.recipe_hash)
    used = {s for fold in ckpt.folds for s in (*fold.train_subjects, *fold.val_subjects)}
    if used != set(dev.manifest["subject_id"]):
        raise RuntimeError(f"{best} did not train on the whole {ckpt.data_name} cache")
    cfg = compose(
        "evaluate", [f"checkpoint={best}", f"paths.cache={cache_root}", "data=demo_heldout"]
    )
    table = apply_checkpoint(cfg, log=lambda _: None).table.set_index(["subject_id", "session_id"])
    keys = pd.MultiIndex.from_frame(heldout.manifest[["subject_id", "session_id"]])
    predicted = table.loc[keys, "predicted"].map(classes.index).to_numpy()
    y_heldout = heldout.manifest["label"].map(classes.index).to_numpy()
    seed = int(ckpt.train_config.get("seed", 0))
    linear = fit_baseline("pca_lr", seed, dev, heldout, classes).predicted
    low, high = paired_difference_interval(
        heldout.manifest["subject_id"], y_heldout, predicted, linear, len(classes)
    )
    return {
        "cnn_bal_acc": balanced_accuracy_score(y_heldout, predicted),
        "baseline_bal_acc": balanced_accuracy_score(y_heldout, linear),
        "difference_low": low,
        "difference_high": high,
        "n_heldout": float(len(heldout)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", default="cache", help="paths.cache (default: cache)")
    parser.add_argument("--runs", default="runs", help="where part 2 writes its run folder")
    parser.add_argument(
        "--run", type=Path, help="reuse this training run for part 3 (skips part 2)"
    )
    parser.add_argument("--only", choices=("throughput", "demo"), help="run one part only")
    parser.add_argument("--images", type=int, default=256, help="images per timing epoch")
    parser.add_argument("--rounds", type=int, default=9, help="alternating timing rounds")
    parser.add_argument(
        "--epochs", type=int, default=3, help="epochs per timing round (first is warm-up)"
    )
    args = parser.parse_args()

    rows: list[tuple[str, str]] = []
    if args.only in (None, "throughput"):
        t = throughput(args.cache, args.images, args.rounds, args.epochs)
        rows += [
            (
                "train images/s, real data path (memmap + augmentation)",
                f"{t.real_images_per_s['ours']:.0f}",
            ),
            ("train images/s, in-memory tensors (no augmentation)", f"{t.memory_images_per_s:.0f}"),
            ("data-path overhead (target <= 10%)", f"{100 * t.overhead['ours']:.1f}%"),
        ]
        if "kornia" in t.overhead:
            rows.append(
                (
                    "the same with kornia.augmentation (bench extra)",
                    f"{t.real_images_per_s['kornia']:.0f} images/s, "
                    f"{100 * t.overhead['kornia']:.1f}%",
                )
            )
    if args.only in (None, "demo"):
        run_dir = args.run
        missing = [
            n for n in ("demo_dev", "demo_heldout") if not is_complete(cohort_dir(args.cache, n))
        ]
        if run_dir is None and missing:
            rows.append(
                ("demo training / held-out quality", f"skipped: no cache {missing}; {DEMO_HINT}")
            )
        else:
            if run_dir is None:
                run_dir, seconds = demo_training(args.cache, Path(args.runs))
                rows.append(
                    (
                        "demo training wall time, default config (target <= 300 s)",
                        f"{seconds:.0f} s",
                    )
                )
            try:
                q = heldout_quality(args.cache, run_dir)
            except CacheError as exc:
                rows.append(("held-out quality", f"skipped: {exc}"))
            else:
                rows += [
                    (
                        f"held-out balanced accuracy, default CNN (n={q['n_heldout']:.0f})",
                        f"{q['cnn_bal_acc']:.3f}",
                    ),
                    (
                        "held-out balanced accuracy, PCA + logistic regression",
                        f"{q['baseline_bal_acc']:.3f}",
                    ),
                    (
                        "difference, 95% interval (paired subject bootstrap)",
                        f"{q['cnn_bal_acc'] - q['baseline_bal_acc']:+.3f} "
                        f"[{q['difference_low']:+.3f}, {q['difference_high']:+.3f}]",
                    ),
                ]
            rows.append(("run folder", str(run_dir)))
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
