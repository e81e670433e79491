"""Starting an encoder from pretrained weights: a state-dict file (facegen's own, a torchvision-format ImageNet
ResNet, or a timm model's), read as tensors only (``weights_only``), its keys mapped onto the backbone, and a
one-line report of what was loaded and what was left out."""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from facegen.errors import BadFileError, ConfigError

#: Classifier weights of ImageNet checkpoints: an encoder has no use for them.
CLASSIFIER_KEYS = re.compile(r"^(fc|head|classifier)\.")
#: How many key names an error or report lists.
SHOWN_KEYS = 6


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a state-dict file (or of a checkpoint's ``state_dict``), read without running code."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"model.encoder_weights {path} does not exist; give a state-dict file (.pt, .pth)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BadFileError(
            f"model.encoder_weights {path}: not a readable state dict of tensors ({first})"
        ) from None
    if isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping) or not all(isinstance(v, Tensor) for v in data.values()):
        raise BadFileError(
            f"model.encoder_weights {path}: holds no state dict (a mapping of names to tensors)"
        )
    return dict(data)


def torchvision_resnet_names(depths: Sequence[int]) -> dict[str, str]:
    """Prefix map from torchvision's ResNet names to :class:`~facegen.nets.encoder.ResNetEncoder`'s:
    ``conv1``/``bn1`` -> ``stem.0``/``stem.1``, ``layer{s}.{i}`` -> ``blocks.{k}`` (k counts blocks over the
    stages), ``downsample.{0,1}`` -> ``shortcut.{0,1}``."""
    names = {"conv1.": "stem.0.", "bn1.": "stem.1."}
    index = 0
    for stage, depth in enumerate(depths, 1):
        for block in range(depth):
            names[f"layer{stage}.{block}."] = f"blocks.{index}."
            index += 1
    return names


def _renamed(state: Mapping[str, Tensor], depths: Sequence[int]) -> dict[str, Tensor]:
    """torchvision ResNet keys renamed to this package's ResNet (other keys unchanged)."""
    prefixes = torchvision_resnet_names(depths)
    renamed = {}
    for key, value in state.items():
        for old, new in prefixes.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        renamed[key.replace(".downsample.", ".shortcut.")] = value
    return renamed


def misfit(state: Mapping[str, Tensor], expected: Mapping[str, Tensor]) -> str | None:
    """What keeps ``state`` from loading where ``expected`` (a state dict) is: missing, unexpected and
    mis-shaped tensors, a few named each; None when it fits."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    problems = [
        f"{label} {len(keys)} ({', '.join(keys[:SHOWN_KEYS])}{', ...' if len(keys) > SHOWN_KEYS else ''})"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
        if keys
    ]
    return "; ".join(problems) or None


def load_backbone_weights(backbone: nn.Module, path: str | Path, depths: Sequence[int] | None = None) -> str:
    """Load ``path`` into ``backbone`` (a ResNetEncoder with ``depths``, or a TimmEncoder) and return a one-line
    report. Accepted key layouts: the backbone's own, facegen's MoFA (``encoder.backbone.``), torchvision's
    ResNet (with ``depths``), or the bare timm model's. Classifier weights are left out; any other missing,
    unexpected or mis-shaped tensor is a one-line error listing them."""
    state = read_state_dict(path)
    for prefix in ("encoder.backbone.", "backbone."):
        if any(key.startswith(prefix) for key in state):
            state = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
    expected = backbone.state_dict()
    if depths is not None and any(key.startswith("layer1.") for key in state):
        state = _renamed(state, depths)
    elif all(key.startswith("model.") for key in expected) and not any(
        key.startswith("model.") for key in state
    ):
        state = {f"model.{key}": value for key, value in state.items()}  # a bare timm state dict
    ignored = sorted(key for key in state if CLASSIFIER_KEYS.match(key.removeprefix("model.")))
    state = {key: value for key, value in state.items() if key not in ignored}
    problems = misfit(state, expected)
    if problems:
        raise ConfigError(
            f"model.encoder_weights {path} does not fit the encoder: {problems}; check model.backbone, "
            "depths and width"
        )
    backbone.load_state_dict(state)
    left_out = f"; left out {len(ignored)} classifier tensors ({', '.join(ignored)})" if ignored else ""
    return f"encoder: {len(state)} tensors loaded from {path}{left_out}"
