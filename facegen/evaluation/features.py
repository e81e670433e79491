"""Feature extractors for KID/FID: images (B, 3, H, W) in [0, 1] -> (B, D).

- ``inception:PATH``: Inception-v3 with the FID weights at PATH (torch-fidelity's
  ``weights-inception-2015-12-05-6726825d.pth``), through torchmetrics; needs ``pip install torch-fidelity``.
- ``inception``: the same, from torch-fidelity's cache (``$TORCH_HOME/hub/checkpoints``) when it is there.
- ``torchscript:PATH``: any TorchScript network mapping images (B, 3, H, W) with values in [0, 255] to features,
  e.g. NVIDIA's ``inception-2015-12-05.pt``, called with ``return_features=True`` when it accepts it.
- ``random`` / ``random:SEED``: a fixed, randomly initialised CNN (no download). Its KID is comparable only with
  itself (same seed), as a trend during training, never with published numbers.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facegen.errors import ConfigError

INCEPTION_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"


class RandomFeatures(nn.Module):
    """Four strided 3x3 convolutions with fixed random weights and leaky ReLUs, mean- and std-pooled: (B, 512)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        sizes = [3, 32, 64, 128, 256]
        self.convs = nn.ModuleList()
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            conv = nn.Conv2d(a, b, 3, 2, 1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * (2 / (9 * a)) ** 0.5)
                conv.bias.zero_()
            self.convs.append(conv)
        self.requires_grad_(False)

    def forward(self, images: Tensor) -> Tensor:
        x = F.interpolate(images, size=(64, 64), mode="bilinear", align_corners=False, antialias=True) * 2 - 1
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
        return torch.cat([x.mean((2, 3)), x.std((2, 3))], 1)


class InceptionFeatures(nn.Module):
    """torchmetrics' Inception-v3 (FID weights) pool features (B, 2048)."""

    def __init__(self, weights: str | None) -> None:
        super().__init__()
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3
        except ImportError:  # pragma: no cover - torchmetrics ships with lightning
            raise ImportError("Inception features need torchmetrics") from None
        if weights is None:
            cache = (
                Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
            )
            candidate = cache / INCEPTION_WEIGHTS
            if not candidate.is_file():
                raise FileNotFoundError(
                    f"Inception FID weights not found at {candidate}: download {INCEPTION_WEIGHTS} (torch-fidelity's "
                    "release) there, or give the path with features: 'inception:PATH', or use features: 'random' "
                    "offline (comparable only with itself)"
                )
            weights = str(candidate)
        if not Path(weights).is_file():
            raise FileNotFoundError(f"Inception weights {weights} do not exist")
        try:
            self.net = NoTrainInceptionV3(
                "inception-v3-compat", ["2048"], feature_extractor_weights_path=weights
            )
        except ModuleNotFoundError as error:
            raise ImportError(f"Inception features: {error}") from None

    def forward(self, images: Tensor) -> Tensor:
        return self.net((images.clamp(0, 1) * 255).round().to(torch.uint8)).reshape(images.shape[0], -1)


class TorchScriptFeatures(nn.Module):
    """A TorchScript feature network taking images with values in [0, 255]."""

    def __init__(self, path: str) -> None:
        super().__init__()
        if not Path(path).is_file():
            raise FileNotFoundError(f"feature network {path} does not exist")
        self.net = torch.jit.load(path, map_location="cpu").eval()

    def forward(self, images: Tensor) -> Tensor:
        """Images in [0, 1] -> features. The network gets images scaled to [0, 255] as float (so gradients reach
        the images, for perceptual losses); networks written for uint8 input take these values too."""
        pixels = images.clamp(0, 1) * 255
        try:
            features = self.net(pixels, return_features=True)
        except (RuntimeError, TypeError):
            features = self.net(pixels)
        return features.reshape(images.shape[0], -1).float()


def build_feature_extractor(spec: str = "random") -> nn.Module:
    """The extractor named by ``spec`` (see the module docstring), in eval mode without gradients."""
    kind, _, argument = spec.partition(":")
    if kind == "random":
        net: nn.Module = RandomFeatures(int(argument or 0))
    elif kind == "inception":
        net = InceptionFeatures(argument or None)
    elif kind == "torchscript":
        net = TorchScriptFeatures(argument)
    else:
        raise ConfigError(
            f"unknown feature extractor {spec!r}: use random[:SEED], inception[:PATH] or torchscript:PATH"
        )
    return net.eval().requires_grad_(False)
