"""Data loading that resumes exactly: every item's augmentation is seeded by (seed, epoch, position).

Workers, prefetching and a mid-epoch resume therefore never change which crop or flip an item gets;
and loading never touches the training process's own random state (dropout, the image pool ...),
which a checkpoint saves and a resume restores:

- items loaded in the main process (``num_workers=0``) run inside a forked RNG state;
- the DataLoader draws its per-iterator base seed from a generator of its own, not the global one
  (with persistent workers it draws once per run, not once per epoch, so a resumed run, which draws
  again, would otherwise fall out of step with an uninterrupted one);
- workers ignore SIGINT/SIGTERM: the trainer stops them after saving (a Ctrl-C reaches the whole
  process group, and a worker dying of it would fail the step that has to finish first).

Items are read with ``dataset.raw_item`` when the dataset has it: uint8 images whose geometry and
normalisation :meth:`i2i.method.Method.to_device` finishes on the device (:mod:`i2i.data.batch`),
so that a worker spends its time decoding.
"""

from __future__ import annotations

import random
import signal
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ..data.batch import collate
from .distributed import DistInfo


class SeededItems(Dataset):
    """Wraps a dataset: ``ds[(index, seed)]`` seeds python, numpy and torch RNGs, then loads ``index``
    (its ``raw_item(index)`` when it has one, else ``dataset[index]``)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self._load = getattr(dataset, "raw_item", None) or dataset.__getitem__

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        if torch.utils.data.get_worker_info() is not None:  # a worker process: its RNGs are its own
            _seed_all(seed)
            return self._load(index)
        py, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            _seed_all(seed)
            try:
                return self._load(index)
            finally:
                random.setstate(py)
                np.random.set_state(np_state)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    # The CPU generator only: items are made on the CPU. torch.manual_seed would also reseed (and, in
    # the main process, leave reseeded) the CUDA generators, and costs ~0.3 ms per item where CUDA is
    # built in but not started (it queues the CUDA seeding with a formatted stack trace).
    torch.default_generator.manual_seed(seed)


def _quiet_worker(worker_id: int) -> None:
    """Loader workers leave SIGINT and SIGTERM to the trainer (see the module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class ResumableSampler(Sampler[tuple[int, int]]):
    """DistributedSampler's per-epoch order (shuffled with seed + epoch), from a start position."""

    def __init__(self, n: int, seed: int, info: DistInfo, shuffle: bool = True) -> None:
        self.inner = DistributedSampler(range(n), num_replicas=info.world_size, rank=info.rank, shuffle=shuffle, seed=seed)
        self.seed = seed
        self.rank = info.rank
        self.epoch = 0
        self.start = 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start
        self.inner.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = list(self.inner)
        for pos in range(self.start, len(indices)):
            item_seed = hash((self.seed, self.epoch, self.rank, pos)) & 0x7FFFFFFF
            yield indices[pos], item_seed

    def __len__(self) -> int:
        return len(self.inner) - self.start


def make_loader(dataset: Dataset, batch_size: int, seed: int, info: DistInfo, num_workers: int,
                pin_memory: bool, persistent_workers: bool) -> tuple[DataLoader, ResumableSampler]:
    sampler = ResumableSampler(len(dataset), seed, info)  # type: ignore[arg-type]
    loader = DataLoader(
        SeededItems(dataset),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
        drop_last=False,
        generator=torch.Generator().manual_seed(seed),
        collate_fn=collate,
        worker_init_fn=_quiet_worker if num_workers > 0 else None,
    )
    return loader, sampler
