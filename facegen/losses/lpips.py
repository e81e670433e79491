"""LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018) with
the VGG16 trunk: the learned perceptual distance the texture paper's reconstruction uses, from files you give.

The distance of two images in [0, 1]: both mapped to [-1, 1] and shifted and scaled per channel (:data:`SHIFT`,
:data:`SCALE`, the metric's own input normalisation), VGG16's activations after relu1_2, relu2_2, relu3_3,
relu4_3 and relu5_3 are each normalised to unit length over channels, their squared difference is weighed per
channel by a learned linear head (calibrated on human judgements), averaged over the image and summed over the
five layers.

Two files, neither downloaded by facegen:

- ``backbone``: VGG16's ImageNet weights as torchvision saves them (``vgg16-397923af.pth``, keys
  ``features.N.weight``/``bias``; the classifier is ignored), a plain state dict read as tensors only;
- ``heads``: the LPIPS v0.1 linear heads for VGG (``vgg.pth`` in the ``lpips`` package's ``weights/v0.1/``, keys
  ``lin0.model.1.weight`` ... ``lin4.model.1.weight``): ``pip download lpips==0.1.4 --no-deps`` and unzip it.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from facegen.errors import ConfigError

#: The metric's input normalisation: (x - SHIFT) / SCALE per RGB channel on images in [-1, 1].
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
#: VGG16's convolution widths per block (torchvision's ``features``: convolutions, ReLUs, max-pools between
#: blocks).
BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
WHERE = (
    "backbone: torchvision's VGG16 ImageNet weights (vgg16-397923af.pth); heads: vgg.pth from the lpips package's "
    "weights/v0.1 (pip download lpips==0.1.4 --no-deps, then unzip)"
)


@dataclass
class LpipsFiles:
    """The two files of LPIPS-VGG (module docstring): ``backbone`` (VGG16, torchvision's state dict) and ``heads``
    (LPIPS v0.1's linear layers)."""

    backbone: str
    heads: str


def vgg16_features() -> nn.Sequential:
    """VGG16's convolutional part laid out as torchvision's ``features`` (the same indices, so its state dict
    loads), without the last max-pool: its output is relu5_3."""
    layers: list[nn.Module] = []
    channels = 3
    for block, widths in enumerate(BLOCKS):
        if block:
            layers.append(nn.MaxPool2d(2, 2))
        for width in widths:
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
            channels = width
    return nn.Sequential(*layers)


class LPIPS(nn.Module):
    """LPIPS-VGG: ``forward(a, b)`` (B,) distances of images (B, 3, H, W) in [0, 1] (module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = vgg16_features()
        self.heads = nn.ModuleList(nn.Conv2d(widths[-1], 1, 1, bias=False) for widths in BLOCKS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        # the layer index after which each block's last ReLU has run
        ends, index = [], -1
        for block, widths in enumerate(BLOCKS):
            index += 2 * len(widths) + (1 if block else 0)
            ends.append(index)
        self.ends = tuple(ends)

    @classmethod
    def from_files(cls, files: LpipsFiles, setting: str = "lpips") -> LPIPS:
        """The metric with the weights of ``files``, frozen, in eval mode.

        Raises:
            ConfigError: a file is missing or not the expected state dict, naming ``setting`` and the file.
        """
        metric = cls()
        backbone = _state_dict(files.backbone, f"{setting}.backbone")
        trunk = {k.removeprefix("features."): v for k, v in backbone.items() if k.startswith("features.")}
        heads = _state_dict(files.heads, f"{setting}.heads")
        lins = {f"{k}.weight": heads.get(f"lin{k}.model.1.weight") for k in range(len(BLOCKS))}
        for target, state, path, name in (
            (metric.features, trunk, files.backbone, "backbone"),
            (metric.heads, lins, files.heads, "heads"),
        ):
            expected = target.state_dict()
            wrong = [k for k, v in expected.items() if state.get(k) is None or state[k].shape != v.shape]
            if wrong:
                raise ConfigError(
                    f"{setting}.{name} {path}: not the expected weights ({len(wrong)} tensors missing or "
                    f"misshapen, e.g. {wrong[0]}); give {WHERE}"
                )
            target.load_state_dict({k: state[k].float() for k in expected})
        return metric.eval().requires_grad_(False)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        x = torch.cat([a, b]) * 2 - 1
        x = (x - self.shift) / self.scale
        distance = a.new_zeros(a.shape[0])
        block = 0
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index == self.ends[block]:
                unit = x / (x.square().sum(1, keepdim=True).sqrt() + 1e-10)
                first, second = unit.chunk(2)
                distance = distance + self.heads[block]((first - second).square()).mean((1, 2, 3))
                block += 1
                if block == len(self.ends):
                    break
        return distance


def _state_dict(path: str, setting: str) -> dict[str, Tensor]:
    if not Path(path).is_file():
        raise ConfigError(f"{setting}: {path} does not exist; give {WHERE}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, ValueError, pickle.UnpicklingError, EOFError) as error:
        raise ConfigError(
            f"{setting}: {path} is not a readable state dict ({type(error).__name__})"
        ) from None
    if not isinstance(state, dict):
        raise ConfigError(f"{setting}: {path} holds a {type(state).__name__}, not a state dict; give {WHERE}")
    return state
