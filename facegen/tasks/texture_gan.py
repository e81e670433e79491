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

import contextvars
import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor

from facegen.callbacks.image_logger import FaceImageLogger
from facegen.callbacks.texture_exporter import TextureExporter
from facegen.callbacks.visuals import to_uint8
from facegen.decoder import DecodedFace, FaceCode
from facegen.errors import ConfigError
from facegen.evaluation.distribution import frechet_distance, kernel_inception_distance
from facegen.evaluation.features import TorchScriptFeatures, build_feature_extractor
from facegen.export.files import write_bytes_atomic
from facegen.geometry.sh import sh_shading
from facegen.losses import photometric_loss, ssim_loss
from facegen.losses.adversarial import discriminator_loss, generator_loss, path_length_penalty, r1_penalty
from facegen.morphable.registry import load_face_model
from facegen.nets.ada import AdaptiveAugment
from facegen.nets.stylegan import Discriminator, Generator
from facegen.tasks.mofa import MoFA
from facegen.tasks.refine import RefineOptions, clone_out_of_inference
from facegen.texture.unwrap import unwrap_photo
from facegen.texture.uv import UVLayout

#: Shading below this is treated as this when de-lighting (dark, grazing texels would blow up).
MIN_SHADING = 0.05


@dataclass
class MoFASource:
    """The frozen MoFA that fits geometry, pose and light: a checkpoint, trained first from ``config`` (a MoFA
    config such as ``configs/mofa.yaml``) when the file is missing and a config is given."""

    checkpoint: str = "models/mofa_quickstart.ckpt"
    config: str | None = None


@dataclass
class Regularization:
    """R1 weight gamma and interval; path-length weight (0: off) and interval; ADA target and speed."""

    r1_gamma: float = 1.0
    r1_interval: int = 16
    path_length: float = 0.0
    path_interval: int = 4
    ada_target: float = 0.6
    ada_speed_images: int = 100_000
    ada: bool = True


@dataclass
class LatentFit:
    """Texture reconstruction from a photo: ``w_steps`` on one W, then ``wplus_steps`` on W+ (per layer), Adam at
    ``lr``; photometric L1 + ``ssim`` weight on visible face pixels, + ``prior`` * |w - w_avg|² / w_dim, +
    ``perceptual_weight`` * squared feature distance under the TorchScript network at ``perceptual`` (a file you
    provide, e.g. a VGG feature extractor taking uint8 images; nothing is downloaded). ``refine``: MoFA
    refinement of the geometry first (loss weights: ``refine.weights``, else the MoFA's training weights)."""

    w_steps: int = 100
    wplus_steps: int = 100
    lr: float = 0.05
    ssim: float = 0.5
    prior: float = 1e-3
    perceptual: str | None = None
    perceptual_weight: float = 1.0
    refine: RefineOptions | None = None


class Condition(NamedTuple):
    """What the frozen MoFA says of a batch of photos: image (B, 3, S, S) in [0, 1], face mask (B, 1, S, S), code,
    decoded geometry."""

    image: Tensor
    mask: Tensor
    code: FaceCode
    decoded: DecodedFace


