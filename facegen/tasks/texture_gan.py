"""The adversarial UV texture model (Slossberg, Jubran, Kimmel, ECCV 2022) as a LightningModule: a StyleGAN2-style
generator of UV textures in the face model's layout, trained against natural photos through a frozen MoFA
encoder that supplies geometry, pose and light on the device, batched.

Modes (``mode``):
- ``composite`` (the paper's pipeline, the research default): a frozen 2D StyleGAN2 (``pretrained``) makes face
  images, re-posed in its latent space and partly mirrored (:mod:`facegen.tasks.reposing`); the MoFA fits each
  image; the texture generator and the discriminator start from the 2D networks (every tensor: same sizes); the
  generated texture is rendered on the fitted geometry and light and composited over the 2D image; the
  discriminator compares the 2D images with these composites. Training batches are seeds
  (``facegen.data.SeedDataModule``); photos are needed only to reconstruct their textures.
- ``uv``: each photo is unwrapped into UV space through its fitted geometry, de-lit by the fitted SH shading and
  masked by visibility; the discriminator compares these partial textures with generated textures under the
  same masks (mask given to D as a 4th channel). It learns from photos alone, without a 2D generator.

(An ``image`` mode, textures composited into photos and compared with the crops from scratch, was removed: on a
common yardstick, KID of composites into the same validation photos after the same 500 steps, it ended ten times
above the other two modes; see docs/texture_model.md.)

Training is :class:`~facegen.tasks.adversarial.AdversarialTask`'s iteration (D step, lazy R1, G step, optional path
length, EMA, ADA).

Why one module over 400 lines: the LightningModule's hooks (generation, both training modes, validation, prediction)
share its networks and state; conditioning, re-posing and latent fitting are modules of their own."""

from __future__ import annotations

import dataclasses
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
from facegen.data.detection.detectors import Detector, LazyDetector, lazy_detector
from facegen.errors import ConfigError, check_choice
from facegen.evaluation.features import build_feature_extractor
from facegen.export.pictures import to_uint8
from facegen.fitting import FitSchedule
from facegen.geometry.precision import float32
from facegen.geometry.sh import sh_shading
from facegen.nets.gan_import import read_gan
from facegen.nets.stylegan import Discriminator, Generator, seeded_latents, to_unit
from facegen.predictions import GeneratedTextures, ReconstructedTextures
from facegen.render.renderer import Renderer
from facegen.tasks.adversarial import AdversarialTask, Regularization
from facegen.tasks.conditioning import (
    Condition,
    MoFASource,
    condition_of,
    fit_unlabelled,
    load_mofa,
    novel_views,
    render_texture,
)
from facegen.tasks.latent_fit import LatentFit, fit_latent
from facegen.tasks.reposing import (
    POSE_ANGLES,
    PoseAugment,
    PoseDirections,
    fit_scenes,
    pose_of,
    render_scene,
)
from facegen.tasks.scene_geometry import crop_scenes, fit_scene_geometry
from facegen.texture.unwrap import unwrap_photo
from facegen.texture.uv import UVLayout

#: Shading below this is treated as this when de-lighting (dark, grazing texels would blow up).
MIN_SHADING = 0.05
#: Yaw angles (radians) of the novel views beside a reconstructed texture.
VIEWS_RECONSTRUCTED = (-0.6, 0.6)
#: What the discriminator compares (see the module docstring).
Mode = Literal["composite", "uv"]
#: Generated faces fitted per MoFA call while learning the pose directions.
POSE_CHUNK = 32
#: Below this spread (radians) of the fitted poses the MoFA does not see the 2D faces' poses.
MIN_POSE_SPREAD = 1e-3


