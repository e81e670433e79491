"""``SeedDataModule``: batches of random seeds, to ``facegen predict`` generated textures reproducibly."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from facegen.data.batch import SeedBatch
from facegen.errors import ConfigError


def parse_seeds(spec: str | list[int]) -> list[int]:
    """``"0-7"``, ``"1,5,9"``, ``"0-3,10"`` or a list -> the seeds in order."""
    if isinstance(spec, list):
        return [int(s) for s in spec]
    seeds: list[int] = []
    for part in str(spec).split(","):
        first, dash, last = part.strip().partition("-")
        try:
            seeds += list(range(int(first), int(last) + 1)) if dash else [int(first)]
        except ValueError:
            raise ConfigError(
                f"data.seeds: cannot read {part!r} of {spec!r} (use e.g. 0-7 or 1,5,9)"
            ) from None
    return seeds


def collate_seeds(items: list[torch.Tensor]) -> SeedBatch:
    return SeedBatch(torch.stack(items))


class SeedDataModule(LightningDataModule):
    """Predict batches (:class:`~facegen.data.batch.SeedBatch`) for the seeds of ``seeds`` (e.g. ``"0-15"``)."""

    def __init__(self, seeds: str | list[int] = "0-7", batch_size: int = 8) -> None:
        super().__init__()
        self.seeds, self.batch_size = parse_seeds(seeds), batch_size

    def predict_dataloader(self) -> DataLoader:
        seeds = torch.tensor(self.seeds, dtype=torch.long)
        return DataLoader(seeds, batch_size=self.batch_size, collate_fn=collate_seeds)