class TextureGAN(LightningModule):
    """StyleGAN2-style UV texture generator learned from photos.

    Args:
        mofa: the frozen MoFA (checkpoint, and the config that produces it when missing).
        face_model: expected face model (``builtin`` or ``.npz``); the MoFA checkpoint must use the same one.
        mode: ``uv`` or ``image`` (see the module docstring).
        resolution: UV texture side (power of two).
        z_dim, w_dim, mapping_layers, channel_base, channel_max: generator/discriminator sizes.
        lr, betas: Adam for G and D (StyleGAN2: 2e-3, (0, 0.99)), with the lazy-regularisation correction.
        regularization: R1, path length, ADA.
        ema_half_life_images: images over which the EMA generator's memory halves.
        features: KID/FID feature extractor (``random``, ``inception[:PATH]``, ``torchscript:PATH``).
        metric_samples: images per side for validation KID (FID too when there are more than features).
        truncation: truncation psi for generation and validation pictures.
        latent_fit: settings of texture reconstruction in ``predict``.
    """

    def __init__(
        self,
        mofa: MoFASource | None = None,
        face_model: str | None = None,
        mode: str = "uv",
        resolution: int = 256,
        z_dim: int = 512,
        w_dim: int = 512,
        mapping_layers: int = 8,
        channel_base: int = 16384,
        channel_max: int = 512,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.0, 0.99),
        regularization: Regularization | None = None,
        ema_half_life_images: int = 10_000,
        features: str = "random",
        metric_samples: int = 256,
        truncation: float = 1.0,
        latent_fit: LatentFit | None = None,
    ) -> None:
        super().__init__()
        # generation and reconstruction settings are run-time choices: kept out of checkpoints so that the
        # config of `facegen predict --ckpt_path` decides them
        self.save_hyperparameters(ignore=["truncation", "latent_fit"])
        self.truncation = truncation
        self.automatic_optimization = False
        if mode not in ("uv", "image"):
            raise ConfigError(f"model.mode must be 'uv' or 'image', got {mode!r}")
        self.regularization = regularization or Regularization()
        self.latent_fit = latent_fit or LatentFit()
        self.mofa = load_mofa(mofa or MoFASource(), face_model)
        self.mofa.freeze()
        model = self.mofa.decoder.model
        self.layout = UVLayout(model.faces, model.uv_coords, model.uv_faces, resolution)
        sizes = {"channel_base": channel_base, "channel_max": channel_max}
        self.generator = Generator(resolution, 3, z_dim, w_dim, mapping_layers, **sizes)
        self.generator_ema = copy.deepcopy(self.generator).eval().requires_grad_(False)
        # image mode: D sees the crops resized to the largest power of two that fits them
        self.d_resolution = resolution if mode == "uv" else 2 ** int(math.log2(self.mofa.hparams.image_size))
        self.discriminator = Discriminator(self.d_resolution, 4 if mode == "uv" else 3, **sizes)
        self.augment = AdaptiveAugment(self.regularization.ada_target, self.regularization.ada_speed_images,
                                       adaptive=self.regularization.ada)  # fmt: skip
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
        self.register_buffer("mean_path_length", torch.zeros(()))
        self.features = build_feature_extractor(features)
        self._metric_batches: dict[str, list[Tensor]] = {}
        self._pictures: list[Tensor] = []

    def train(self, mode: bool = True) -> TextureGAN:
        """Train G and D only: the frozen MoFA, the EMA generator and the feature network stay in eval mode."""
        super().train(mode)
        for frozen in (self.mofa, self.generator_ema, self.features):
            frozen.eval()
        return self

    # ------------------------------------------------------------------------------------ conditioning
    @torch.no_grad()
    def condition(self, batch: dict) -> Condition:
        image = batch["image"]
        code = self.mofa(image)
        return Condition(image, batch["mask"], code, self.mofa.decoder(code))

    @torch.no_grad()
    def real_textures(self, condition: Condition) -> tuple[Tensor, Tensor]:
        """De-lit partial UV textures (B, 3, R, R) in [0, 1] and their visibility masks (B, 1, R, R) in {0, 1}."""
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
        decoded, model = condition.decoded, self.mofa.decoder.model
        return self.mofa.decoder.renderer(
            decoded.vertices, model.faces, decoded.K, texture=texture, uv_coords=model.uv_coords,
            uv_faces=model.uv_faces, sh_coeffs=condition.code.light, background=condition.image,
        ).image  # fmt: skip

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
        """z (B, z_dim) -> UV textures (B, 3, R, R) in [0, 1]."""
        generator = self.generator_ema if ema else self.generator
        return to_unit(generator(z, truncation, noise_mode="random" if not ema else "none"))

    # ------------------------------------------------------------------------------------ training
    def training_step(self, batch: dict, batch_index: int) -> None:
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
        self._check_finite(step, d_loss=d_loss)
        d_optimizer.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        d_optimizer.step()
        self.augment.update(real_logits.detach())
        logs = {"d_loss": d_loss.detach(), "real_logit": real_logits.detach().mean(),
                "fake_logit": fake_logits.detach().mean(), "ada_p": self.augment.p}  # fmt: skip

        if regularization.r1_gamma > 0 and step % regularization.r1_interval == 0:
            real_r1 = real.detach().requires_grad_(True)
            penalty = r1_penalty(self.discriminator(self.augment(real_r1)), real_r1)
            d_optimizer.zero_grad(set_to_none=True)
            self.manual_backward(penalty * regularization.r1_gamma / 2 * regularization.r1_interval)
            d_optimizer.step()
            logs["r1"] = penalty.detach()

        texture = self.generate(self.latents(batch_size))
        g_loss = generator_loss(self.discriminator(self.augment(self.fake_inputs(texture, condition, masks))))
        self._check_finite(step, g_loss=g_loss)
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

    def _check_finite(self, step: int, **losses: Tensor) -> None:
        for name, value in losses.items():
            if not torch.isfinite(value):
                raise FloatingPointError(f"step {step}: {name} is {value.item()} (G/D diverged; lower model.lr "
                                         "or raise regularization.r1_gamma)")  # fmt: skip

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
    def validation_step(self, batch: dict, batch_index: int) -> None:
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
    def predict_step(self, batch: dict, batch_index: int) -> dict:
        """Generation for batches of ``seed`` (B,), texture reconstruction for batches of photos."""
        if "seed" in batch:
            z = torch.stack([
                torch.randn(self.hparams.z_dim, generator=torch.Generator().manual_seed(int(s))) for s in batch["seed"]
            ]).to(self.device)  # fmt: skip
            return {"kind": "generated", "seed": batch["seed"].tolist(),
                    "texture": self.generate(z, ema=True, truncation=self.truncation)}  # fmt: skip
        if batch["image"].shape[0] == 0:
            return {"kind": "reconstructed", "texture": None, "batch": batch}
        condition = self.condition(batch)
        fit = self.latent_fit
        if fit.refine is not None and fit.refine.steps:
            code, _ = self.mofa.refined(batch, condition.code, fit.refine)
            condition = condition._replace(code=code, decoded=self.mofa.decoder(code))
        texture, history, metrics = fit_latent(self, condition, fit)
        return {"kind": "reconstructed", "texture": texture, "condition": condition, "batch": batch,
                "fit_loss": history, "metrics": metrics}  # fmt: skip

    def prediction_writer(self, out: str, overwrite: bool, texture_size: int):
        """The callback that writes this model's predictions (``facegen predict --out``)."""
        return TextureExporter(out, overwrite, texture_size)


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


