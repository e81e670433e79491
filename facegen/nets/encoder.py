"""Image encoders: a ResNet-style CNN written here (no torchvision), or a timm backbone when timm is installed,
followed by a linear head onto the face code."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from facegen.errors import ConfigError

#: Per-channel mean and std of natural images, used to normalise inputs in [0, 1].
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a projection shortcut when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        nn.init.zeros_(self.bn2.weight)  # each residual branch starts as the identity
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNetEncoder(nn.Module):
    """ResNet-style feature extractor: (B, 3, H, W) in [0, 1] -> (B, ``features``).

    Args:
        depths: residual blocks per stage (ResNet-18: (2, 2, 2, 2), ResNet-34: (3, 4, 6, 3)).
        width: channels of the first stage; each later stage doubles them.
        grid: side of the final average pooling: 1 pools globally (ResNet); g > 1 pools to g x g cells and
            flattens them, keeping where features are, which precise pose and landmarks need.
        stem_pool: the stem's 3x3 max pool of stride 2 (ResNet's); without it every stage sees twice the
            resolution (about 4x the compute), finer features for small crops (64²: 4x4 after four stages).
    """

    def __init__(
        self, depths: Sequence[int] = (2, 2, 2, 2), width: int = 64, grid: int = 1, stem_pool: bool = True
    ) -> None:
        super().__init__()
        if not depths or min(depths) < 1 or width < 1 or grid < 1:
            raise ConfigError(
                f"encoder depths must be positive, width and grid >= 1, got {depths}, {width}, {grid}"
            )
        pool = [nn.MaxPool2d(3, 2, 1)] if stem_pool else []
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(), *pool
        )
        blocks, channels = [], width
        for stage, depth in enumerate(depths):
            out_channels = width * 2**stage
            for index in range(depth):
                blocks.append(BasicBlock(channels, out_channels, 2 if index == 0 and stage > 0 else 1))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.features = channels * grid * grid
        self.register_buffer("mean", torch.tensor(IMAGE_MEAN).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGE_STD).reshape(1, 3, 1, 1), persistent=False)

        # inference: (the weights' identity and versions, stem and blocks with batch norms folded), see _folded
        self._inference: tuple[tuple, nn.Module] | None = None

    def forward(self, image: Tensor) -> Tensor:
        x = (image - self.mean) / self.std
        if self.training or torch.is_grad_enabled():
            return self.pool(self.blocks(self.stem(x))).flatten(1)
        # inference (predict, validation, fitting): channels-last activations (9 % faster on CPU; training keeps
        # the default layout, whose backward is faster) through the folded copy (10-15 % faster)
        x = self._folded()(x.contiguous(memory_format=torch.channels_last))
        return self.pool(x).flatten(1)

    def _folded(self) -> nn.Module:
        """The stem and blocks with every batch norm folded into the convolution before it (eval statistics),
        rebuilt whenever a parameter or buffer changed (training steps, loading weights, moving devices)."""
        tensors = [
            *self.stem.parameters(),
            *self.stem.buffers(),
            *self.blocks.parameters(),
            *self.blocks.buffers(),
        ]
        key = tuple((t.data_ptr(), t._version) for t in tensors)
        if self._inference is None or self._inference[0] != key:
            self._inference = (key, nn.Sequential(_folded(self.stem), _folded(self.blocks)))
        return self._inference[1]


def _folded(module: nn.Module) -> nn.Module:
    """An inference copy of ``module`` in which each ``BatchNorm2d`` that follows a ``Conv2d`` (in a Sequential,
    a :class:`BasicBlock`, or a projection shortcut) is folded into it: conv(x) * scale + shift as one conv."""
    if isinstance(module, BasicBlock):
        block = copy.copy(module)
        block._modules = dict(module._modules)
        block.conv1, block.bn1 = fuse_conv_bn_eval(module.conv1, module.bn1), nn.Identity()
        block.conv2, block.bn2 = fuse_conv_bn_eval(module.conv2, module.bn2), nn.Identity()
        block.shortcut = _folded(module.shortcut)
        return block
    if isinstance(module, nn.Sequential):
        layers, children = [], list(module)
        for index, child in enumerate(children):
            if isinstance(child, nn.BatchNorm2d) and index and isinstance(children[index - 1], nn.Conv2d):
                layers[-1] = fuse_conv_bn_eval(children[index - 1], child)
            else:
                layers.append(_folded(child))
        return nn.Sequential(*layers)
    return module


class TimmEncoder(nn.Module):
    """A timm model without its classifier; ``pretrained`` weights come from timm's cache (downloaded there on
    first use when online; offline, a one-line error says where to put them)."""

    def __init__(self, name: str, pretrained: bool = False) -> None:
        super().__init__()
        try:
            import timm
        except ImportError:
            raise ConfigError(f"encoder 'timm:{name}' needs timm: pip install 'facegen[timm]'") from None
        try:
            self.model = timm.create_model(name, pretrained=pretrained, num_classes=0)
        except (OSError, RuntimeError) as error:  # no network, or a partial download
            if not pretrained:
                raise
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConfigError(
                f"model.pretrained: timm could not fetch the weights of {name!r} ({first}); put them in timm's "
                "cache ($HF_HOME/hub or $TORCH_HOME/hub/checkpoints) while online, or give the file as "
                "model.encoder_weights"
            ) from None
        self.features = self.model.num_features
        config = self.model.pretrained_cfg
        self.register_buffer(
            "mean", torch.tensor(config.get("mean", IMAGE_MEAN)).reshape(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(config.get("std", IMAGE_STD)).reshape(1, 3, 1, 1), persistent=False
        )

    def forward(self, image: Tensor) -> Tensor:
        return self.model((image - self.mean) / self.std)


def build_backbone(
    name: str = "resnet",
    depths: Sequence[int] = (2, 2, 2, 2),
    width: int = 64,
    grid: int = 1,
    pretrained: bool = False,
    stem_pool: bool = True,
) -> nn.Module:
    """``resnet`` (this module's ResNet with ``depths``/``width``/``grid``/``stem_pool``) or ``timm:<model name>`` (with timm's
    ``pretrained`` weights when asked; the ResNet starts from a state dict instead, see
    :func:`facegen.nets.weights.load_backbone_weights`)."""
    if name == "resnet":
        if pretrained:
            raise ConfigError(
                "model.pretrained applies to timm backbones; start backbone: resnet from a state dict with "
                "model.encoder_weights (e.g. a torchvision ImageNet ResNet-18 .pth with depths [2, 2, 2, 2], width 64)"
            )
        return ResNetEncoder(depths, width, grid, stem_pool)
    if name.startswith("timm:"):
        return TimmEncoder(name[len("timm:") :], pretrained)
    raise ConfigError(f"unknown encoder backbone {name!r}: use 'resnet' or 'timm:<name>'")


class CodeRegressor(nn.Module):
    """Backbone + linear head whose weights start at zero and bias at ``initial`` (B-independent (total,)), so
    the untrained network outputs the initial code (mean face, frontal pose, ambient light)."""

    def __init__(self, backbone: nn.Module, initial: Tensor) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.features, initial.numel())
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():
            self.head.bias.copy_(initial)

    def forward(self, image: Tensor) -> Tensor:
        return self.head(self.backbone(image))
