"""StyleGAN2 networks as the official StyleGAN2-ADA configurations define them (Karras et al., "Analyzing and
Improving the Image Quality of StyleGAN", CVPR 2020; "Training Generative Adversarial Networks with Limited Data",
NeurIPS 2020), in plain PyTorch (no custom ops; CPU and GPU), so that published weights load into them
(:mod:`facegen.nets.gan_import`).

- Equalized learning rate everywhere: weights are stored N(0, 1) (/ ``lr_multiplier``) and scaled at run time.
- Mapping network: pixel norm of z, ``mapping_layers`` fully connected leaky-ReLU layers at learning rate x0.01,
  a tracked mean ``w_avg`` of w for the truncation trick.
- Synthesis: a learned 4x4 constant, per resolution two modulated/demodulated 3x3 convolutions (the first
  upsamples x2 with a transposed convolution and the FIR filter [1, 3, 3, 1]), per-layer noise scaled by a learned
  strength (``noise_mode``: fresh ``random`` noise, the layer's ``const`` buffer, or ``none``), bias, leaky ReLU
  (gain sqrt 2) and an optional clamp of the activations (``conv_clamp``); skip outputs: a modulated 1x1 toRGB per
  resolution, added to the FIR-upsampled image of the previous one.
- W+ layout: ``num_ws = 2 * log2(R) - 2`` vectors. The block at 4² uses w0 (conv) and w1 (toRGB); the block at
  2^k uses w(2k-5), w(2k-4) for its convolutions and w(2k-3) for toRGB, which is also the next block's first.
- Discriminator: residual blocks (fromRGB at full resolution, two 3x3 convolutions, the second FIR-downsampling
  x2, a 1x1 FIR-downsampling skip, summed with gain sqrt 1/2), then minibatch standard deviation, a 3x3
  convolution and two fully connected layers to one logit.

Module and parameter names follow the official networks so that their state dicts map one to one.
Activations are computed in float32 (the official mixed-precision blocks are an optimisation only).

Why one module over 400 lines: G and D as one architecture, like the official implementation's single module, so
that parameter names and layouts compare side by side."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facegen.errors import ConfigError
from facegen.nets.upfirdn import conv2d_down, conv2d_up, fir_filter, upsample2d

#: Per-layer noise: fresh ``random`` noise (training), each layer's fixed ``const`` noise, or ``none``.
NoiseMode = Literal["random", "const", "none"]
#: Leaky-ReLU slope and the gain that keeps activations at unit variance after it.
SLOPE, GAIN = 0.2, math.sqrt(2.0)


def bias_act(
    x: Tensor, bias: Tensor | None, activate: bool, gain: float = 1.0, clamp: float | None = None
) -> Tensor:
    """Add ``bias`` (C,) over channel dim 1, apply leaky ReLU when ``activate``, multiply by ``gain`` (times
    sqrt 2 when activated), clamp to [-clamp, clamp]."""
    if bias is not None:
        x = x + bias.reshape(1, -1, *([1] * (x.ndim - 2)))
    if activate:
        x = F.leaky_relu(x, SLOPE)
        gain = gain * GAIN
    if gain != 1:
        x = x * gain
    return x.clamp(-clamp, clamp) if clamp is not None else x


def _check_resolution(name: str, resolution: int, minimum: int) -> None:
    if resolution < minimum or resolution & (resolution - 1):
        raise ConfigError(f"{name} resolution must be a power of two >= {minimum}, got {resolution}")


def channels_at(resolution: int, base: int, maximum: int) -> int:
    """Feature channels at a resolution: ``base // resolution`` capped at ``maximum`` (StyleGAN2's schedule)."""
    return max(1, min(maximum, base // resolution))


class FullyConnectedLayer(nn.Module):
    """Linear layer with the equalized learning rate (weight N(0, 1) / ``lr_multiplier``, scaled by
    ``lr_multiplier / sqrt(in_features)``; bias scaled by ``lr_multiplier``), leaky ReLU when ``activate``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activate: bool = False,
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.lr_multiplier, self.activate = lr_multiplier, activate

    def forward(self, x: Tensor) -> Tensor:
        """x (B, in) -> (B, out)."""
        weight, bias = self.weight * self.weight_gain, self.bias * self.lr_multiplier
        if not self.activate:
            return torch.addmm(bias.unsqueeze(0), x, weight.t())
        return bias_act(x.matmul(weight.t()), bias, True)


class Conv2dLayer(nn.Module):
    """Convolution with the equalized learning rate, optional FIR downsampling x2 (``down``), bias, leaky ReLU
    when ``activate`` and ``clamp``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        bias: bool = True,
        activate: bool = True,
        down: bool = False,
        clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel * kernel)
        self.activate, self.down, self.clamp, self.padding = activate, down, clamp, kernel // 2
        if down:
            self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        """x (B, in, H, W) -> (B, out, H, W), or (H/2, W/2) when downsampling."""
        weight = self.weight * self.weight_gain
        if self.down:
            x = conv2d_down(x, weight, self.resample_filter)
        else:
            x = F.conv2d(x, weight, padding=self.padding)
        clamp = self.clamp * gain if self.clamp is not None else None
        return bias_act(x, self.bias, self.activate, gain, clamp)


class MappingNetwork(nn.Module):
    """z (B, z_dim) -> w (B, w_dim): pixel norm, then ``layers`` fully connected leaky-ReLU layers ``fc0``...
    at learning rate x``lr_multiplier``. Tracks ``w_avg``, the moving mean of w in training, for truncation."""

    def __init__(
        self,
        z_dim: int = 512,
        w_dim: int = 512,
        layers: int = 8,
        lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.995,
    ) -> None:
        super().__init__()
        self.layers, self.w_avg_beta = layers, w_avg_beta
        sizes = [z_dim] + [w_dim] * layers
        for index in range(layers):
            layer = FullyConnectedLayer(sizes[index], sizes[index + 1], True, lr_multiplier)
            self.add_module(f"fc{index}", layer)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: Tensor, truncation: float = 1.0, update_average: bool = True) -> Tensor:
        """w (B, w_dim), pulled towards ``w_avg`` by ``truncation`` < 1. In training mode (and
        ``update_average``) ``w_avg`` moves towards the batch mean."""
        x = z * torch.rsqrt(z.square().mean(1, keepdim=True) + 1e-8)
        for index in range(self.layers):
            x = getattr(self, f"fc{index}")(x)
        if self.training and update_average:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(0).lerp(self.w_avg, self.w_avg_beta))
        return self.w_avg.lerp(x, truncation) if truncation != 1 else x