def to_unit(image: Tensor) -> Tensor:
    """Generator output (about [-1, 1]) -> [0, 1]."""
    return (image.clamp(-1, 1) + 1) / 2


def load_mofa(source: MoFASource, face_model: str | None) -> MoFA:
    """The MoFA of ``source`` (trained from its config first when the checkpoint is missing), checked against
    ``face_model`` and for a UV layout."""
    path = Path(source.checkpoint)
    if not path.is_file():
        if source.config is None:
            raise FileNotFoundError(
                f"model.mofa.checkpoint {path} does not exist: train MoFA first (facegen fit --config "
                "configs/mofa.yaml) and point to its checkpoint, or set model.mofa.config to train it now"
            )
        train_mofa(source.config, path)
    # In an empty context: while LightningCLI instantiates this module it hands this module's init args to every
    # save_hyperparameters() call (through a context variable), which would overwrite MoFA's own.
    mofa = contextvars.Context().run(MoFA.load_from_checkpoint, str(path), map_location="cpu")
    model = mofa.decoder.model
    if not model.has_uv:
        raise ConfigError(
            f"{path}: face model {model.name!r} has no UV layout, which the texture model needs"
        )
    if face_model is not None:
        expected = load_face_model(face_model)
        same = (expected.num_vertices == model.num_vertices and torch.equal(expected.faces, model.faces)
                and expected.has_uv and torch.equal(expected.uv_faces, model.uv_faces))  # fmt: skip
        if not same:
            raise ConfigError(
                f"model.face_model {face_model!r} ({expected.num_vertices} vertices) does not match the face model "
                f"of MoFA checkpoint {path} ({model.name!r}, {model.num_vertices} vertices) or its UV layout"
            )
    return mofa


