"""Data modules, installed as ``predlearn.datamodules``.

Their registry names are declared as entry points in ``pyproject.toml`` (group
``predlearn.datamodules``), as a plugin package declares its own. Each data set is a dataset
layer (reading, decoding, caching, windows) and a thin ``LightningDataModule``.
"""

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
