"""A StyleGAN2-style generator and a residual discriminator, written from Karras et al., "Analyzing and Improving
the Image Quality of StyleGAN" (CVPR 2020), in plain PyTorch (no custom CUDA ops, runs on CPU and GPU).

What follows the paper: equalized learning rate, an MLP mapping network z -> w with a tracked mean of w for the
truncation trick, weight modulation and demodulation, per-layer noise inputs with learned strength, a learned
constant input, skip connections through toRGB layers in the generator, a residual discriminator with a
minibatch standard-deviation layer. What is simpler: resampling is bilinear (x2 up) and average pooling
(x2 down) instead of the paper's FIR filters.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facegen.errors import ConfigError

#: Per-layer noise: ``random`` (training) or ``none`` (deterministic generation and fitting).
NoiseMode = Literal["random", "none"]
#: Leaky-ReLU slope and the gain that keeps activations at unit variance after it.
SLOPE, GAIN = 0.2, math.sqrt(2.0)


def channels_at(resolution: int, base: int = 4096, maximum: int = 256) -> int:
    """Feature channels at a resolution: ``base / resolution`` capped at ``maximum`` (StyleGAN2's schedule)."""
    return max(1, min(maximum, base // resolution))


class EqualLinear(nn.Module):
    """Linear layer with the equalized learning rate: weights N(0, 1) / ``lr_multiplier`` scaled at run time by
    ``lr_multiplier / sqrt(in_features)``; ``activate`` applies the scaled leaky ReLU."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias_init: float = 0.0,
        lr_multiplier: float = 1.0,
        activate: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.lr_multiplier, self.activate = lr_multiplier, activate

    def forward(self, x: Tensor) -> Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_multiplier)
        return F.leaky_relu(x, SLOPE) * GAIN if self.activate else x


class EqualConv2d(nn.Module):
    """Convolution with the equalized learning rate; ``down`` average-pools x2 after it."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        bias: bool = True,
        activate: bool = True,
        down: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel * kernel)
        self.activate, self.down, self.padding = activate, down, kernel // 2

    def forward(self, x: Tensor) -> Tensor:
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)
        if self.down:
            x = F.avg_pool2d(x, 2)
        return F.leaky_relu(x, SLOPE) * GAIN if self.activate else x


class MappingNetwork(nn.Module):
    """z (B, z_dim) -> w (B, w_dim): pixel norm then ``layers`` fully connected layers (learning rate x0.01).
    Keeps ``w_avg``, a running mean of w during training, for the truncation trick."""

    def __init__(
        self, z_dim: int = 512, w_dim: int = 512, layers: int = 8, w_avg_beta: float = 0.995
    ) -> None:
        super().__init__()
        sizes = [z_dim] + [w_dim] * layers
        self.layers = nn.Sequential(
            *[
                EqualLinear(a, b, lr_multiplier=0.01, activate=True)
                for a, b in zip(sizes[:-1], sizes[1:], strict=True)
            ]
        )
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.w_avg_beta = w_avg_beta

    def forward(self, z: Tensor, truncation: float = 1.0) -> Tensor:
        z = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
        w = self.layers(z)
        if self.training:
            with torch.no_grad():
                self.w_avg.lerp_(w.detach().mean(0), 1 - self.w_avg_beta)
        if truncation != 1.0:
            w = self.w_avg.lerp(w, truncation)
        return w


class ModulatedConv2d(nn.Module):
    """Convolution whose weights are scaled per sample and input channel by a style from w (modulation) and
    renormalised per output channel (demodulation); ``up`` doubles the resolution (bilinear) first."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        w_dim: int,
        demodulate: bool = True,
        up: bool = False,
    ) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel * kernel)
        self.demodulate, self.up, self.padding = demodulate, up, kernel // 2

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        batch, in_channels, height, width = x.shape
        style = self.affine(w)  # (B, in)
        weight = (
            self.weight.unsqueeze(0) * self.weight_gain * style.view(batch, 1, -1, 1, 1)
        )  # (B, out, in, k, k)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum((2, 3, 4), keepdim=True) + 1e-8)
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            height, width = height * 2, width * 2
        out = F.conv2d(
            x.reshape(1, batch * in_channels, height, width),
            weight.reshape(-1, in_channels, *weight.shape[-2:]),
            padding=self.padding,
            groups=batch,
        )
        return out.reshape(batch, -1, height, width)


class StyledLayer(nn.Module):
    """Modulated 3x3 convolution + scaled noise + bias + leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, up: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, up=up)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor, w: Tensor, noise_mode: NoiseMode = "random") -> Tensor:
        x = self.conv(x, w)
        if noise_mode == "random":
            x = (
                x
                + torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
                * self.noise_strength
            )
        return F.leaky_relu(x + self.bias.view(1, -1, 1, 1), SLOPE) * GAIN


