"""FIR up- and downsampling as StyleGAN2 defines it (Karras et al., CVPR 2020, appendix B; the resampling of
Zhang, "Making convolutional networks shift-invariant again", ICML 2019), in plain PyTorch: upsample by
inserting zeros, pad, convolve with a separable low-pass filter, downsample by dropping pixels.

Conventions: images are (B, C, H, W); padding is ``(x_before, x_after, y_before, y_after)`` in pixels of the
upsampled image, negative values crop; the filter is the outer product of the 1D taps normalised to sum 1 (so
``gain`` = ``up²`` keeps the mean after zero insertion).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

#: StyleGAN2's resampling taps (a binomial filter).
RESAMPLE_TAPS = (1.0, 3.0, 3.0, 1.0)


def fir_filter(taps: Sequence[float] = RESAMPLE_TAPS) -> Tensor:
    """The 2D filter (K, K) float32 of 1D ``taps``: their outer product, normalised to sum 1."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d(
    x: Tensor,
    f: Tensor,
    up: int = 1,
    down: int = 1,
    padding: tuple[int, int, int, int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> Tensor:
    """Upsample ``x`` (B, C, H, W) by ``up`` (zeros between pixels), pad/crop by ``padding``, convolve with ``f``
    (K, K) times ``gain``, keep every ``down``-th pixel. Output side: ``(H * up + pad_y - K + 1) // down``."""
    batch, channels, height, width = x.shape
    if up > 1:
        x = x.reshape(batch, channels, height, 1, width, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(batch, channels, height * up, width * up)
    x0, x1, y0, y1 = padding
    x = F.pad(x, (max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)))
    x = x[:, :, max(-y0, 0) : x.shape[2] - max(-y1, 0), max(-x0, 0) : x.shape[3] - max(-x1, 0)]
    # a convolution flips the filter; conv2d correlates, so flip it first (a no-op for symmetric taps)
    kernel = (f * gain).to(x.dtype).flip((0, 1))
    x = F.conv2d(x, kernel[None, None].expand(channels, 1, -1, -1), groups=channels)
    return x[:, :, ::down, ::down] if down > 1 else x


def upsample2d(x: Tensor, f: Tensor, up: int = 2) -> Tensor:
    """``x`` (B, C, H, W) -> (B, C, H * up, W * up), filtered by ``f`` (K, K)."""
    size = f.shape[-1]
    before, after = (size + up - 1) // 2, (size - up) // 2
    return upfirdn2d(x, f, up=up, padding=(before, after, before, after), gain=up * up)


def downsample2d(x: Tensor, f: Tensor, down: int = 2) -> Tensor:
    """``x`` (B, C, H, W) -> (B, C, H / down, W / down), filtered by ``f`` (K, K)."""
    size = f.shape[-1]
    before, after = (size - down + 1) // 2, (size - down) // 2
    return upfirdn2d(x, f, down=down, padding=(before, after, before, after))


def conv2d_up(x: Tensor, weight: Tensor, f: Tensor, groups: int = 1) -> Tensor:
    """A ``k``x``k`` convolution on ``x`` (B, C, H, W) upsampled x2: a stride-2 transposed convolution with
    ``weight`` (O, C / groups, k, k) followed by the FIR filter ``f`` -> (B, O, 2H, 2W). Equals zero insertion,
    the FIR filter and a ``k``x``k`` convolution with the spatially flipped weight and padding ``k // 2``."""
    out_channels, in_per_group, kh, kw = weight.shape
    if groups == 1:
        weight = weight.transpose(0, 1)
    else:
        weight = weight.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
        weight = weight.reshape(groups * in_per_group, out_channels // groups, kh, kw)
    x = F.conv_transpose2d(x, weight, stride=2, groups=groups)
    size = f.shape[-1]
    pad = kw // 2
    before = pad + (size + 1) // 2 - (kw - 1)
    after = pad + (size - 2) // 2 - (kw - 2)
    return upfirdn2d(x, f, padding=(before, after, before, after), gain=4)


def conv2d_down(x: Tensor, weight: Tensor, f: Tensor) -> Tensor:
    """A ``k``x``k`` convolution on ``x`` (B, C, H, W) filtered by ``f`` and downsampled x2 -> (B, O, H/2, W/2)."""
    size, kernel = f.shape[-1], weight.shape[-1]
    before = kernel // 2 + (size - 1) // 2
    after = kernel // 2 + (size - 2) // 2
    if kernel == 1:
        return F.conv2d(upfirdn2d(x, f, down=2, padding=(before, after, before, after)), weight)
    return F.conv2d(upfirdn2d(x, f, padding=(before, after, before, after)), weight, stride=2)
