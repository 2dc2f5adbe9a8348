"""On-the-fly training streams that resume exactly, mid-epoch included.

Batch ``n`` of epoch ``e`` on rank ``r`` is drawn from its own random generator, seeded from
(seed, r, e, n). The stream is therefore the same whatever the number of loader workers, different
on every rank, and can start at any batch without generating the ones before it. The
``ResumableStreamLoader`` saves (epoch, batches consumed) in Lightning checkpoints
(``state_dict``/``load_state_dict``), so resuming from any checkpoint continues with the very
batch an uninterrupted run would have drawn next.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from predlearn import denormals


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside torch.distributed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class BatchStream(IterableDataset):
    """Yields whole batches; subclasses implement ``make_batch(rng, count)``.

    Args:
        sequences_per_epoch: sequences per epoch over all ranks; each rank yields its share in
            batches of ``batch_size`` (the last one may be short).
        batch_size: sequences per batch.
        seed: base seed of the stream.
        rank, world_size: this process's place in a distributed run (default: detected).
        tag: mixed into the seed so different streams never share random numbers.
    """

    def __init__(self, sequences_per_epoch: int, batch_size: int, seed: int = 0,
                 rank: int | None = None, world_size: int | None = None, tag: int = 0) -> None:
        super().__init__()
        if sequences_per_epoch < 1 or batch_size < 1:
            raise ValueError(
                f"sequences_per_epoch and batch_size must be positive; got {sequences_per_epoch} "
                f"and {batch_size}"
            )
        detected_rank, detected_world = distributed_rank()
        self.rank = detected_rank if rank is None else rank
        self.world_size = detected_world if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, world_size={self.world_size})")
        self.sequences_per_epoch = sequences_per_epoch
        self.batch_size = batch_size
        self.seed = seed
        self.tag = tag
        self.epoch = 0
        self.start_batch = 0

    def make_batch(self, rng: np.random.Generator, count: int) -> torch.Tensor:
        raise NotImplementedError

    def sequences_on_this_rank(self) -> int:
        total, parts = self.sequences_per_epoch, self.world_size
        return total // parts + (1 if self.rank < total % parts else 0)

    def __len__(self) -> int:
        """Batches this rank yields per epoch."""
        return math.ceil(self.sequences_on_this_rank() / self.batch_size)

    def batch_size_of(self, index: int) -> int:
        return min(self.batch_size, self.sequences_on_this_rank() - index * self.batch_size)

    def rng(self, epoch: int, index: int) -> np.random.Generator:
        """The generator of batch ``index`` of ``epoch`` on this rank."""
        entropy = [self.seed, self.tag, self.rank, epoch, index]
        return np.random.default_rng(np.random.SeedSequence(entropy))

    def batch(self, epoch: int, index: int) -> torch.Tensor:
        return self.make_batch(self.rng(epoch, index), self.batch_size_of(index))

    def __iter__(self) -> Iterator[torch.Tensor]:
        # A DataLoader takes one item from each worker in turn, so worker w serves batches
        # start + w, start + w + W, ...: the order is the same with or without workers.
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for index in range(self.start_batch + worker, len(self), workers):
            yield self.batch(self.epoch, index)


class ResumableStreamLoader(DataLoader):
    """A DataLoader over a ``BatchStream`` that Lightning checkpoints and resumes exactly.

    Each ``iter()`` starts a new epoch, or, right after ``load_state_dict``, continues the saved
    epoch at the first batch not yet consumed.

    Lightning fetches a batch ahead of the one it trains on, so the batches this loader has
    served are one more than those consumed. With ``count_consumed=True`` the saved position is
    the count of ``mark_consumed()`` calls instead, which the data module makes from its public
    ``on_before_batch_transfer`` hook, once per batch the trainer actually trains on.
    """

    dataset: BatchStream  # set by DataLoader.__init__ to ``stream``

    def __init__(self, stream: BatchStream, count_consumed: bool = False,
                 **kwargs: Any) -> None:
        if kwargs.get("num_workers", 0) > 0:  # workers flush denormals as the main thread does
            kwargs["worker_init_fn"] = denormals.worker_init_fn(kwargs.get("worker_init_fn"))
        super().__init__(stream, batch_size=None, **kwargs)
        self.count_consumed = count_consumed
        self._epoch = -1
        self._served = 0
        self._consumed = 0
        self._resume_at: tuple[int, int] | None = None

    def mark_consumed(self) -> None:
        """One more batch of the current epoch was handed to the training step."""
        self._consumed += 1

    # DataLoader.__iter__ returns its iterator object; this generator wraps it to count the
    # batches served, and whoever iterates a loader needs no more than an iterator.
    def __iter__(self) -> Iterator[torch.Tensor]:  # type: ignore[override]
        stream = self.dataset
        epoch, start = self._resume_at or (self._epoch + 1, 0)
        self._resume_at = None
        self._epoch, self._served, self._consumed = epoch, start, start
        stream.epoch, stream.start_batch = epoch, start  # before the workers copy the stream
        for batch in super().__iter__():
            self._served += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        consumed = self._consumed if self.count_consumed else self._served
        return {"epoch": self._epoch, "batches_consumed": int(consumed)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, consumed = int(state["epoch"]), int(state["batches_consumed"])
        if consumed >= len(self.dataset):  # saved at the end of an epoch: start the next one
            epoch, consumed = epoch + 1, 0
        self._resume_at = (epoch, consumed)