class TextureGAN(AdversarialTask):
    """StyleGAN2-style UV texture generator learned from photos or from a 2D face generator's images.

    Args:
        mofa: the frozen MoFA's checkpoint.
        face_model: expected face model (``builtin`` or ``.npz``); the MoFA checkpoint must use the same one.
        mode: ``composite`` or ``uv`` (see the module docstring).
        resolution: UV texture side (power of two); in ``composite`` mode the 2D generator's resolution.
        z_dim, w_dim, mapping_layers, channel_base, channel_max: generator/discriminator sizes.
        conv_clamp: activation clamp of both networks (StyleGAN2-ADA's FFHQ configs: 256; None: off).
        lr, betas: Adam for G and D (StyleGAN2: 2e-3, (0, 0.99)), with the lazy-regularisation correction.
        regularization: R1, path length, ADA.
        ema_half_life_images: images over which the EMA generator's memory halves.
        features: KID/FID feature extractor (``random``, ``inception[:PATH]``, ``torchscript:PATH``).
        metric_samples: images per side for validation KID (FID too when there are more than features).
        truncation: truncation psi for generation and validation pictures.
        latent_fit: settings of texture reconstruction in ``predict``.
        pretrained: a StyleGAN2 file (NVIDIA network pickle, stylegan2-pytorch checkpoint, one written by
            ``facegen gan import``, or a ``FaceStyleGAN`` checkpoint): G, G_ema and D start from its tensors
            wherever names and shapes match; in ``composite`` mode (where it is required) its generator is also
            the frozen 2D generator whose images are composited.
        pose: re-posing of the 2D generator's faces (``composite`` mode).
        scene_fit: ``composite`` mode: the fitting schedule after the encoder's fit of each 2D image, before its
            texture is composited (training, validation and generation); the default fits nothing (the
            encoder's code alone). Without ``scene_detector`` only its photometric stage runs, with the landmark
            term off (generated images come without landmarks); ``benchmarks/scene_fit.py`` measures it.
        scene_detector: ``composite`` mode: the texture paper's two-step geometry
            (:mod:`facegen.tasks.scene_geometry`): each 2D image's face detected by this landmark backend (as
            ``facegen predict``'s ``data.predict_detector``) and aligned as a photo's, ``scene_fit`` run on its
            crop (pose and shape on the landmarks, then photometric) and drawn back into the image exactly;
            images without a face found keep the whole-image fit and are counted (``train/scene_detected``).
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
        pose: PoseAugment | None = None,
        scene_fit: FitSchedule | None = None,
        scene_detector: Detector | None = None,
    ) -> None:
        super().__init__()
        # generation and reconstruction settings are run-time choices: kept out of checkpoints so that the
        # config of `facegen predict --ckpt_path` decides them; so is the file the networks start from
        self.save_hyperparameters(
            ignore=["truncation", "latent_fit", "pretrained", "pose", "scene_fit", "scene_detector"]
        )
        self.truncation = truncation
        self.scene_fit = scene_fit or FitSchedule()
        self.scene_detector = _scene_detector(scene_detector, self.scene_fit)
        check_choice("model.mode", mode, Mode)
        self.latent_fit = latent_fit or LatentFit()
        self.mofa = load_mofa(mofa or MoFASource(), face_model)
        self.mofa.freeze()
        model = self.mofa.decoder.model
        self.layout = UVLayout(model.faces, model.uv_coords, model.uv_faces, resolution)
        gan = read_gan(pretrained) if pretrained else None
        if mode == "composite":
            self._set_up_scenes(gan, resolution, pose or PoseAugment())
        sizes = {"channel_base": channel_base, "channel_max": channel_max, "conv_clamp": conv_clamp}
        self.build_networks(
            Generator(resolution, 3, z_dim, w_dim, mapping_layers, **sizes),
            Discriminator(resolution, 4 if mode == "uv" else 3, **sizes),  # UV textures or resized images
            regularization or Regularization(),
        )
        if gan is not None:
            self.start_from(gan)
        self.features = build_feature_extractor(features)
        self._metric_batches: dict[str, list[Tensor]] = {}
        self._pictures: list[Tensor] = []

    def _set_up_scenes(self, gan, resolution: int, pose: PoseAugment) -> None:
        """``composite`` mode: the frozen 2D generator of ``gan`` and the pose directions (learnt at fit start)."""
        if gan is None:
            raise ConfigError(
                "model.mode composite needs model.pretrained: the 2D StyleGAN2 whose images are composited (a "
                "FaceStyleGAN checkpoint of configs/stylegan_synth.yaml, or an FFHQ network imported with facegen "
                "gan import)"
            )
        self.scene_generator = gan.build_generator("G_ema").requires_grad_(False)
        if self.scene_generator.resolution != resolution:
            raise ConfigError(
                f"model.resolution {resolution} differs from the 2D generator's {self.scene_generator.resolution} "
                f"({gan.source}): in composite mode the texture networks start from the 2D ones; set "
                f"model.resolution: {self.scene_generator.resolution}"
            )
        self.pose = pose
        self.directions = PoseDirections(self.scene_generator.w_dim)

    def train(self, mode: bool = True) -> TextureGAN:
        """Train G and D only: the frozen MoFA and 2D generator, the EMA generator and the feature network stay
        in eval mode."""
        super().train(mode)
        for frozen in (self.mofa, self.generator_ema, self.features, getattr(self, "scene_generator", None)):
            if frozen is not None:
                frozen.eval()
        return self

    # ------------------------------------------------------------------------------------ conditioning
    @property
    def input_spec(self) -> InputSpec:
        """The frozen MoFA's: the crops it was trained on."""
        return self.mofa.input_spec

    def condition(self, batch: FaceBatch | SeedBatch, repose: bool = True) -> Condition:
        """The frozen MoFA's code and geometry for ``batch``: its photos, or (``composite`` mode, a seed batch)
        the 2D generator's images of its seeds, re-posed and partly mirrored when ``repose`` (drawn from the
        seeds in evaluation, so validation sees the same scenes every time)."""
        if not isinstance(batch, SeedBatch):
            return condition_of(self.mofa, batch)
        if self.hparams.mode != "composite":
            raise ConfigError(
                f"model.mode {self.hparams.mode} learns from photos: give data: class_path: facegen.data."
                "FaceDataModule (seed batches are for mode composite and for generating textures)"
            )
        seeds = batch.seeds.tolist()
        rng = None if self.training else torch.Generator().manual_seed(seeds[0] if seeds else 0)
        self._scene_z = seeded_latents(seeds, self.scene_generator.z_dim).to(self.device)
        return self.scene_condition(self._scene_z, repose, rng)

    def latents(self, batch_size: int) -> Tensor:
        """The texture generator's latents: in ``composite`` mode the latents of the batch's 2D images (the
        first ``batch_size``; :meth:`condition` sets them), so that each composite pairs a person's texture with
        that person's head; else fresh noise."""
        scene = getattr(self, "_scene_z", None)
        if self.hparams.mode == "composite" and scene is not None and scene.shape[0] >= batch_size:
            return scene[:batch_size]
        return super().latents(batch_size)

    def generate(self, z: Tensor, ema: bool = False, truncation: float = 1.0) -> Tensor:
        """As the adversarial task's, but in ``composite`` mode the training generator mixes no styles: the 2D
        generator renders each person from one w, and the texture paired with it follows the same latent."""
        if ema or self.hparams.mode != "composite":
            return super().generate(z, ema, truncation)
        return to_unit(self.generator.synthesis(self.generator.ws(z), noise_mode="random"))

    @torch.no_grad()
    def scene_condition(
        self, z: Tensor, repose: bool = True, rng: torch.Generator | None = None
    ) -> Condition:
        """Images of the frozen 2D generator for ``z`` (B, z_dim) at the MoFA's crop size, the MoFA's fit of each
        (its encoder, then ``scene_fit``); the face mask covers the whole image (the composite replaces only the pixels the face covers)."""
        scene = render_scene(
            self.scene_generator,
            z,
            self.mofa.hparams.image_size,
            self.directions if repose else None,
            self.pose,
            noise_mode="random" if self.training else "const",
            rng=rng,
            measure=pose_of(self.mofa),
        )
        mask = scene.image.new_ones(scene.image.shape[0], 1, *scene.image.shape[-2:])
        if self.scene_detector is not None:
            crops = crop_scenes(self.mofa, self.scene_detector, scene.native)
            fitted = fit_scene_geometry(self.mofa, crops, scene.native, scene.image, self.scene_fit)
            decoded = self.mofa.decoder(fitted.code)
            return Condition(
                fitted.image, mask, fitted.code, decoded, scene.native, fitted.native_K, fitted.detected
            )
        code = self.mofa(scene.image)
        if self.scene_fit.photometric.steps:
            code = fit_unlabelled(self.mofa, scene.image, code, self.scene_fit.photometric)
        return Condition(scene.image, mask, code, self.mofa.decoder(code), scene.native)

    def on_fit_start(self) -> None:
        self._learn_pose_directions_once()

    def on_validation_start(self) -> None:
        self._learn_pose_directions_once()  # `facegen validate` of a model that has not been trained yet

    def _learn_pose_directions_once(self) -> None:
        if self.hparams.mode == "composite" and not bool(self.directions.fitted):
            self.learn_pose_directions()

    @torch.no_grad()
    def learn_pose_directions(self) -> float:
        """Fit ``pose.samples`` faces of the 2D generator (fixed seeds: every rank learns the same) and regress
        their MoFA pose on w (:class:`~facegen.tasks.reposing.PoseDirections`); returns and reports R²."""
        z = torch.randn(
            self.pose.samples, self.scene_generator.z_dim, generator=torch.Generator().manual_seed(0)
        )
        size = self.mofa.hparams.image_size
        w, code = fit_scenes(self.scene_generator, self.mofa, size, z.to(self.device), POSE_CHUNK)
        pose = code.rotation[:, POSE_ANGLES].float()
        r2 = self.directions.fit(w.float(), pose, self.pose.ridge)
        spread = pose.std(0).tolist()
        if max(spread) < MIN_POSE_SPREAD:
            rank_zero_warn(
                f"model.pose: the MoFA fits the 2D generator's faces with hardly any pose variation (std "
                f"{max(spread):.1e} rad), so re-posing will do little: check that the MoFA fits these images "
                "(benchmarks/reposing.py) and that it was trained on crops framed like them"
            )
        rank_zero_info(
            f"model.pose: pitch/yaw directions learnt from {pose.shape[0]} faces of the 2D generator: R² {r2:.2f}, "
            f"their spread (std) pitch {spread[0]:.3f} / yaw {spread[1]:.3f} rad"
        )
        return r2

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
        """UV ``texture`` (B, 3, R, R) in [0, 1] shaded on the fitted faces, composited into the images."""
        return render_texture(self.mofa.decoder, texture, condition)

    def _native_renderer(self, condition: Condition) -> Renderer | None:
        """A renderer at D's resolution when ``condition`` has the 2D images at that resolution (composite mode:
        composites are rendered there, not rendered at the crop size and resized)."""
        size = self.hparams.resolution
        if condition.native is None or condition.native.shape[-1] != size:
            return None
        if getattr(self, "_native", None) is None:
            settings = dataclasses.replace(self.mofa.decoder.renderer.settings, image_size=(size, size))
            self._native = Renderer(settings)
        return self._native

    def real_inputs(self, condition: Condition, photos: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """What D sees as real, in [-1, 1]: real face ``photos`` (B, 3, H, W) in [0, 1] at D's resolution when
        given (composite mode with ``data.real``; never the composites' own backgrounds), else the photos (or 2D
        images) of ``condition``; and (``uv`` mode) the visibility masks (B, 1, R, R) that generated textures are
        shown under: those of other photos of the batch."""
        if self.hparams.mode == "uv":
            real, seen = self.real_textures(condition)
            return torch.cat([real * 2 - 1, seen * 2 - 1], 1), seen.roll(1, 0)
        if photos is not None:
            return self._at_d_resolution(photos) * 2 - 1, None
        if self._native_renderer(condition) is not None:
            return condition.native * 2 - 1, None
        return self._at_d_resolution(condition.image) * 2 - 1, None

    def fake_inputs(self, texture: Tensor, condition: Condition, masks: Tensor | None) -> Tensor:
        """Generated ``texture`` (B, 3, R, R) in [0, 1] presented to D like the real inputs."""
        if self.hparams.mode == "uv":
            return torch.cat([texture * masks * 2 - 1, masks * 2 - 1], 1)
        native = self._native_renderer(condition)
        if native is not None:
            return render_texture(self.mofa.decoder, texture, condition, native) * 2 - 1
        return self._at_d_resolution(self.render(texture, condition)) * 2 - 1

    def _at_d_resolution(self, image: Tensor) -> Tensor:
        size = self.hparams.resolution
        if image.shape[-1] == size:
            return image
        return F.interpolate(image, size=(size, size), mode="bilinear", antialias=True)

    # ------------------------------------------------------------------------------------ training
    def training_step(self, batch: FaceBatch | SeedBatch, batch_index: int) -> None:
        condition = self.condition(batch)
        if condition.detected is not None:
            self.log("train/scene_detected", condition.detected.float().mean())
        photos = batch.real if isinstance(batch, SeedBatch) else None
        real, masks = self.real_inputs(condition, photos)  # the photos are unwrapped once per iteration
        self.adversarial_step(
            real, lambda texture: self.fake_inputs(texture, condition, masks), condition.image.shape[0]
        )

    # ------------------------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self._metric_batches = {"uv_real": [], "uv_fake": [], "render_real": [], "render_fake": []}

    @torch.no_grad()
    def validation_step(self, batch: FaceBatch | SeedBatch, batch_index: int) -> None:
        seen_so_far = sum(x.shape[0] for x in self._metric_batches["render_real"])
        if seen_so_far >= self.hparams.metric_samples:
            return
        condition = self.condition(batch)
        if condition.detected is not None:
            self.log("val/scene_detected", condition.detected.float().mean())
        size = condition.image.shape[0]
        texture = self.generate(self.latents(size), ema=True, truncation=self.truncation)
        if self.hparams.mode == "composite":  # the composites as D sees them, at its resolution
            rendered = (self.fake_inputs(texture, condition, None) + 1) / 2
        else:
            rendered = self.render(texture, condition)
        photos = batch.real if isinstance(batch, SeedBatch) and batch.real is not None else condition.image
        self._metric_batches["render_real"].append(self.features(photos[:size]))
        self._metric_batches["render_fake"].append(self.features(rendered))
        if self.hparams.mode == "composite":  # no real UV textures: real photos (data.real) or the 2D images
            if batch_index == 0:
                self._pictures = [texture, condition.image, rendered]
            return
        real, seen = self.real_textures(condition)
        grey = 0.5 * (1 - seen)
        self._metric_batches["uv_real"].append(self.features(real * seen + grey))
        self._metric_batches["uv_fake"].append(self.features(texture * seen + grey))
        if batch_index == 0:
            self._pictures = [real * seen + grey, texture, condition.image, rendered]

    def on_validation_epoch_end(self) -> None:
        if not self._metric_batches.get("render_real"):
            return
        spaces = ("render",) if self.hparams.mode == "composite" else ("uv", "render")
        features = {k: v for k, v in self._metric_batches.items() if k.split("_")[0] in spaces}
        self.log_dict(self.distribution_metrics(features, spaces), sync_dist=False)
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
        """One texture per seed (the EMA generator at ``truncation``) on its geometry: in ``composite`` mode the
        MoFA's fit of the 2D generator's image of the same seed (not re-posed), else the mean shape."""
        z = seeded_latents(seeds, self.hparams.z_dim).to(self.device)
        texture = self.generate(z, ema=True, truncation=self.truncation)
        model = self.mofa.decoder.model
        if self.hparams.mode == "composite":
            scene_z = seeded_latents(seeds, self.scene_generator.z_dim).to(self.device)
            code = self.scene_condition(scene_z, repose=False).code
            vertices = model(shape=code.shape, expression=code.expression).vertices
        else:
            vertices = model.mean.expand(len(seeds), -1, -1)
        views = novel_views(self.mofa.decoder, vertices, texture)
        return GeneratedTextures(seeds, texture, vertices, views, self.truncation)

    def reconstructed(self, batch: FaceBatch) -> ReconstructedTextures:
        """Textures fitted to the photos of ``batch`` (:class:`LatentFit`), on the MoFA's (refined) geometry."""
        decoder, model = self.mofa.decoder, self.mofa.decoder.model
        condition = self.condition(batch)
        fit = self.latent_fit
        if fit.fit is not None and fit.fit.active and len(batch):
            code = self.mofa.fitted(batch, condition.code, fit.fit).code
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


def _scene_detector(name: Detector | None, schedule: FitSchedule) -> LazyDetector | None:
    """The landmark backend of ``model.scene_detector`` (built on first use); a schedule with landmark stages
    needs one."""
    if name is None:
        if schedule.pose.active or schedule.landmarks.active:
            raise ConfigError(
                "model.scene_fit has landmark stages (pose, landmarks) but generated images come without "
                "landmarks: set model.scene_detector (e.g. auto) or keep only scene_fit.photometric"
            )
        return None
    if name == "files":
        raise ConfigError(
            "model.scene_detector files reads landmark files, which generated images do not have"
        )
    return lazy_detector(name, setting="model.scene_detector")


def texture_panel(pictures: list[Tensor], count: int = 4) -> np.ndarray:
    """One row per face of the ``pictures`` side by side (each (B, 3, *, *) in [0, 1], resized to the texture size
    R): real partial UV texture | generated UV texture | photo | generated texture rendered into it (``uv``
    mode) or generated UV texture | 2D image | composite (``composite``): (rows * R, n * R, 3) uint8."""
    size = pictures[0].shape[-1]
    rows = []
    for i in range(min(count, pictures[0].shape[0])):
        cells = [
            F.interpolate(p[i : i + 1], size=(size, size), mode="bilinear", align_corners=False)[0]
            for p in pictures
        ]
        rows.append(np.concatenate([to_uint8(cell) for cell in cells], 1))
    return np.concatenate(rows, 0)
