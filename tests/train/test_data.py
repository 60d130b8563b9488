"""The data path: one memory map, batched reads, epoch-seeded samplers."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import torch

from pipeline.train.data import (
    CachedSlices,
    ClassBalancedSampler,
    CohortDataModule,
    EpochShuffleSampler,
)


def _images(tmp_path, n: int = 20) -> tuple:
    images = np.arange(n * 3 * 4 * 4, dtype=np.float32).reshape(n, 3, 4, 4)
    path = tmp_path / "images.npy"
    np.save(path, images)
    return path, images


def test_getitems_reads_the_requested_rows(tmp_path) -> None:
    path, images = _images(tmp_path)
    rows, labels = np.array([3, 7, 11, 19]), np.array([0, 1, 2, 1])
    dataset = CachedSlices(path, rows, labels)
    batch = dataset.__getitems__([2, 0])
    assert torch.equal(batch["image"], torch.from_numpy(images[[11, 3]]))
    assert batch["label"].tolist() == [2, 0]
    assert batch["row"].tolist() == [11, 3]
    assert isinstance(dataset.images, np.memmap)
    single = dataset[1]
    assert single["image"].shape == (3, 4, 4) and int(single["label"]) == 1


def test_dataset_pickles_without_the_pixels(tmp_path) -> None:
    path, _ = _images(tmp_path, n=200)
    dataset = CachedSlices(path, np.arange(200), np.zeros(200, dtype=int))
    _ = dataset.images
    blob = pickle.dumps(dataset)
    assert len(blob) < 10_000  # the 38 kB of pixels stay on disk
    again = pickle.loads(blob)
    assert torch.equal(again.__getitems__([5])["image"], dataset.__getitems__([5])["image"])


def test_shuffle_sampler_depends_on_seed_and_epoch_only() -> None:
    labels = np.zeros(50, dtype=int)
    a, b = EpochShuffleSampler(labels, seed=1), EpochShuffleSampler(labels, seed=1)
    first = list(a)
    assert sorted(first) == list(range(50))
    assert list(b) == first
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)


def test_balanced_sampler_draws_classes_equally() -> None:
    labels = np.array([0] * 80 + [1] * 15 + [2] * 5)
    sampler = ClassBalancedSampler(labels, seed=0)
    counts: Counter = Counter()
    for epoch in range(30):
        sampler.set_epoch(epoch)
        counts.update(labels[list(sampler)])
    shares = np.array([counts[c] for c in range(3)]) / sum(counts.values())
    assert np.allclose(shares, 1 / 3, atol=0.03)
    assert len(list(sampler)) == len(labels)


def test_balanced_sampler_order_depends_on_seed_and_epoch_only() -> None:
    """A resumed run builds a new sampler at epoch k: it must draw what the old one drew."""
    labels = np.array([0] * 30 + [1] * 6 + [2] * 4)
    running = ClassBalancedSampler(labels, seed=3)
    draws = []
    for epoch in range(4):
        running.set_epoch(epoch)
        draws.append(list(running))
    resumed = ClassBalancedSampler(labels, seed=3)
    resumed.set_epoch(2)
    assert list(resumed) == draws[2] and draws[2] != draws[3]
    assert list(resumed) == draws[2]  # iterating twice in one epoch repeats it too


def test_datamodule_batches_rows_with_their_labels(tmp_path) -> None:
    path, images = _images(tmp_path, n=21)
    labels = np.arange(21) % 3
    dm = CohortDataModule(path, labels, np.arange(17), np.arange(17, 21), batch_size=8, seed=0)
    train = list(dm.train_dataloader())
    assert [len(b["label"]) for b in train] == [8, 8, 1]
    for b in train:
        assert torch.equal(b["image"], torch.from_numpy(images[b["row"].numpy()]))
        assert torch.equal(b["label"], torch.from_numpy(labels[b["row"].numpy()]))
    val = list(dm.val_dataloader())
    assert [b["row"].tolist() for b in val] == [[17, 18, 19, 20]]