def modulated_conv2d(
    x: Tensor,
    weight: Tensor,
    styles: Tensor,
    demodulate: bool,
    up: Tensor | None = None,
    fused: bool = True,
) -> Tensor:
    """Convolution of ``x`` (B, I, H, W) with ``weight`` (O, I, k, k) scaled per sample and input channel by
    ``styles`` (B, I) and, when ``demodulate``, renormalised to unit L2 norm per output channel. ``up``: the FIR
    filter to upsample x2 with. ``fused`` runs one grouped convolution; otherwise the styles scale the
    activations (the same result; faster for training batches)."""
    batch, in_channels = x.shape[:2]
    out_channels, _, kernel, _ = weight.shape
    if demodulate or fused:
        modulated = weight.unsqueeze(0) * styles.reshape(batch, 1, in_channels, 1, 1)  # (B, O, I, k, k)
    if demodulate:
        scale = torch.rsqrt(modulated.square().sum((2, 3, 4)) + 1e-8)  # (B, O)
    if fused:
        if demodulate:
            modulated = modulated * scale.reshape(batch, out_channels, 1, 1, 1)
        groups_weight = modulated.reshape(batch * out_channels, in_channels, kernel, kernel)
        grouped = x.reshape(1, batch * in_channels, *x.shape[2:])
        if up is not None:
            out = conv2d_up(grouped, groups_weight, up, groups=batch)
        else:
            out = F.conv2d(grouped, groups_weight, padding=kernel // 2, groups=batch)
        return out.reshape(batch, out_channels, *out.shape[2:])
    x = x * styles.reshape(batch, in_channels, 1, 1)
    x = conv2d_up(x, weight, up) if up is not None else F.conv2d(x, weight, padding=kernel // 2)
    return x * scale.reshape(batch, out_channels, 1, 1) if demodulate else x


class SynthesisLayer(nn.Module):
    """Modulated, demodulated 3x3 convolution (x2 upsampling when ``up``) + scaled noise + bias + leaky ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        up: bool = False,
        clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.up, self.clamp, self.resolution = up, clamp, resolution
        if up:
            self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def forward(
        self,
        x: Tensor,
        w: Tensor,
        noise_mode: NoiseMode = "random",
        fused: bool = True,
        noise: Tensor | None = None,
    ) -> Tensor:
        """x (B, in, R', R') with R' = R/2 when upsampling, w (B, w_dim) -> (B, out, R, R); ``noise`` (B, 1, R, R),
        when given, is the noise map (``noise_mode`` then does not apply)."""
        up = self.resample_filter if self.up else None
        x = modulated_conv2d(x, self.weight, self.affine(w), True, up, fused)
        if noise is not None:
            x = x + noise * self.noise_strength
        elif noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        return bias_act(x, self.bias, True, 1.0, self.clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution to the image channels (no demodulation) + bias, clamped."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, clamp: float | None = None) -> None:
        super().__init__()
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain, self.clamp = 1 / math.sqrt(in_channels), clamp

    def forward(self, x: Tensor, w: Tensor, fused: bool = True) -> Tensor:
        """x (B, in, R, R), w (B, w_dim) -> (B, channels, R, R)."""
        x = modulated_conv2d(x, self.weight, self.affine(w) * self.weight_gain, False, None, fused)
        return bias_act(x, self.bias, False, 1.0, self.clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: the constant (at 4²) or ``conv0`` (upsampling), ``conv1`` and
    ``torgb``; the image of the previous block is FIR-upsampled and the block's toRGB output added."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        image_channels: int,
        clamp: float | None,
    ) -> None:
        super().__init__()
        self.first = in_channels == 0
        if self.first:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=True, clamp=clamp)
            self.register_buffer("resample_filter", fir_filter(), persistent=False)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, clamp=clamp)
        self.torgb = ToRGBLayer(out_channels, image_channels, w_dim, clamp)
        self.num_conv = 1 if self.first else 2

    def forward(
        self,
        x: Tensor | None,
        image: Tensor | None,
        ws: Tensor,
        noise_mode: NoiseMode,
        fused: bool,
        noise: list[Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``ws`` (B, num_conv + 1, w_dim): the block's convolutions' and its toRGB's w; ``noise``: their noise
        maps (num_conv of (B, 1, R, R)) when given."""
        maps = noise if noise is not None else [None] * self.num_conv
        if self.first:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
            x = self.conv1(x, ws[:, 0], noise_mode, fused, maps[0])
        else:
            x = self.conv0(x, ws[:, 0], noise_mode, fused, maps[0])
            x = self.conv1(x, ws[:, 1], noise_mode, fused, maps[1])
        rgb = self.torgb(x, ws[:, self.num_conv], fused)
        image = rgb if image is None else upsample2d(image, self.resample_filter) + rgb
        return x, image


class SynthesisNetwork(nn.Module):
    """W+ (B, num_ws, w_dim) -> image (B, channels, R, R), blocks ``b4``, ``b8``, ... ``bR``."""

    def __init__(
        self,
        w_dim: int,
        resolution: int,
        channels: int,
        channel_base: int,
        channel_max: int,
        clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.resolutions = [2**k for k in range(2, int(math.log2(resolution)) + 1)]
        self.num_ws = 0
        for res in self.resolutions:
            in_channels = channels_at(res // 2, channel_base, channel_max) if res > 4 else 0
            out_channels = channels_at(res, channel_base, channel_max)
            block = SynthesisBlock(in_channels, out_channels, w_dim, res, channels, clamp)
            self.add_module(f"b{res}", block)
            self.num_ws += block.num_conv
        self.num_ws += 1  # the last toRGB

    def forward(
        self,
        ws: Tensor,
        noise_mode: NoiseMode = "random",
        fused: bool | None = None,
        noise: list[Tensor] | None = None,
    ) -> Tensor:
        """``fused``: one grouped convolution per modulated layer (default outside training); ``noise``: every
        layer's noise map (as :meth:`noise_maps` makes them) instead of ``noise_mode``."""
        if ws.shape[1] != self.num_ws:
            raise ValueError(f"expected {self.num_ws} w vectors per sample, got {ws.shape[1]}")
        fused = not self.training if fused is None else fused
        x = image = None
        first = 0
        for res in self.resolutions:
            block = getattr(self, f"b{res}")
            maps = noise[first : first + block.num_conv] if noise is not None else None
            x, image = block(x, image, ws[:, first : first + block.num_conv + 1], noise_mode, fused, maps)
            first += block.num_conv
        return image

    def noise_maps(self, batch: int, device: torch.device | None = None) -> list[Tensor]:
        """Fresh N(0, 1) noise maps, one (B, 1, R, R) per synthesis layer in order (``noise`` of :meth:`forward`)."""
        return [
            torch.randn(batch, 1, res, res, device=device)
            for res in self.resolutions
            for _ in range(getattr(self, f"b{res}").num_conv)
        ]


@dataclass(frozen=True)
class GeneratorSpec:
    """Sizes of a :class:`Generator`: output side (power of two) and channels, latent sizes, mapping depth,
    feature channels min(``channel_max``, ``channel_base`` / resolution), activation clamp (None: off)."""

    resolution: int = 256
    channels: int = 3
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    channel_base: int = 16384
    channel_max: int = 512
    conv_clamp: float | None = None


class Generator(nn.Module):
    """StyleGAN2 generator (skip architecture): z (B, z_dim) -> image (B, channels, R, R), roughly in [-1, 1].
    Arguments: the fields of :class:`GeneratorSpec`."""

    def __init__(
        self,
        resolution: int = 256,
        channels: int = 3,
        z_dim: int = 512,
        w_dim: int = 512,
        mapping_layers: int = 8,
        channel_base: int = 16384,
        channel_max: int = 512,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        _check_resolution("generator", resolution, 4)
        self.spec = GeneratorSpec(
            resolution, channels, z_dim, w_dim, mapping_layers, channel_base, channel_max, conv_clamp
        )
        self.resolution, self.z_dim, self.w_dim = resolution, z_dim, w_dim
        self.synthesis = SynthesisNetwork(w_dim, resolution, channels, channel_base, channel_max, conv_clamp)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers)

    def ws(self, z: Tensor, truncation: float = 1.0, cutoff: int | None = None) -> Tensor:
        """z (B, z_dim) -> W+ (B, num_ws, w_dim), the same w for every layer; ``truncation`` applies to the
        first ``cutoff`` layers (None: all)."""
        w = self.mapping(z).unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation != 1:
            layers = slice(None, cutoff)
            w[:, layers] = self.mapping.w_avg.lerp(w[:, layers], truncation)
        return w

    def mixed_ws(self, z: Tensor, probability: float) -> Tensor:
        """W+ for training with style mixing: with ``probability``, the layers from a random cutoff on take the w
        of another random z (which does not move ``w_avg``)."""
        ws = self.ws(z)
        if probability > 0 and torch.rand(()).item() < probability:
            cutoff = int(torch.randint(1, self.num_ws, ()).item())
            other = self.mapping(torch.randn_like(z), update_average=False)
            ws[:, cutoff:] = other.unsqueeze(1)
        return ws

    def forward(
        self,
        z: Tensor,
        truncation: float = 1.0,
        noise_mode: NoiseMode = "random",
        cutoff: int | None = None,
    ) -> Tensor:
        return self.synthesis(self.ws(z, truncation, cutoff), noise_mode)


class DiscriminatorBlock(nn.Module):
    """Residual block at one resolution: (``fromrgb`` first), ``conv0``, downsampling ``conv1`` and ``skip``."""

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        out_channels: int,
        image_channels: int,
        clamp: float | None,
    ) -> None:
        super().__init__()
        self.first = in_channels == 0
        if self.first:
            self.fromrgb = Conv2dLayer(image_channels, hidden, 1, clamp=clamp)
        self.conv0 = Conv2dLayer(hidden, hidden, 3, clamp=clamp)
        self.conv1 = Conv2dLayer(hidden, out_channels, 3, down=True, clamp=clamp)
        self.skip = Conv2dLayer(hidden, out_channels, 1, bias=False, activate=False, down=True)

    def forward(self, x: Tensor | None, image: Tensor) -> Tensor:
        if self.first:
            x = self.fromrgb(image)
        half = math.sqrt(0.5)
        return self.skip(x, gain=half) + self.conv1(self.conv0(x), gain=half)


class MinibatchStd(nn.Module):
    """Appends ``channels`` features: the standard deviation over groups of ``group`` samples (clamped to a
    divisor of the batch), averaged over the channels of each of ``channels`` channel groups and the pixels."""

    def __init__(self, group: int = 4, channels: int = 1) -> None:
        super().__init__()
        self.group, self.channels = group, channels

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        group = math.gcd(min(self.group, batch), batch)
        y = x.reshape(group, -1, self.channels, channels // self.channels, height, width)
        y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt().mean((2, 3, 4))  # (B / group, F)
        y = y.reshape(-1, self.channels, 1, 1).repeat(group, 1, height, width)
        return torch.cat([x, y], 1)


class DiscriminatorEpilogue(nn.Module):
    """At 4²: minibatch standard deviation, a 3x3 convolution, a fully connected layer, the logit."""

    def __init__(self, channels: int, mbstd_group: int, mbstd_channels: int, clamp: float | None) -> None:
        super().__init__()
        self.mbstd = MinibatchStd(mbstd_group, mbstd_channels)
        self.conv = Conv2dLayer(channels + mbstd_channels, channels, 3, clamp=clamp)
        self.fc = FullyConnectedLayer(channels * 16, channels, activate=True)
        self.out = FullyConnectedLayer(channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.fc(self.conv(self.mbstd(x)).flatten(1)))


@dataclass(frozen=True)
class DiscriminatorSpec:
    """Sizes of a :class:`Discriminator` (as :class:`GeneratorSpec`) and its minibatch-std grouping."""

    resolution: int = 256
    channels: int = 3
    channel_base: int = 16384
    channel_max: int = 512
    mbstd_group: int = 4
    mbstd_channels: int = 1
    conv_clamp: float | None = None


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator: image (B, channels, R, R) -> realness logit (B,), blocks ``bR`` ... ``b8``
    and the epilogue ``b4``. Arguments: the fields of :class:`DiscriminatorSpec`."""

    def __init__(
        self,
        resolution: int = 256,
        channels: int = 3,
        channel_base: int = 16384,
        channel_max: int = 512,
        mbstd_group: int = 4,
        mbstd_channels: int = 1,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        _check_resolution("discriminator", resolution, 8)
        self.spec = DiscriminatorSpec(
            resolution, channels, channel_base, channel_max, mbstd_group, mbstd_channels, conv_clamp
        )
        self.resolutions = [2**k for k in range(int(math.log2(resolution)), 2, -1)]
        for res in self.resolutions:
            block = DiscriminatorBlock(
                channels_at(res, channel_base, channel_max) if res < resolution else 0,
                channels_at(res, channel_base, channel_max),
                channels_at(res // 2, channel_base, channel_max),
                channels,
                conv_clamp,
            )
            self.add_module(f"b{res}", block)
        width = channels_at(4, channel_base, channel_max)
        self.b4 = DiscriminatorEpilogue(width, mbstd_group, mbstd_channels, conv_clamp)

    def forward(self, image: Tensor) -> Tensor:
        x = None
        for res in self.resolutions:
            x = getattr(self, f"b{res}")(x, image)
        return self.b4(x).squeeze(1)


def seeded_latents(seeds: list[int], z_dim: int) -> Tensor:
    """z (B, z_dim) for ``seeds``, each drawn from N(0, I) by a CPU generator seeded with it (the same seed gives
    the same z on any device)."""
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(seed)) for seed in seeds])


def to_unit(image: Tensor) -> Tensor:
    """Generator output (about [-1, 1]) -> [0, 1]."""
    return (image.clamp(-1, 1) + 1) / 2
