"""``SeedDataModule``: batches of seeds, to ``facegen predict`` generated images and textures reproducibly, and to
train the texture model in ``composite`` mode (each seed is a face of the frozen 2D generator), optionally with a
batch of real face photos from shards beside each batch of seeds (``real``: what the discriminator is shown as
real, as the texture paper shows it FFHQ)."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader

from facegen.data.batch import SeedBatch
from facegen.data.datamodule import EpochLoader
from facegen.data.streams import ShardStream, expand_shards
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
    from ``FaceDataModule``'s ``train``/``val`` folders, which a config switching data modules would carry over.)

    ``real``: shards of real face crops (a folder, pattern or list, as ``FaceDataModule``'s ``train``; e.g.
    ``facegen prepare``'s output) whose images ride along with the seeds when fitting: each training batch gets as
    many, drawn shuffled and looping over the shards (read by ``real_workers`` loader processes; a resumed run
    continues where it stopped), each validation batch the next ones in order (validation stops when either runs
    out). ``val_real``: other shards for validation (the images KID compares the composites with, which the
    discriminator should not have learnt from); default ``real``."""

    def __init__(
        self,
        seeds: str | list[int] = "0-7",
        batch_size: int = 8,
        train_seeds: str | list[int] | None = None,
        val_seeds: str | list[int] | None = None,
        real: str | list[str] | None = None,
        val_real: str | list[str] | None = None,
        real_workers: int = 0,
        shuffle_buffer: int = 1000,
    ) -> None:
        super().__init__()
        self.seeds, self.batch_size = parse_seeds(seeds), batch_size
        self.train = parse_seeds(train_seeds) if train_seeds is not None else None
        self.val = parse_seeds(val_seeds) if val_seeds is not None else None
        if self.train is not None and len(self.train) < batch_size:
            raise ConfigError(
                f"data.train_seeds has {len(self.train)} seeds, fewer than data.batch_size {batch_size}: give more seeds"
            )
        self.real = expand_shards(real, "data.real") if real is not None else None
        self.val_real = expand_shards(val_real, "data.val_real") if val_real is not None else self.real
        self.real_workers, self.shuffle_buffer = real_workers, shuffle_buffer

    def _with_real(self, seeds: DataLoader, stream: ShardStream, mode: str) -> CombinedLoader:
        real = EpochLoader(stream, self, num_workers=self.real_workers)
        return CombinedLoader({"seeds": seeds, "real": real}, mode=mode)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Seeds with real photos (a combined loader's dict) as one :class:`SeedBatch` (uint8 -> [0, 1])."""
        if isinstance(batch, dict):
            return SeedBatch(batch["seeds"].seeds, batch["real"]["image"].float() / 255)
        return batch

    def _loader(self, seeds: list[int], shuffle: bool = False) -> DataLoader:
        tensor = torch.tensor(seeds, dtype=torch.long)
        return DataLoader(
            tensor, batch_size=self.batch_size, shuffle=shuffle, drop_last=shuffle, collate_fn=collate_seeds
        )

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.seeds)

    def train_dataloader(self) -> DataLoader | CombinedLoader:
        if self.train is None:
            raise ConfigError(
                "data.train_seeds: give the training seeds (e.g. 0-99999) to fit on seed batches"
            )
        seeds = self._loader(self.train, shuffle=True)
        if self.real is None:
            return seeds
        ranks = self.trainer.world_size if self.trainer is not None else 1
        per_rank = max(len(self.train) // self.batch_size // ranks, 1)
        stream = ShardStream(
            self.real,
            self.batch_size,
            mode="train",
            batches_per_rank=per_rank,
            shuffle_buffer=self.shuffle_buffer,
        )
        return self._with_real(seeds, stream, "max_size_cycle")

    def val_dataloader(self) -> DataLoader | CombinedLoader | list:
        if self.val is None:
            return []
        seeds = self._loader(self.val)
        if self.val_real is None:
            return seeds
        return self._with_real(seeds, ShardStream(self.val_real, self.batch_size, mode="eval"), "min_size")
