"""``SeedDataModule``: batches of seeds, to ``facegen predict`` generated images and textures reproducibly, and to
train the texture model in ``composite`` mode (each seed is a face of the frozen 2D generator)."""

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
    """Batches (:class:`~facegen.data.batch.SeedBatch`) of seeds (e.g. ``"0-15"``): ``seeds`` to predict,
    ``train_seeds`` (shuffled each epoch, incomplete last batch dropped) and ``val_seeds`` to fit. (Named apart
    from ``FaceDataModule``'s ``train``/``val`` folders, which a config switching data modules would carry over.)"""

    def __init__(
        self,
        seeds: str | list[int] = "0-7",
        batch_size: int = 8,
        train_seeds: str | list[int] | None = None,
        val_seeds: str | list[int] | None = None,
    ) -> None:
        super().__init__()
        self.seeds, self.batch_size = parse_seeds(seeds), batch_size
        self.train = parse_seeds(train_seeds) if train_seeds is not None else None
        self.val = parse_seeds(val_seeds) if val_seeds is not None else None
        if self.train is not None and len(self.train) < batch_size:
            raise ConfigError(
                f"data.train_seeds has {len(self.train)} seeds, fewer than data.batch_size {batch_size}: give more seeds"
            )

    def _loader(self, seeds: list[int], shuffle: bool = False) -> DataLoader:
        tensor = torch.tensor(seeds, dtype=torch.long)
        return DataLoader(
            tensor, batch_size=self.batch_size, shuffle=shuffle, drop_last=shuffle, collate_fn=collate_seeds
        )

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.seeds)

    def train_dataloader(self) -> DataLoader:
        if self.train is None:
            raise ConfigError(
                "data.train_seeds: give the training seeds (e.g. 0-99999) to fit on seed batches"
            )
        return self._loader(self.train, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val) if self.val is not None else []
