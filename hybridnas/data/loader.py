"""Deterministic, resumable sharding and a DataLoader that skips and counts bad items."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from hybridnas.config import ConfigError
from hybridnas.data.bad import BadItem, log


class ResumableDistributedSampler(Sampler[int]):
    """Like torch's DistributedSampler (same seed -> same order; rank r takes every
    world_size-th index of one shared permutation, so shards are disjoint), plus
    :meth:`set_start_batch`.

    Why DistributedSampler alone cannot resume: it only knows the epoch, so a search killed
    mid-epoch restarts that epoch from its first batch, replaying the batches it already
    trained on and putting the step counter and the data out of step. Here the permutation is
    a pure function of (seed, epoch), and ``set_start_batch(n)`` drops this rank's first
    ``n * batch_size`` indices, so a resumed run sees exactly the batches it had not seen.
    Augmentation randomness is not replayed (it comes from the workers' torch RNG).
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} not in [0, {num_replicas})")
        self.n, self.batch_size = len(dataset), batch_size
        self.num_replicas, self.rank = num_replicas, rank
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch, self.start_batch = 0, 0
        if drop_last:
            self.num_samples = self.n // num_replicas
        else:
            self.num_samples = math.ceil(self.n / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's permutation; also resets the start batch to 0."""
        self.epoch, self.start_batch = epoch, 0

    def set_start_batch(self, n: int) -> None:
        """Skip this rank's first ``n`` batches of the current epoch (call after set_epoch)."""
        self.start_batch = n

    def _rank_indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = self.num_samples * self.num_replicas
        if total > len(order):  # pad by wrapping, as DistributedSampler does
            order += (order * math.ceil(total / max(len(order), 1)))[: total - len(order)]
        return order[:total][self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self._rank_indices()[self.start_batch * self.batch_size :])

    def __len__(self) -> int:
        return max(self.num_samples - self.start_batch * self.batch_size, 0)


@dataclass
class _Collated:
    """A batch plus the bad items dropped from it; travels from a worker to the main process,
    where the loader records the bad items (workers' copies of the dataset are discarded)."""

    batch: object
    bad: list[BadItem] = field(default_factory=list)


def collate_skip_bad(items: list) -> _Collated:
    """default_collate over the good items; ``batch`` is None if every item was bad."""
    good = [x for x in items if not isinstance(x, BadItem)]
    bad = [x for x in items if isinstance(x, BadItem)]
    return _Collated(default_collate(good) if good else None, bad)


class VideoLoader(DataLoader):
    """A DataLoader whose batches never contain unreadable items.

    Bad items are recorded on the dataset (one warning each, ever) and counted per epoch;
    ``last_epoch_bad`` holds the count after each pass, also logged. A pass that yields no
    batch at all because everything was bad raises, naming the dataset root.
    """

    def __iter__(self) -> Iterator:
        self.last_epoch_bad = 0
        yielded = 0
        for out in super().__iter__():
            if out.bad:
                self.last_epoch_bad += len(out.bad)
                if hasattr(self.dataset, "record_bad"):
                    self.dataset.record_bad(out.bad)
            if out.batch is None:
                continue
            yielded += 1
            yield out.batch
        if self.last_epoch_bad:
            log.warning(
                "epoch done: skipped %d unreadable item(s) of %d (%s)",
                self.last_epoch_bad,
                len(self.sampler) if hasattr(self.sampler, "__len__") else -1,
                getattr(self.dataset, "root", ""),
            )
        if yielded == 0 and self.last_epoch_bad:
            root = getattr(self.dataset, "root", "") or type(self.dataset).__name__
            raise RuntimeError(f"no usable clip in {root}: every item this epoch was unreadable")


def build_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    train: bool,
    workers: int = 0,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool | None = None,
) -> VideoLoader:
    """A :class:`VideoLoader` over this rank's shard.

    ``train``: shuffled with a (seed, epoch) permutation, drop_last defaults to True; eval:
    in order, drop_last False. Call ``loader.sampler.set_epoch(e)`` every epoch and
    ``loader.sampler.set_start_batch(n)`` when resuming mid-epoch.
    """
    drop_last = train if drop_last is None else drop_last
    sampler = ResumableDistributedSampler(
        dataset,
        batch_size=batch_size,
        num_replicas=world_size,
        rank=rank,
        shuffle=train,
        seed=seed,
        drop_last=drop_last and world_size > 1,
    )
    return VideoLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_skip_bad,
        drop_last=drop_last,
        # seeds the workers' torch RNG (augmentations) from the run seed and rank
        generator=torch.Generator().manual_seed(seed * 1000 + rank),
        persistent_workers=False,
    )


def require_one_batch(split: str, dataset: Dataset, loader: DataLoader, ranks: int) -> None:
    """Refuse a training split too small for one batch per rank: every epoch would run 0 steps
    and the run would still write a model (or SDAS fix every edge from untrained alphas)."""
    if len(loader) == 0:
        clips = len(dataset)
        raise ConfigError(
            f"the {split} split has {clips} clips ({clips // ranks} per rank on {ranks} "
            f"rank(s)), fewer than one batch of data.batch_size={loader.batch_size}: the run "
            "would train 0 steps; lower data.batch_size or give the split more clips"
        )
