"""``ImageGAN``: a pretrained 2D StyleGAN2 generator (e.g. NVIDIA's FFHQ networks, imported with
``facegen gan import`` or read directly) as a model that ``facegen predict`` runs: one image per seed of a
:class:`~facegen.data.SeedDataModule`, with truncation and the chosen noise mode. It is the frozen 2D face
generator of the texture paper's pipeline; it has nothing to train."""

from __future__ import annotations

from typing import Literal

import torch
from lightning.pytorch import LightningModule

from facegen.callbacks.image_exporter import ImageExporter
from facegen.data.batch import SeedBatch
from facegen.errors import ConfigError, check_choice
from facegen.nets.gan_import import read_gan
from facegen.nets.stylegan import NoiseMode, seeded_latents, to_unit
from facegen.predictions import GeneratedImages

#: Which generator of the file: the moving average of the weights (what papers show) or the trained one.
GeneratorChoice = Literal["G_ema", "G"]


class ImageGAN(LightningModule):
    """A pretrained StyleGAN2 generator for ``facegen predict``.

    Args:
        pretrained: a StyleGAN2 file (NVIDIA network pickle, stylegan2-pytorch checkpoint, or one written by
            ``facegen gan import``).
        network: ``G_ema`` or ``G``.
        truncation: psi; 1 is off, 0.5-0.7 trades variety for typical faces.
        truncation_cutoff: truncate only the first this many W+ layers (None: all).
        noise_mode: ``const`` (each layer's fixed noise, reproducible), ``random`` or ``none``.
    """

    def __init__(
        self,
        pretrained: str,
        network: GeneratorChoice = "G_ema",
        truncation: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: NoiseMode = "const",
    ) -> None:
        super().__init__()
        check_choice("model.network", network, GeneratorChoice)
        check_choice("model.noise_mode", noise_mode, NoiseMode)
        self.generator = read_gan(pretrained).build_generator(network).requires_grad_(False)
        if truncation_cutoff is not None and not 0 < truncation_cutoff <= self.generator.num_ws:
            raise ConfigError(
                f"model.truncation_cutoff must be in 1..{self.generator.num_ws} (the generator's W+ layers), "
                f"got {truncation_cutoff}"
            )
        self.truncation, self.cutoff, self.noise_mode = truncation, truncation_cutoff, noise_mode

    def train(self, mode: bool = True) -> ImageGAN:
        """The pretrained generator stays in eval mode (its ``w_avg`` never moves)."""
        super().train(mode)
        self.generator.eval()
        return self

    @torch.no_grad()
    def predict_step(self, batch: SeedBatch, batch_index: int) -> GeneratedImages:
        """One image per seed of ``batch``; z is drawn on the CPU, so seeds give the same images on any device."""
        if not isinstance(batch, SeedBatch):
            raise ConfigError(
                "ImageGAN generates from seeds: use data: class_path: facegen.data.SeedDataModule"
            )
        seeds = batch.seeds.tolist()
        z = seeded_latents(seeds, self.generator.z_dim).to(self.device)
        image = self.generator(z, self.truncation, self.noise_mode, self.cutoff)
        return GeneratedImages(seeds, to_unit(image), self.truncation)

    def prediction_writer(self, out: str, overwrite: bool, texture_size: int) -> ImageExporter:
        """The callback that writes the images (``facegen predict --out``; ``texture_size`` does not apply)."""
        return ImageExporter(out, overwrite)