class ToRGB(nn.Module):
    """Modulated 1x1 convolution to the output channels, without demodulation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        return self.conv(x, w) + self.bias.view(1, -1, 1, 1)


class Generator(nn.Module):
    """StyleGAN2 generator with skip outputs: z (B, z_dim) -> image (B, channels, R, R), roughly in [-1, 1].

    Args:
        resolution: output side, a power of two >= 8.
        channels: output channels (3 for RGB textures).
        z_dim, w_dim, mapping_layers: latent sizes and mapping depth.
        channel_base, channel_max: feature channels at resolution r are min(channel_max, channel_base / r).
    """

    def __init__(
        self,
        resolution: int = 256,
        channels: int = 3,
        z_dim: int = 512,
        w_dim: int = 512,
        mapping_layers: int = 8,
        channel_base: int = 16384,
        channel_max: int = 512,
    ) -> None:
        super().__init__()
        if resolution < 8 or resolution & (resolution - 1):
            raise ConfigError(f"generator resolution must be a power of two >= 8, got {resolution}")
        self.resolution, self.z_dim, self.w_dim = resolution, z_dim, w_dim
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers)
        width = channels_at(4, channel_base, channel_max)
        self.const = nn.Parameter(torch.randn(width, 4, 4))
        self.first = StyledLayer(width, width, w_dim)
        self.first_rgb = ToRGB(width, channels, w_dim)
        self.blocks, self.rgbs = nn.ModuleList(), nn.ModuleList()
        size = 8
        while size <= resolution:
            out = channels_at(size, channel_base, channel_max)
            self.blocks.append(
                nn.ModuleList([StyledLayer(width, out, w_dim, up=True), StyledLayer(out, out, w_dim)])
            )
            self.rgbs.append(ToRGB(out, channels, w_dim))
            width, size = out, size * 2
        self.num_ws = 2 + 2 * len(self.blocks)  # one w per styled layer and per toRGB, shared as in StyleGAN2

    def ws(self, z: Tensor, truncation: float = 1.0) -> Tensor:
        """z (B, z_dim) -> W+ (B, num_ws, w_dim) (the same w repeated)."""
        return self.mapping(z, truncation).unsqueeze(1).expand(-1, self.num_ws, -1)

    def synthesis(self, ws: Tensor, noise_mode: NoiseMode = "random") -> Tensor:
        """W+ (B, num_ws, w_dim) -> image. ``noise_mode``: ``random`` or ``none`` (deterministic)."""
        x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        x = self.first(x, ws[:, 0], noise_mode)
        image = self.first_rgb(x, ws[:, 1])
        for index, ((up, conv), to_rgb) in enumerate(zip(self.blocks, self.rgbs, strict=True)):
            x = conv(up(x, ws[:, 2 + 2 * index], noise_mode), ws[:, 3 + 2 * index], noise_mode)
            image = F.interpolate(image, scale_factor=2, mode="bilinear", align_corners=False) + to_rgb(
                x, ws[:, 3 + 2 * index]
            )
        return image

    def forward(self, z: Tensor, truncation: float = 1.0, noise_mode: NoiseMode = "random") -> Tensor:
        return self.synthesis(self.ws(z, truncation), noise_mode)


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator: image (B, channels, R, R) -> realness logit (B,).

    ``mbstd_group``: samples per group of the minibatch standard-deviation feature (clamped to the batch).
    """

    def __init__(
        self,
        resolution: int = 256,
        channels: int = 3,
        channel_base: int = 16384,
        channel_max: int = 512,
        mbstd_group: int = 4,
    ) -> None:
        super().__init__()
        if resolution < 8 or resolution & (resolution - 1):
            raise ConfigError(f"discriminator resolution must be a power of two >= 8, got {resolution}")
        self.from_rgb = EqualConv2d(channels, channels_at(resolution, channel_base, channel_max), 1)
        self.blocks, self.skips = nn.ModuleList(), nn.ModuleList()
        size = resolution
        while size > 4:
            a, b = (
                channels_at(size, channel_base, channel_max),
                channels_at(size // 2, channel_base, channel_max),
            )
            self.blocks.append(nn.Sequential(EqualConv2d(a, a, 3), EqualConv2d(a, b, 3, down=True)))
            self.skips.append(EqualConv2d(a, b, 1, bias=False, activate=False, down=True))
            size //= 2
        width = channels_at(4, channel_base, channel_max)
        self.mbstd_group = mbstd_group
        self.conv = EqualConv2d(width + 1, width, 3)
        self.fc = EqualLinear(width * 16, width, activate=True)
        self.out = EqualLinear(width, 1)

    def minibatch_std(self, x: Tensor) -> Tensor:
        """Append the mean standard deviation of features over groups of samples as one more channel."""
        batch, channels, height, width = x.shape
        group = math.gcd(min(self.mbstd_group, batch), batch)
        y = x.reshape(group, -1, channels, height, width)
        y = (y.var(0, unbiased=False) + 1e-8).sqrt().mean((1, 2, 3))  # (B / group,)
        y = y.reshape(-1, 1, 1, 1).repeat(group, 1, height, width)
        return torch.cat([x, y], 1)

    def forward(self, image: Tensor) -> Tensor:
        x = self.from_rgb(image)
        for block, skip in zip(self.blocks, self.skips, strict=True):
            x = (block(x) + skip(x)) / math.sqrt(2)
        x = self.conv(self.minibatch_std(x))
        return self.out(self.fc(x.flatten(1))).squeeze(1)


def to_unit(image: Tensor) -> Tensor:
    """Generator output (about [-1, 1]) -> [0, 1]."""
    return (image.clamp(-1, 1) + 1) / 2
