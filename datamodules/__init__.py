"""Data modules, installed as ``predlearn.datamodules``. Importing registers them by name."""

from predlearn.datamodules.base import SequenceDataModule
from predlearn.datamodules.moving_mnist import MovingMNISTDataModule

__all__ = ["MovingMNISTDataModule", "SequenceDataModule"]
