"""The adversarial UV texture model (Slossberg, Jubran, Kimmel, ECCV 2022) as a LightningModule: a StyleGAN2-style
generator of UV textures in the face model's layout, trained against natural photos through a frozen MoFA
encoder that supplies geometry, pose and light on the device, batched.

Modes (``mode``):
- ``uv``: each photo is unwrapped into UV space through its fitted geometry, de-lit by the fitted SH shading and
  masked by visibility; the discriminator compares these partial textures with generated textures under the
  same masks (mask given to D as a 4th channel).
- ``image``: the generated texture is rendered on the geometry and light fitted to a photo and composited into
  the photo; the discriminator compares real crops with these composites.

Training uses manual optimisation: a discriminator step, lazy R1 every ``r1_interval`` iterations, a generator
step (optional lazy path-length regularisation), an exponential moving average of the generator, and adaptive
discriminator augmentation. ``trainer.max_steps`` counts optimizer steps (two per iteration, plus R1/path
steps), as Lightning does for manual optimisation.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor

from facegen.callbacks.image_logger import FaceImageLogger
from facegen.callbacks.texture_exporter import TextureExporter
from facegen.data.batch import FaceBatch, InputSpec, SeedBatch
from facegen.errors import check_choice
from facegen.evaluation.distribution import frechet_distance, kernel_inception_distance
from facegen.evaluation.features import build_feature_extractor
from facegen.export.pictures import to_uint8
from facegen.geometry.precision import float32
from facegen.geometry.sh import sh_shading
from facegen.losses.adversarial import discriminator_loss, generator_loss, path_length_penalty, r1_penalty
from facegen.nets.ada import AdaptiveAugment
from facegen.nets.gan_import import read_gan, transfer
from facegen.nets.stylegan import Discriminator, Generator, seeded_latents, to_unit
from facegen.predictions import GeneratedTextures, ReconstructedTextures
from facegen.tasks.base import FaceTask
from facegen.tasks.conditioning import (
    Condition,
    MoFASource,
    condition_of,
    load_mofa,
    novel_views,
    render_texture,
)
from facegen.tasks.latent_fit import LatentFit, fit_latent
from facegen.texture.unwrap import unwrap_photo
from facegen.texture.uv import UVLayout

#: Shading below this is treated as this when de-lighting (dark, grazing texels would blow up).
MIN_SHADING = 0.05
#: Yaw angles (radians) of the novel views beside a reconstructed texture.
VIEWS_RECONSTRUCTED = (-0.6, 0.6)
#: What the discriminator compares (see the module docstring).
Mode = Literal["uv", "image"]


@dataclass
class Regularization:
    """R1 weight gamma and interval; path-length weight (0: off) and interval; ADA target and speed; the
    probability of style mixing in generator samples (StyleGAN2: 0.9; 0: off)."""

    r1_gamma: float = 1.0
    r1_interval: int = 16
    path_length: float = 0.0
    path_interval: int = 4
    ada_target: float = 0.6
    ada_speed_images: int = 100_000
    ada: bool = True
    style_mixing: float = 0.9


class TextureGAN(FaceTask):
    """StyleGAN2-style UV texture generator learned from photos.

    Args:
        mofa: the frozen MoFA's checkpoint.
        face_model: expected face model (``builtin`` or ``.npz``); the MoFA checkpoint must use the same one.
        mode: ``uv`` or ``image`` (see the module docstring).
        resolution: UV texture side (power of two).
        z_dim, w_dim, mapping_layers, channel_base, channel_max: generator/discriminator sizes.
        conv_clamp: activation clamp of both networks (StyleGAN2-ADA's FFHQ configs: 256; None: off).
        lr, betas: Adam for G and D (StyleGAN2: 2e-3, (0, 0.99)), with the lazy-regularisation correction.
        regularization: R1, path length, ADA.
        ema_half_life_images: images over which the EMA generator's memory halves.
        features: KID/FID feature extractor (``random``, ``inception[:PATH]``, ``torchscript:PATH``).
        metric_samples: images per side for validation KID (FID too when there are more than features).
        truncation: truncation psi for generation and validation pictures.
        latent_fit: settings of texture reconstruction in ``predict``.
        pretrained: a StyleGAN2 file (NVIDIA network pickle, stylegan2-pytorch checkpoint, or one written by
            ``facegen gan import``): G, G_ema and D start from its tensors wherever names and shapes match.
    """

    def __init__(
        self,
        mofa: MoFASource | None = None,
        face_model: str | None = None,
        mode: Mode = "uv",
        resolution: int = 256,
        z_dim: int = 512,
        w_dim: int = 512,
        mapping_layers: int = 8,
        channel_base: int = 16384,
        channel_max: int = 512,
        conv_clamp: float | None = None,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.0, 0.99),
        regularization: Regularization | None = None,
        ema_half_life_images: int = 10_000,
        features: str = "random",
        metric_samples: int = 256,
        truncation: float = 1.0,
        latent_fit: LatentFit | None = None,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        # generation and reconstruction settings are run-time choices: kept out of checkpoints so that the
        # config of `facegen predict --ckpt_path` decides them; so is the file the networks start from
        self.save_hyperparameters(ignore=["truncation", "latent_fit", "pretrained"])
        self.truncation = truncation
        self.automatic_optimization = False
        check_choice("model.mode", mode, Mode)
        self.regularization = regularization or Regularization()
        self.latent_fit = latent_fit or LatentFit()
        self.mofa = load_mofa(mofa or MoFASource(), face_model)
        self.mofa.freeze()
        model = self.mofa.decoder.model
        self.layout = UVLayout(model.faces, model.uv_coords, model.uv_faces, resolution)
        sizes = {"channel_base": channel_base, "channel_max": channel_max, "conv_clamp": conv_clamp}
        self.generator = Generator(resolution, 3, z_dim, w_dim, mapping_layers, **sizes)
        self.generator_ema = copy.deepcopy(self.generator).eval().requires_grad_(False)
        # image mode: D sees the crops resized to the largest power of two that fits them
        self.d_resolution = resolution if mode == "uv" else 2 ** int(math.log2(self.mofa.hparams.image_size))
        self.discriminator = Discriminator(self.d_resolution, 4 if mode == "uv" else 3, **sizes)
        if pretrained:
            self._start_from(pretrained)
        regularization = self.regularization
        self.augment = AdaptiveAugment(
            regularization.ada_target, regularization.ada_speed_images, adaptive=regularization.ada
        )
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
        self.register_buffer("mean_path_length", torch.zeros(()))
        self.features = build_feature_extractor(features)
        self._metric_batches: dict[str, list[Tensor]] = {}
        self._pictures: list[Tensor] = []

    def _start_from(self, path: str) -> None:
        """Copy the networks of the StyleGAN2 file at ``path`` wherever names and shapes match; one line reports
        how many tensors each network took and which it left at their initialisation."""
        gan = read_gan(path)
        generator = gan.states.get("G") or gan.states.get("G_ema") or {}
        reports = []
        for name, module, state in (
            ("G", self.generator, generator),
            ("G_ema", self.generator_ema, gan.states.get("G_ema") or generator),
            ("D", self.discriminator, gan.states.get("D") or {}),
        ):
            copied, left = transfer(module, state)
            shown = (
                f" (kept {len(left)}: {', '.join(left[:4])}{', ...' if len(left) > 4 else ''})"
                if left
                else ""
            )
            reports.append(f"{name} {copied}/{copied + len(left)} tensors{shown}")
        rank_zero_info(f"model.pretrained {path}: " + "; ".join(reports))

    def train(self, mode: bool = True) -> TextureGAN:
        """Train G and D only: the frozen MoFA, the EMA generator and the feature network stay in eval mode."""
        super().train(mode)
        for frozen in (self.mofa, self.generator_ema, self.features):
            frozen.eval()
        return self

    # ------------------------------------------------------------------------------------ conditioning
    @property
    def input_spec(self) -> InputSpec:
        """The frozen MoFA's: the crops it was trained on."""
        return self.mofa.input_spec

    def condition(self, batch: FaceBatch) -> Condition:
        """The frozen MoFA's code and geometry for ``batch``."""
        return condition_of(self.mofa, batch)

    @torch.no_grad()
    def real_textures(self, condition: Condition) -> tuple[Tensor, Tensor]:
        """De-lit partial UV textures (B, 3, R, R) in [0, 1] and their visibility masks (B, 1, R, R) in {0, 1},
        computed in float32 even inside autocast."""
        with float32(condition.image.device):
            return self._real_textures(condition)

    def _real_textures(self, condition: Condition) -> tuple[Tensor, Tensor]:
        decoded, size = condition.decoded, tuple(condition.image.shape[-2:])
        unwrapped = unwrap_photo(
            self.layout, condition.image, decoded.vertices, decoded.normals, decoded.K, size
        )
        shading = self.layout.bake(sh_shading(decoded.normals, condition.code.light))
        seen = (unwrapped.visibility > 0).to(shading.dtype)
        albedo = (unwrapped.texture / shading.clamp(min=MIN_SHADING)).clamp(0, 1) * seen
        return albedo, seen

    def render(self, texture: Tensor, condition: Condition) -> Tensor:
        """UV ``texture`` (B, 3, R, R) in [0, 1] shaded on the fitted faces, composited into the photos."""
        return render_texture(self.mofa.decoder, texture, condition)

    def real_inputs(self, condition: Condition) -> tuple[Tensor, Tensor | None]:
        """What D sees of the photos, in [-1, 1], and (``uv`` mode) the visibility masks (B, 1, R, R) that
        generated textures are shown under: those of other photos of the batch."""
        if self.hparams.mode == "uv":
            real, seen = self.real_textures(condition)
            return torch.cat([real * 2 - 1, seen * 2 - 1], 1), seen.roll(1, 0)
        return self._at_d_resolution(condition.image) * 2 - 1, None

    def fake_inputs(self, texture: Tensor, condition: Condition, masks: Tensor | None) -> Tensor:
        """Generated ``texture`` (B, 3, R, R) in [0, 1] presented to D like the real inputs."""
        if self.hparams.mode == "uv":
            return torch.cat([texture * masks * 2 - 1, masks * 2 - 1], 1)
        return self._at_d_resolution(self.render(texture, condition)) * 2 - 1

    def _at_d_resolution(self, image: Tensor) -> Tensor:
        if image.shape[-1] == self.d_resolution:
            return image
        return F.interpolate(image, size=(self.d_resolution,) * 2, mode="bilinear", antialias=True)

    def generate(self, z: Tensor, ema: bool = False, truncation: float = 1.0) -> Tensor:
        """z (B, z_dim) -> UV textures (B, 3, R, R) in [0, 1]: the training generator with random noise and
        style mixing, or (``ema``) the EMA generator with its constant noise and ``truncation``."""
        if ema:
            return to_unit(self.generator_ema(z, truncation, noise_mode="const"))
        ws = self.generator.mixed_ws(z, self.regularization.style_mixing)
        return to_unit(self.generator.synthesis(ws, noise_mode="random"))

    # ------------------------------------------------------------------------------------ training
    def training_step(self, batch: FaceBatch, batch_index: int) -> None:
        g_optimizer, d_optimizer = self.optimizers()
        regularization, step = self.regularization, int(self.iteration)
        condition = self.condition(batch)
        batch_size = condition.image.shape[0]

        real, masks = self.real_inputs(condition)  # the photos are unwrapped once per iteration
        with torch.no_grad():
            fake = self.fake_inputs(self.generate(self.latents(batch_size)), condition, masks)
        real_logits = self.discriminator(self.augment(real))
        fake_logits = self.discriminator(self.augment(fake))
        d_loss = discriminator_loss(real_logits, fake_logits)
        self._check_finite(d_loss=d_loss)
        d_optimizer.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        d_optimizer.step()
        self.augment.update(real_logits.detach())
        logs = {
            "d_loss": d_loss.detach(),
            "real_logit": real_logits.detach().mean(),
            "fake_logit": fake_logits.detach().mean(),
            "ada_p": self.augment.p,
        }

        if regularization.r1_gamma > 0 and step % regularization.r1_interval == 0:
            real_r1 = real.detach().requires_grad_(True)
            penalty = r1_penalty(self.discriminator(self.augment(real_r1)), real_r1)
            d_optimizer.zero_grad(set_to_none=True)
            self.manual_backward(penalty * regularization.r1_gamma / 2 * regularization.r1_interval)
            d_optimizer.step()
            logs["r1"] = penalty.detach()

        texture = self.generate(self.latents(batch_size))
        g_loss = generator_loss(self.discriminator(self.augment(self.fake_inputs(texture, condition, masks))))
        self._check_finite(g_loss=g_loss)
        g_optimizer.zero_grad(set_to_none=True)
        self.manual_backward(g_loss)
        g_optimizer.step()
        logs.update(g_loss=g_loss.detach(), fake_std=texture.detach().std(0).mean())
        if logs["fake_std"] < 1e-3:
            rank_zero_warn(
                f"step {step}: generated textures hardly differ (std {logs['fake_std']:.2e}): mode collapse"
            )

        if regularization.path_length > 0 and step % regularization.path_interval == 0:
            ws = self.generator.ws(self.latents(max(1, batch_size // 2))).detach().requires_grad_(True)
            penalty, lengths = path_length_penalty(self.generator.synthesis(ws), ws, self.mean_path_length)
            g_optimizer.zero_grad(set_to_none=True)
            self.manual_backward(penalty * regularization.path_length * regularization.path_interval)
            g_optimizer.step()
            self.mean_path_length.lerp_(lengths, 0.01)
            logs["path_length"] = penalty.detach()

        self.update_ema(batch_size)
        self.iteration += 1
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, prog_bar=False, batch_size=batch_size)
        self.log("train/g_loss_bar", g_loss.detach(), prog_bar=True, batch_size=batch_size, logger=False)

    def latents(self, batch_size: int) -> Tensor:
        return torch.randn(batch_size, self.hparams.z_dim, device=self.device)

    @torch.no_grad()
    def update_ema(self, batch_size: int) -> None:
        beta = 0.5 ** (batch_size / max(1, self.hparams.ema_half_life_images))
        for ema, live in zip(self.generator_ema.parameters(), self.generator.parameters(), strict=True):
            ema.lerp_(live, 1 - beta)
        for ema, live in zip(self.generator_ema.buffers(), self.generator.buffers(), strict=True):
            ema.copy_(live)

    def _check_finite(self, **losses: Tensor) -> None:
        message = self.nonfinite(losses)
        if message is not None:
            raise FloatingPointError(
                f"{message} (G/D diverged; lower model.lr or raise regularization.r1_gamma)"
            )

    def configure_optimizers(self):
        """Adam for G and D with StyleGAN2's lazy-regularisation correction of lr and betas."""

        def adam(parameters, interval: int) -> torch.optim.Adam:
            ratio = interval / (interval + 1) if interval else 1.0
            betas = tuple(b**ratio for b in self.hparams.betas)
            return torch.optim.Adam(parameters, lr=self.hparams.lr * ratio, betas=betas)

        regularization = self.regularization
        g_interval = regularization.path_interval if regularization.path_length > 0 else 0
        d_interval = regularization.r1_interval if regularization.r1_gamma > 0 else 0
        return adam(self.generator.parameters(), g_interval), adam(
            self.discriminator.parameters(), d_interval
        )

    # ------------------------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self._metric_batches = {"uv_real": [], "uv_fake": [], "render_real": [], "render_fake": []}

    @torch.no_grad()
    def validation_step(self, batch: FaceBatch, batch_index: int) -> None:
        seen_so_far = sum(x.shape[0] for x in self._metric_batches["uv_real"])
        if seen_so_far >= self.hparams.metric_samples:
            return
        condition = self.condition(batch)
        real, seen = self.real_textures(condition)
        texture = self.generate(self.latents(real.shape[0]), ema=True, truncation=self.truncation)
        grey = 0.5 * (1 - seen)
        rendered = self.render(texture, condition)
        self._metric_batches["uv_real"].append(self.features(real * seen + grey))
        self._metric_batches["uv_fake"].append(self.features(texture * seen + grey))
        self._metric_batches["render_real"].append(self.features(condition.image))
        self._metric_batches["render_fake"].append(self.features(rendered))
        if batch_index == 0:
            self._pictures = [real * seen + grey, texture, condition.image, rendered]

    def on_validation_epoch_end(self) -> None:
        if not self._metric_batches.get("uv_real"):
            return
        gathered = {
            k: self.all_gather(torch.cat(v)).reshape(-1, v[0].shape[-1])
            for k, v in self._metric_batches.items()
        }
        metrics = {}
        for space in ("uv", "render"):
            real, fake = gathered[f"{space}_real"], gathered[f"{space}_fake"]
            metrics[f"val/kid_{space}"], metrics[f"val/kid_{space}_std"] = kernel_inception_distance(
                real, fake
            )
            if min(real.shape[0], fake.shape[0]) > real.shape[1]:
                metrics[f"val/fid_{space}"] = frechet_distance(real, fake)
        self.log_dict(metrics, sync_dist=False)
        self._metric_batches = {}
        folder = (
            Path(self.trainer.log_dir or self.trainer.default_root_dir) / "images"
        )  # on every rank (a collective)
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            FaceImageLogger.log_image(
                self.trainer, "textures", texture_panel(self._pictures), self.global_step, folder
            )

    # ------------------------------------------------------------------------------------ prediction
    def predict_step(
        self, batch: SeedBatch | FaceBatch, batch_index: int
    ) -> GeneratedTextures | ReconstructedTextures:
        """Generation for a :class:`SeedBatch`, texture reconstruction for a :class:`FaceBatch` of photos."""
        if isinstance(batch, SeedBatch):
            return self.generated(batch.seeds.tolist())
        return self.reconstructed(batch)

    @torch.no_grad()
    def generated(self, seeds: list[int]) -> GeneratedTextures:
        """One texture per seed (the EMA generator at ``truncation``), shown on the mean shape."""
        z = seeded_latents(seeds, self.hparams.z_dim).to(self.device)
        texture = self.generate(z, ema=True, truncation=self.truncation)
        model = self.mofa.decoder.model
        vertices = model.mean.expand(len(seeds), -1, -1)
        views = novel_views(self.mofa.decoder, vertices, texture)
        return GeneratedTextures(seeds, texture, vertices, views, self.truncation)

    def reconstructed(self, batch: FaceBatch) -> ReconstructedTextures:
        """Textures fitted to the photos of ``batch`` (:class:`LatentFit`), on the MoFA's (refined) geometry."""
        decoder, model = self.mofa.decoder, self.mofa.decoder.model
        condition = self.condition(batch)
        fit = self.latent_fit
        if fit.refine is not None and fit.refine.active and len(batch):
            code = self.mofa.refined(batch, condition.code, fit.refine).code
            condition = condition._replace(code=code, decoded=decoder(code))
        if len(batch):
            texture, rendered, history, metrics = fit_latent(self.generator_ema, decoder, condition, fit)
        else:
            size = self.hparams.resolution
            texture, rendered, history = batch.image.new_zeros(0, 3, size, size), batch.image, []
            metrics = {name: batch.image.new_zeros(0) for name in ("psnr", "ssim", "l1")}
        code = condition.code
        vertices = model(shape=code.shape, expression=code.expression).vertices.expand(len(batch), -1, -1)
        views = novel_views(decoder, vertices, texture, VIEWS_RECONSTRUCTED)
        return ReconstructedTextures(batch, texture, vertices, rendered, views, history, metrics)

    def prediction_writer(self, out: str, overwrite: bool, texture_size: int) -> TextureExporter:
        """The callback that writes this model's predictions (``facegen predict --out``)."""
        return TextureExporter(out, self.mofa.decoder.model, overwrite, texture_size)


def texture_panel(pictures: list[Tensor], count: int = 4) -> np.ndarray:
    """Rows of real partial UV texture | generated UV texture | photo | generated texture rendered into it, as
    (rows * R, 4 * R, 3) uint8 (photos resized to the texture size)."""
    size = pictures[0].shape[-1]
    rows = []
    for i in range(min(count, pictures[0].shape[0])):
        cells = [
            F.interpolate(p[i : i + 1], size=(size, size), mode="bilinear", align_corners=False)[0]
            for p in pictures
        ]
        rows.append(np.concatenate([to_uint8(cell) for cell in cells], 1))
    return np.concatenate(rows, 0)