def train_mofa(config: str, checkpoint: Path) -> None:
    """Run ``facegen fit --config config`` and copy its last checkpoint to ``checkpoint``."""
    from facegen.cli import main

    root = checkpoint.parent / f"{checkpoint.stem}-training"
    rank_zero_info(f"MoFA checkpoint {checkpoint} missing: training it with {config} (logs in {root})")
    main(["fit", "--config", config, "--trainer.default_root_dir", str(root),
          "--trainer.logger.init_args.save_dir", str(root)])  # fmt: skip
    last = max(root.rglob("last.ckpt"), key=lambda p: p.stat().st_mtime)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(checkpoint, last.read_bytes())


def fit_latent(task: TextureGAN, condition: Condition, fit: LatentFit) -> tuple[Tensor, list[float], dict]:
    """Optimise the EMA generator's latent (W, then W+) so the rendered texture matches the photos on visible
    face pixels. Returns textures (B, 3, R, R) in [0, 1], the loss per step, and PSNR/SSIM/L1 on visible pixels."""
    generator = task.generator_ema
    with torch.inference_mode(False), torch.enable_grad():
        condition = clone_out_of_inference(condition)
        batch = condition.image.shape[0]
        w_avg = generator.mapping.w_avg.detach().clone()
        w = w_avg.expand(batch, -1).clone().requires_grad_(True)
        visible = visible_face_pixels(task, condition)
        perceptual = (
            TorchScriptFeatures(fit.perceptual).to(condition.image.device) if fit.perceptual else None
        )
        target_features = perceptual(condition.image).detach() if perceptual is not None else None
        history: list[float] = []

        def loss_of(ws: Tensor) -> Tensor:
            texture = to_unit(generator.synthesis(ws, noise_mode="none"))
            rendered = task.render(texture, condition)
            photometric = photometric_loss(rendered, condition.image, visible, "l1") / 3  # per colour value
            loss = photometric + fit.prior * (ws - w_avg).pow(2).sum(-1).mean() / ws.shape[-1]
            if fit.ssim > 0:
                loss = loss + fit.ssim * ssim_loss(rendered, condition.image, visible)
            if perceptual is not None:
                loss = loss + fit.perceptual_weight * (perceptual(rendered) - target_features).pow(2).mean()
            return loss

        def run(parameter: Tensor, expand, steps: int) -> None:
            optimizer = torch.optim.Adam([parameter], lr=fit.lr)
            for _ in range(steps):
                loss = loss_of(expand(parameter))
                history.append(loss.item())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

        num_ws = generator.num_ws
        run(w, lambda p: p.unsqueeze(1).expand(-1, num_ws, -1), fit.w_steps)
        wplus = w.detach().unsqueeze(1).repeat(1, num_ws, 1).requires_grad_(True)
        run(wplus, lambda p: p, fit.wplus_steps)
        with torch.no_grad():
            texture = to_unit(generator.synthesis(wplus, noise_mode="none"))
            metrics = reconstruction_metrics(task.render(texture, condition), condition.image, visible)
    return texture.detach(), history, metrics


def visible_face_pixels(task: TextureGAN, condition: Condition) -> Tensor:
    """(B, 1, S, S) float: pixels covered by the fitted mesh and inside the photo's face mask."""
    decoder = task.mofa.decoder
    covered = decoder.renderer.rasterize(
        condition.decoded.vertices, decoder.model.faces, condition.decoded.K
    ).mask
    return covered.unsqueeze(1).to(condition.image.dtype) * (condition.mask > 0.5)


def reconstruction_metrics(rendered: Tensor, photo: Tensor, visible: Tensor) -> dict[str, Tensor]:
    """PSNR (dB), SSIM and L1 per photo (B,) of ``rendered`` against ``photo`` over ``visible`` (B, 1, S, S)."""
    count = visible.sum((1, 2, 3)).clamp(min=1) * 3
    error = rendered - photo
    mse = (error.pow(2) * visible).sum((1, 2, 3)) / count
    l1 = (error.abs() * visible).sum((1, 2, 3)) / count
    ssim_map = kornia.metrics.ssim(rendered, photo, 7).mean(1, keepdim=True)
    ssim = (ssim_map * visible).sum((1, 2, 3)) / visible.sum((1, 2, 3)).clamp(min=1)
    return {"psnr": 10 * torch.log10(1 / mse.clamp(min=1e-10)), "ssim": ssim, "l1": l1}
