"""The base of every predlearn data module: batches of (B, T, C, H, W) float frames in [0, 1]."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset


class SequenceDataModule(L.LightningDataModule):
    """Shared loader settings for sequence data sets.

    Every batch is a float tensor of shape (batch, context_frames + horizon, channels, height,
    width) with values in [0, 1]. Test and validation loaders never drop the last batch, so every
    held-out sequence is scored.

    Args:
        batch_size: sequences per batch (paper §4: 8).
        num_workers: loader worker processes.
        context_frames: observed frames J (paper §4.1: 10).
        horizon: predicted frames K (paper §4.1: 10).
    """

    def __init__(
        self,
        batch_size: int = 8,  # paper §4: batch size 8
        num_workers: int = 0,
        context_frames: int = 10,  # paper §4.1: 10 input frames
        horizon: int = 10,  # paper §4.1: 10 predicted frames
    ) -> None:
        super().__init__()
        if batch_size < 1 or context_frames < 1 or horizon < 1:
            raise ValueError(
                f"batch_size, context_frames and horizon must be positive; got {batch_size}, "
                f"{context_frames}, {horizon}"
            )
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.context_frames = context_frames
        self.horizon = horizon

    @property
    def sequence_length(self) -> int:
        return self.context_frames + self.horizon

    def _loader(self, dataset: Dataset, shuffle: bool = False, **kwargs) -> DataLoader:
        """A loader in batches of ``batch_size`` that keeps the last, partial batch.

        Evaluation loaders (``shuffle=False``) in a distributed run give each rank every
        world-size-th sequence without padding: Lightning's default sampler would repeat
        sequences to even out the ranks, and they would be scored twice.
        """
        sampler = None
        if not shuffle and torch.distributed.is_available() and torch.distributed.is_initialized():
            sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
            **kwargs,
        )
