"""Feeding the network from the cache: one memory-mapped ``images.npy``, read a batch at a time.

:class:`CachedSlices` answers a whole batch of indices with one fancy-indexed read of the memory
map (``__getitems__``), so there are no per-item file opens and no per-item collation. The
samplers draw their order from (seed, epoch) only, so a resumed run sees the same batches as an
uninterrupted one; Lightning calls ``set_epoch`` on them and wraps them for DDP. A sampler is a
``conf/sampler`` object: a class called with the training rows' class indices and the seed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from sklearn.utils.class_weight import compute_sample_weight
from torch.utils.data import DataLoader, Dataset, Sampler, WeightedRandomSampler

Batch = dict[str, torch.Tensor]


class CachedSlices(Dataset[Batch]):
    """Selected rows of a cache's ``images.npy`` ``(N, S, H, W)`` with their class indices.

    The memory map is opened lazily in each process (and dropped when pickled), so DDP spawn and
    DataLoader workers never copy the array.
    """

    def __init__(self, images_path: str | Path, rows: Sequence[int], labels: Sequence[int]) -> None:
        self.images_path = Path(images_path)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        if self.rows.shape != self.labels.shape:
            raise ValueError(f"{len(self.rows)} rows but {len(self.labels)} labels")
        self._images: np.ndarray | None = None

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.images_path, mmap_mode="r")
        return self._images

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        idx = np.asarray(indices, dtype=np.int64)
        rows = self.rows[idx]
        pixels = np.ascontiguousarray(self.images[rows], dtype=np.float32)
        return {
            "image": torch.from_numpy(pixels),
            "label": torch.from_numpy(self.labels[idx]),
            "row": torch.from_numpy(rows),
        }

    def __getitem__(self, index: int) -> Batch:
        batch = self.__getitems__([index])
        return {key: value[0] for key, value in batch.items()}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_images"] = None
        return state


def keep_batch(batch: Batch) -> Batch:
    """``collate_fn`` for :class:`CachedSlices`: its ``__getitems__`` already returns a batch."""
    return batch


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    mixed = np.random.SeedSequence([seed & 0xFFFFFFFF, epoch]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(mixed))


class EpochShuffleSampler(Sampler[int]):
    """A random permutation of the rows that depends only on ``seed`` and the epoch."""

    def __init__(self, labels: Sequence[int], seed: int) -> None:
        self.n = len(labels)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        return iter(
            torch.randperm(self.n, generator=_epoch_generator(self.seed, self.epoch)).tolist()
        )


class ClassBalancedSampler(WeightedRandomSampler):
    """As many draws as rows, with replacement, every class equally likely (``sampler=balanced``).

    torch's ``WeightedRandomSampler`` with scikit-learn's ``balanced`` sample weights; its
    generator is re-seeded from (seed, epoch) at the start of every epoch, so a resumed run
    draws what the uninterrupted one did.
    """

    #: Corrects for class imbalance (training warns when model.class_weight does too).
    balances_classes = True

    def __init__(self, labels: Sequence[int], seed: int) -> None:
        weights = compute_sample_weight("balanced", np.asarray(labels, dtype=np.int64))
        super().__init__(torch.as_tensor(weights, dtype=torch.double), len(weights))
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        self.generator = _epoch_generator(self.seed, self.epoch)
        return super().__iter__()


#: What conf/sampler/*.yaml instantiates to: a sampler class, or a partial of one.
SamplerFactory = Callable[..., Sampler[int]]


class CohortDataModule(L.LightningDataModule):
    """Train and validation loaders over one cache for one fold.

    Args:
        images_path: the cache's ``images.npy``.
        labels: class index of every cache row.
        train_rows, val_rows: cache rows of the fold's training and validation subjects.
        batch_size: rows per batch (in ``slices`` mode each row gives S samples).
        sampler: called with the training rows' class indices and ``seed`` (``conf/sampler``).
        num_workers: DataLoader worker processes (0 reads in the training process).
        seed: base seed of the sampling order.
        pin_memory: page-lock batches for faster host-to-GPU copies.
    """

    def __init__(
        self,
        images_path: str | Path,
        labels: np.ndarray,
        train_rows: np.ndarray,
        val_rows: np.ndarray,
        *,
        batch_size: int = 32,
        sampler: SamplerFactory = EpochShuffleSampler,
        num_workers: int = 0,
        seed: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        labels = np.asarray(labels, dtype=np.int64)
        self.train_set = CachedSlices(images_path, train_rows, labels[train_rows])
        self.val_set = CachedSlices(images_path, val_rows, labels[val_rows])
        self.batch_size = int(batch_size)
        self.sampler = sampler
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.pin_memory = bool(pin_memory)

    def _loader(self, dataset: CachedSlices, batch_size: int, **kwargs: Any) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            collate_fn=keep_batch,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        sampler = self.sampler(self.train_set.labels, self.seed)
        return self._loader(self.train_set, self.batch_size, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, 2 * self.batch_size, shuffle=False)
