"""Texture reconstruction from photos: the generator's latent optimised (W, then W+) so that its UV texture,
rendered on the frozen MoFA's fit, matches each photo on its visible face pixels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import kornia
import torch
from torch import Tensor

from facegen.decoder import FaceDecoder
from facegen.evaluation.features import TorchScriptFeatures
from facegen.losses import photometric_loss, ssim_loss
from facegen.nets.stylegan import Generator, to_unit
from facegen.tasks.conditioning import Condition, render_texture, visible_face_pixels
from facegen.tasks.refine import RefineOptions, clone_out_of_inference


@dataclass
class LatentFit:
    """Texture reconstruction from a photo: ``w_steps`` on one W, then ``wplus_steps`` on W+ (per layer), Adam at
    ``lr``; photometric L1 + ``ssim`` weight on visible face pixels, + ``prior`` * |w - w_avg|² / w_dim, +
    ``perceptual_weight`` * squared feature distance under the TorchScript network at ``perceptual`` (a file you
    provide, e.g. a VGG feature extractor taking uint8 images; nothing is downloaded). ``refine``: MoFA's
    fitting schedule for the geometry first (photometric loss weights: ``refine.photometric.weights``, else the
    MoFA's training weights)."""

    w_steps: int = 100
    wplus_steps: int = 100
    lr: float = 0.05
    ssim: float = 0.5
    prior: float = 1e-3
    perceptual: str | None = None
    perceptual_weight: float = 1.0
    refine: RefineOptions | None = None


class FittedTexture(NamedTuple):
    """What latent fitting gives: textures (B, 3, R, R) in [0, 1], their render into the photos (B, 3, S, S), the
    loss at each step, and PSNR/SSIM/L1 per photo (B,) on visible face pixels."""

    texture: Tensor
    render: Tensor
    loss: list[float]
    metrics: dict[str, Tensor]


def fit_latent(
    generator: Generator, decoder: FaceDecoder, condition: Condition, fit: LatentFit
) -> FittedTexture:
    """Optimise ``generator``'s latent (W, then W+) so the texture rendered by ``decoder`` on ``condition``
    matches the photos on visible face pixels."""
    with torch.inference_mode(False), torch.enable_grad():
        condition = clone_out_of_inference(condition)
        batch = condition.image.shape[0]
        w_avg = generator.mapping.w_avg.detach().clone()
        w = w_avg.expand(batch, -1).clone().requires_grad_(True)
        visible = visible_face_pixels(decoder, condition)
        perceptual = (
            TorchScriptFeatures(fit.perceptual).to(condition.image.device) if fit.perceptual else None
        )
        target_features = perceptual(condition.image).detach() if perceptual is not None else None
        history: list[float] = []

        def loss_of(ws: Tensor) -> Tensor:
            texture = to_unit(generator.synthesis(ws, noise_mode="const"))
            rendered = render_texture(decoder, texture, condition)
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
            texture = to_unit(generator.synthesis(wplus, noise_mode="const"))
            rendered = render_texture(decoder, texture, condition)
            metrics = reconstruction_metrics(rendered, condition.image, visible)
    return FittedTexture(texture.detach(), rendered, history, metrics)


def reconstruction_metrics(rendered: Tensor, photo: Tensor, visible: Tensor) -> dict[str, Tensor]:
    """PSNR (dB), SSIM and L1 per photo (B,) of ``rendered`` against ``photo`` over ``visible`` (B, 1, S, S)."""
    count = visible.sum((1, 2, 3)).clamp(min=1) * 3
    error = rendered - photo
    mse = (error.pow(2) * visible).sum((1, 2, 3)) / count
    l1 = (error.abs() * visible).sum((1, 2, 3)) / count
    ssim_map = kornia.metrics.ssim(rendered, photo, 7).mean(1, keepdim=True)
    ssim = (ssim_map * visible).sum((1, 2, 3)) / visible.sum((1, 2, 3)).clamp(min=1)
    return {"psnr": 10 * torch.log10(1 / mse.clamp(min=1e-10)), "ssim": ssim, "l1": l1}
