"""``FaceStyleGAN``: a 2D StyleGAN2 of face crops trained by facegen. It is the offline stand-in for NVIDIA's FFHQ
network in the texture paper's pipeline (``TextureGAN`` ``mode: composite`` reads its checkpoint as
``model.pretrained``): trained on crops framed like the MoFA's (synthetic renders with backgrounds, or prepared
photos), so that the MoFA fits its images. ``facegen predict`` on a ``SeedDataModule`` writes one image per seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from facegen.callbacks.image_exporter import ImageExporter
from facegen.callbacks.image_logger import FaceImageLogger
from facegen.data.batch import FaceBatch, InputSpec, SeedBatch
from facegen.errors import ConfigError
from facegen.evaluation.features import build_feature_extractor
from facegen.export.pictures import to_uint8
from facegen.geometry.framing import DEFAULT_FILL, DEFAULT_FOV
from facegen.nets.gan_import import read_gan
from facegen.nets.stylegan import Discriminator, Generator, seeded_latents
from facegen.predictions import GeneratedImages
from facegen.tasks.adversarial import AdversarialTask, Regularization

#: Rows and columns of the validation picture (generated images, then real crops).
PANEL = 4


class FaceStyleGAN(AdversarialTask):
    """StyleGAN2 generator and discriminator of face crops.

    Args:
        image_size, face_model, fov, fill: the crops it learns from (as MoFA's: synthetic faces are rendered with
            this face model and camera, photos cropped with this framing); they are resized to ``resolution``.
        resolution: the generated images' side (power of two).
        z_dim, w_dim, mapping_layers, channel_base, channel_max, conv_clamp: network sizes.
        lr, betas: Adam for G and D (StyleGAN2: 2e-3, (0, 0.99)), with the lazy-regularisation correction.
        regularization: R1, path length, ADA, style mixing.
        ema_half_life_images: images over which the EMA generator's memory halves.
        features: KID/FID feature extractor (``random``, ``inception[:PATH]``, ``torchscript:PATH``).
        metric_samples: images per side for validation KID.
        truncation: truncation psi of predicted images.
        pretrained: a StyleGAN2 file to start from (any format ``facegen gan import`` reads).
    """

    def __init__(
        self,
        image_size: int = 128,
        face_model: str = "builtin",
        fov: float = DEFAULT_FOV,
        fill: float = DEFAULT_FILL,
        resolution: int = 64,
        z_dim: int = 128,
        w_dim: int = 128,
        mapping_layers: int = 4,
        channel_base: int = 4096,
        channel_max: int = 128,
        conv_clamp: float | None = None,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.0, 0.99),
        regularization: Regularization | None = None,
        ema_half_life_images: int = 2000,
        features: str = "random",
        metric_samples: int = 128,
        truncation: float = 1.0,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        # plain values only: the checkpoint stays readable as tensors and data (`model.pretrained` of TextureGAN)
        self.save_hyperparameters(ignore=["truncation", "pretrained", "regularization"])
        if resolution > image_size:
            raise ConfigError(
                f"model.resolution {resolution} is larger than the crops (model.image_size {image_size}): "
                "generate at most at the crops' size"
            )
        self.truncation = truncation
        sizes = {"channel_base": channel_base, "channel_max": channel_max, "conv_clamp": conv_clamp}
        self.build_networks(
            Generator(resolution, 3, z_dim, w_dim, mapping_layers, **sizes),
            Discriminator(resolution, 3, **sizes),
            regularization or Regularization(),
        )
        if pretrained:
            self.start_from(read_gan(pretrained))
        self.features = build_feature_extractor(features)
        self._features: dict[str, list[Tensor]] = {}
        self._pictures: list[Tensor] = []

    @property
    def input_spec(self) -> InputSpec:
        hparams = self.hparams
        return InputSpec(hparams.image_size, hparams.face_model, hparams.fov, hparams.fill)

    def train(self, mode: bool = True) -> FaceStyleGAN:
        """Train G and D only: the EMA generator and the feature network stay in eval mode."""
        super().train(mode)
        self.generator_ema.eval()
        self.features.eval()
        return self

    def real_images(self, batch: FaceBatch) -> Tensor:
        """The batch's crops (B, 3, S, S) in [0, 1] at the generator's resolution: (B, 3, R, R) in [0, 1]."""
        size = self.hparams.resolution
        if batch.image.shape[-1] == size:
            return batch.image
        return F.interpolate(
            batch.image, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )

    def training_step(self, batch: FaceBatch, batch_index: int) -> None:
        real = self.real_images(batch) * 2 - 1
        self.adversarial_step(real, lambda image: image * 2 - 1, real.shape[0])

    # ------------------------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self._features = {"image_real": [], "image_fake": []}

    @torch.no_grad()
    def validation_step(self, batch: FaceBatch, batch_index: int) -> None:
        if sum(x.shape[0] for x in self._features["image_real"]) >= self.hparams.metric_samples:
            return
        real = self.real_images(batch)
        fake = self.generate(self.latents(real.shape[0]), ema=True, truncation=self.truncation)
        self._features["image_real"].append(self.features(real))
        self._features["image_fake"].append(self.features(fake))
        if batch_index == 0:
            self._pictures = [fake, real]

    def on_validation_epoch_end(self) -> None:
        if not self._features.get("image_real"):
            return
        self.log_dict(self.distribution_metrics(self._features, ("image",)), sync_dist=False)
        self._features = {}
        folder = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "images"  # a collective
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            FaceImageLogger.log_image(
                self.trainer, "faces", image_grid(self._pictures), self.global_step, folder
            )

    # ------------------------------------------------------------------------------------ prediction
    @torch.no_grad()
    def predict_step(self, batch: SeedBatch, batch_index: int) -> GeneratedImages:
        """One image per seed (the EMA generator at ``truncation``, constant noise)."""
        if not isinstance(batch, SeedBatch):
            raise ConfigError(
                "FaceStyleGAN generates from seeds: use data: class_path: facegen.data.SeedDataModule"
            )
        seeds = batch.seeds.tolist()
        z = seeded_latents(seeds, self.hparams.z_dim).to(self.device)
        return GeneratedImages(seeds, self.generate(z, ema=True, truncation=self.truncation), self.truncation)

    def prediction_writer(self, out: str, overwrite: bool, texture_size: int) -> ImageExporter:
        """The callback that writes the images (``facegen predict --out``; ``texture_size`` does not apply)."""
        return ImageExporter(out, overwrite)


def image_grid(pictures: list[Tensor], count: int = PANEL) -> np.ndarray:
    """One row per tensor of ``pictures`` (each (B, 3, R, R) in [0, 1]), its first ``count`` images side by side:
    (len(pictures) * R, count * R, 3) uint8."""
    rows = [np.concatenate([to_uint8(image) for image in images[:count]], 1) for images in pictures]
    width = max(row.shape[1] for row in rows)
    return np.concatenate([np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0))) for row in rows], 0)
