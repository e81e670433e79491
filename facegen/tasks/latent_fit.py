"""Texture reconstruction from photos, the texture paper's protocol: the generator's latent and noise maps optimised
so that its UV texture, rendered on the frozen MoFA's fit and composited into the photo, matches the photo on its
visible face pixels."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal, NamedTuple

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor

from facegen.decoder import FaceDecoder
from facegen.errors import ConfigError, check_choice
from facegen.evaluation.features import TorchScriptFeatures
from facegen.fitting import FitSchedule, clone_out_of_inference
from facegen.losses import photometric_loss, ssim_loss
from facegen.losses.lpips import LPIPS, LpipsFiles
from facegen.nets.stylegan import Generator, to_unit
from facegen.tasks.conditioning import Condition, render_texture, visible_face_pixels

#: Which latent is optimised: one w for every layer (the paper) or one per layer.
LatentSpace = Literal["w", "w+"]
#: Mapped samples that estimate the spread of w (the scale of the latent noise).
W_SPREAD_SAMPLES = 10_000
#: The noise penalty looks at each map down to this side.
NOISE_MIN_SIDE = 8


@dataclass
class LatentFit:
    """Texture reconstruction by latent optimisation, as the texture paper does it with StyleGAN2's projector
    (Karras et al., CVPR 2020, appendix D): ``steps`` Adam steps on one w (``space: w``) or on W+ (``w+``),
    started at w_avg. The learning rate rises linearly to ``lr`` over the first ``lr_rampup`` of the steps and
    falls by a half cosine over the last ``lr_rampdown``; Gaussian noise of ``w_noise`` times the spread of w is
    added to w, fading quadratically to 0 at ``w_noise_ramp`` of the steps; the generator's noise maps are
    optimised too, renormalised to zero mean and unit variance after each step, and ``noise_regularize`` weighs
    their squared autocorrelation at every scale. The loss, on the composite over visible face pixels:
    ``perceptual_weight`` * squared feature distance under the TorchScript network at ``perceptual`` (e.g. VGG16
    LPIPS features; a file you provide, nothing is downloaded) + ``lpips_weight`` * LPIPS-VGG with the learned
    heads (:mod:`facegen.losses.lpips`; ``lpips``: its two files, which also add ``lpips`` to the reported
    metrics; the face's pixels only: the photo everywhere else) + ``l1`` * photometric L1 + ``ssim`` * SSIM loss
    + ``prior`` * |w - w_avg|² / w_dim. ``fit``: MoFA's fitting schedule for the geometry first (photometric loss
    weights: ``fit.photometric.weights``, else the MoFA's; ``refine``: its former name, for one release)."""

    steps: int = 1000
    space: LatentSpace = "w"
    lr: float = 0.1
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    w_noise: float = 0.05
    w_noise_ramp: float = 0.75
    noise_regularize: float = 1e5
    l1: float = 1.0
    ssim: float = 0.5
    prior: float = 1e-3
    perceptual: str | None = None
    perceptual_weight: float = 1.0
    lpips: LpipsFiles | None = None
    lpips_weight: float = 1.0
    fit: FitSchedule | None = None
    refine: FitSchedule | None = None

    def __post_init__(self) -> None:
        check_choice("model.latent_fit.space", self.space, LatentSpace)
        if self.refine is not None:  # the former name, accepted for one release
            if self.fit is not None:
                raise ConfigError(
                    "model.latent_fit.refine is the former name of latent_fit.fit: give only fit"
                )
            warnings.warn(
                "model.latent_fit.refine is renamed latent_fit.fit; the old name is accepted in this release only",
                FutureWarning,
                stacklevel=2,
            )
            self.fit, self.refine = self.refine, None

    def learning_rate(self, step: int) -> float:
        """The ramped learning rate at ``step``."""
        t = step / max(1, self.steps)
        down = min(1.0, (1 - t) / self.lr_rampdown) if self.lr_rampdown > 0 else 1.0
        up = min(1.0, t / self.lr_rampup) if self.lr_rampup > 0 else 1.0
        return self.lr * (0.5 - 0.5 * math.cos(down * math.pi)) * up

    def latent_noise(self, step: int) -> float:
        """The standard deviation of the noise added to w at ``step``, in units of w's spread."""
        t = step / max(1, self.steps)
        fading = max(0.0, 1 - t / self.w_noise_ramp) if self.w_noise_ramp > 0 else 0.0
        return self.w_noise * fading**2


class FittedTexture(NamedTuple):
    """What latent fitting gives: textures (B, 3, R, R) in [0, 1], their render into the photos (B, 3, S, S), the
    loss at each step, and PSNR/SSIM/L1 per photo (B,) on visible face pixels."""

    texture: Tensor
    render: Tensor
    loss: list[float]
    metrics: dict[str, Tensor]


def noise_penalty(maps: list[Tensor]) -> Tensor:
    """Squared autocorrelation of the noise ``maps`` (each (B, 1, R, R)) with their one-pixel shifts along x and y,
    at every scale from R down to 8 (2x2 average pooling), summed over maps and scales, averaged over B."""
    total = maps[0].new_zeros(maps[0].shape[0])
    for noise in maps:
        while True:
            for axis in (2, 3):
                total = total + (noise * noise.roll(1, axis)).mean((1, 2, 3)).square()
            if noise.shape[-1] <= NOISE_MIN_SIDE:
                break
            noise = F.avg_pool2d(noise, 2)
    return total.mean()


@torch.no_grad()
def _normalise(maps: list[Tensor]) -> None:
    for noise in maps:
        noise.sub_(noise.mean((1, 2, 3), keepdim=True)).div_(
            noise.std((1, 2, 3), keepdim=True).clamp(min=1e-8)
        )


def fit_latent(
    generator: Generator, decoder: FaceDecoder, condition: Condition, fit: LatentFit
) -> FittedTexture:
    """Optimise ``generator``'s latent and noise maps (:class:`LatentFit`) so the texture rendered by ``decoder``
    on ``condition`` matches the photos on visible face pixels."""
    with torch.inference_mode(False), torch.enable_grad():
        condition = clone_out_of_inference(condition)
        batch, device = condition.image.shape[0], condition.image.device
        mapping = generator.mapping
        with torch.no_grad():
            samples = mapping(
                torch.randn(W_SPREAD_SAMPLES, generator.z_dim, device=device), update_average=False
            )
            w_spread = (samples - mapping.w_avg).square().sum(1).mean().sqrt()
        w_avg = mapping.w_avg.detach().clone()
        num_ws = generator.num_ws
        layers = num_ws if fit.space == "w+" else 1
        w = w_avg.expand(batch, layers, -1).clone().requires_grad_(True)
        noise = [n.requires_grad_(True) for n in generator.synthesis.noise_maps(batch, device)]
        visible = visible_face_pixels(decoder, condition)
        perceptual = TorchScriptFeatures(fit.perceptual).to(device) if fit.perceptual else None
        target_features = perceptual(condition.image).detach() if perceptual is not None else None
        lpips = LPIPS.from_files(fit.lpips, "model.latent_fit.lpips").to(device) if fit.lpips else None
        optimizer = torch.optim.Adam([w, *noise], betas=(0.9, 0.999), lr=fit.lr)
        history: list[float] = []

        def composite(ws: Tensor) -> tuple[Tensor, Tensor]:
            texture = to_unit(generator.synthesis(ws.expand(-1, num_ws, -1), noise=noise))
            return texture, render_texture(decoder, texture, condition)

        for step in range(fit.steps):
            for group in optimizer.param_groups:
                group["lr"] = fit.learning_rate(step)
            jitter = torch.randn_like(w) * (w_spread * fit.latent_noise(step))
            _, rendered = composite(w + jitter)
            loss = fit.prior * (w - w_avg).square().sum(-1).mean() / w.shape[-1]
            if fit.l1 > 0:
                loss = (
                    loss + fit.l1 * photometric_loss(rendered, condition.image, visible, "l1") / 3
                )  # per value
            if fit.ssim > 0:
                loss = loss + fit.ssim * ssim_loss(rendered, condition.image, visible)
            if perceptual is not None:
                loss = loss + fit.perceptual_weight * (perceptual(rendered) - target_features).square().mean()
            if lpips is not None and fit.lpips_weight > 0:
                face_only = rendered * visible + condition.image * (1 - visible)
                loss = loss + fit.lpips_weight * lpips(face_only, condition.image).mean()
            history.append(loss.item())
            if fit.noise_regularize > 0:
                loss = loss + fit.noise_regularize * noise_penalty(noise)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            _normalise(noise)
        with torch.no_grad():
            texture, rendered = composite(w)
            metrics = reconstruction_metrics(rendered, condition.image, visible, lpips)
    return FittedTexture(texture.detach(), rendered, history, metrics)


def reconstruction_metrics(
    rendered: Tensor, photo: Tensor, visible: Tensor, lpips: LPIPS | None = None
) -> dict[str, Tensor]:
    """PSNR (dB), SSIM and L1 per photo (B,) of ``rendered`` against ``photo`` over ``visible`` (B, 1, S, S), and
    with ``lpips`` the LPIPS distance of the render on those pixels (the photo elsewhere) to the photo."""
    count = visible.sum((1, 2, 3)).clamp(min=1) * 3
    error = rendered - photo
    mse = (error.pow(2) * visible).sum((1, 2, 3)) / count
    l1 = (error.abs() * visible).sum((1, 2, 3)) / count
    ssim_map = kornia.metrics.ssim(rendered, photo, 7).mean(1, keepdim=True)
    ssim = (ssim_map * visible).sum((1, 2, 3)) / visible.sum((1, 2, 3)).clamp(min=1)
    metrics = {"psnr": 10 * torch.log10(1 / mse.clamp(min=1e-10)), "ssim": ssim, "l1": l1}
    if lpips is not None:
        metrics["lpips"] = lpips(rendered * visible + photo * (1 - visible), photo)
    return metrics
