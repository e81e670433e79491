"""A tiny model and datamodule to exercise the CLI plumbing (config, logging, checkpoints) in seconds."""

from __future__ import annotations

import numpy as np
import torch
from lightning.pytorch import LightningDataModule, LightningModule
from torch.utils.data import DataLoader, TensorDataset


class ToyRegression(LightningModule):
    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.linear = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.linear(x).squeeze(-1), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", torch.nn.functional.mse_loss(self.linear(x).squeeze(-1), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class ToyData(LightningDataModule):
    def __init__(self, path: str, batch_size: int = 16) -> None:
        super().__init__()
        self.path, self.batch_size = path, batch_size

    def setup(self, stage: str) -> None:
        data = np.load(self.path)
        self.dataset = TensorDataset(torch.from_numpy(data["x"]), torch.from_numpy(data["y"]))

    def train_dataloader(self):
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.dataset, batch_size=self.batch_size)
