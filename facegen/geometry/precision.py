"""Geometry in float32 under mixed precision: inside ``torch.autocast`` (bf16/fp16 training), matrix products
would run in half precision, quantising projected pixels to 0.5-1 px at 224² and vertices to a fraction of a
millimetre, where the landmark and photometric terms need sub-pixel accuracy. The decoder, the rasterizer and
the losses run inside :func:`float32`; only the encoder keeps the reduced precision."""

from __future__ import annotations

import torch


def float32(device: torch.device | str) -> torch.autocast:
    """A context in which autocast is off for ``device``'s type, so float32 tensors stay float32."""
    device_type = torch.device(device).type
    return torch.autocast(device_type=device_type, enabled=False)


def upcast(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` as float32 when it is half precision (bf16/fp16); any other tensor as it is (float64 stays)."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor
