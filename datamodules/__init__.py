"""Data modules, installed as ``predlearn.datamodules``. Importing registers them by name."""

from predlearn.datamodules.base import SequenceDataModule
from predlearn.datamodules.frames import FramesDataModule
from predlearn.datamodules.kth import KTHDataModule
from predlearn.datamodules.moving_mnist import MovingMNISTDataModule
from predlearn.datamodules.radar import RadarDataModule

__all__ = [
    "FramesDataModule",
    "KTHDataModule",
    "MovingMNISTDataModule",
    "RadarDataModule",
    "SequenceDataModule",
]
