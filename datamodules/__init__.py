"""Data modules, installed as ``predlearn.datamodules``. Importing registers them by name."""

from predlearn.datamodules.base import SequenceDataModule

__all__ = ["SequenceDataModule"]
