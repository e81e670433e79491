"""Data: ``facegen prepare`` (photos -> aligned crops), ``facegen synth`` (random faces), WebDataset shards and
the ``FaceDataModule`` that streams them."""

from facegen.data.augment import FaceAugmentation
from facegen.data.datamodule import FaceDataModule, SyntheticData
from facegen.data.prepare import CropOptions
from facegen.data.seeds import SeedDataModule
from facegen.data.synth import SynthOptions

__all__ = [
    "CropOptions",
    "FaceAugmentation",
    "FaceDataModule",
    "SeedDataModule",
    "SynthOptions",
    "SyntheticData",
]
