"""Format-exact small StyleGAN2 files for the tests, written from facegen's own networks:

- NVIDIA network pickles as ``torch_utils.persistence`` writes them: each network a call
  ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with ``meta = {type, version, module_src,
  class_name, state}``, the state being the module's ``__dict__`` (parameters, buffers, submodules,
  ``_init_kwargs`` as ``dnnlib.util.EasyDict``), tensors pickled by torch itself;
- stylegan2-pytorch (rosinality) checkpoints: ``g_ema``/``d`` state dicts under that port's names and shapes.

Pickling names the globals through stand-in modules registered in ``sys.modules`` only while writing.
"""

from __future__ import annotations

import pickle
import sys
import types
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from facegen.nets.stylegan import Discriminator, Generator
from facegen.nets.upfirdn import fir_filter

#: What NVIDIA's loader would execute to rebuild a class: facegen must never run it.
DEFAULT_SOURCE = "import torch\nclass Generator(torch.nn.Module):\n    pass\n"


def _never_called(meta):  # pragma: no cover - only its name goes into the pickle
    raise AssertionError("the stand-in reconstructor ran")


class EasyDict(dict):
    """Pickled under the name ``dnnlib.util.EasyDict``."""


@contextmanager
def nvidia_names():
    """``torch_utils.persistence._reconstruct_persistent_obj`` and ``dnnlib.util.EasyDict`` importable by name while
    pickling; removed afterwards (reading must not need them)."""
    persistence = types.ModuleType("torch_utils.persistence")
    util = types.ModuleType("dnnlib.util")
    _never_called.__module__, _never_called.__qualname__ = (
        "torch_utils.persistence",
        "_reconstruct_persistent_obj",
    )
    _never_called.__name__ = "_reconstruct_persistent_obj"
    EasyDict.__module__ = "dnnlib.util"
    persistence._reconstruct_persistent_obj = _never_called
    util.EasyDict = EasyDict
    modules = {
        "torch_utils": types.ModuleType("torch_utils"),
        "torch_utils.persistence": persistence,
        "dnnlib": types.ModuleType("dnnlib"),
        "dnnlib.util": util,
    }
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


class Persistent:
    """Reduces to the persistence record of a network."""

    def __init__(self, class_name: str, state: dict, module_src: str = DEFAULT_SOURCE) -> None:
        self.meta = {
            "type": "class",
            "version": 4,
            "module_src": module_src,
            "class_name": class_name,
            "state": state,
        }

    def __reduce__(self):
        return (_never_called, (self.meta,))


def record(
    module: nn.Module, class_name: str | None = None, init_kwargs: dict | None = None, **renamed
) -> Persistent:
    """``module`` (and its submodules) as persistence records; ``renamed``: submodule name -> record to use instead."""
    children = OrderedDict()
    for name, child in module.named_children():
        children[name] = renamed.get(name) or record(child)
    buffers = OrderedDict(module._buffers)
    if "resample_filter" in buffers:  # NVIDIA's are persistent buffers
        buffers["resample_filter"] = fir_filter()
    state = {
        "training": False,
        "_parameters": OrderedDict((k, v) for k, v in module._parameters.items()),
        "_buffers": buffers,
        "_non_persistent_buffers_set": set(),
        "_backward_hooks": OrderedDict(),
        "_forward_hooks": OrderedDict(),
        "_modules": children,
        "_init_args": (),
        "_init_kwargs": EasyDict(init_kwargs or {}),
    }
    return Persistent(class_name or type(module).__name__, state)


def generator_kwargs(generator: Generator, **synthesis) -> dict:
    spec = generator.spec
    return {
        "z_dim": spec.z_dim,
        "c_dim": 0,
        "w_dim": spec.w_dim,
        "img_resolution": spec.resolution,
        "img_channels": spec.channels,
        "mapping_kwargs": EasyDict(num_layers=spec.mapping_layers),
        "synthesis_kwargs": EasyDict(
            channel_base=spec.channel_base,
            channel_max=spec.channel_max,
            num_fp16_res=2,
            conv_clamp=spec.conv_clamp,
        )
        | synthesis,
    }


def discriminator_kwargs(discriminator: Discriminator) -> dict:
    spec = discriminator.spec
    return {
        "c_dim": 0,
        "img_resolution": spec.resolution,
        "img_channels": spec.channels,
        "architecture": "resnet",
        "channel_base": spec.channel_base,
        "channel_max": spec.channel_max,
        "num_fp16_res": 2,
        "conv_clamp": spec.conv_clamp,
        "epilogue_kwargs": EasyDict(mbstd_group_size=spec.mbstd_group),
    }


def randomised(module: nn.Module, seed: int) -> nn.Module:
    """Every parameter and buffer random (biases, noise strengths and ``w_avg`` included), so that a wrong
    mapping of any tensor changes the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in list(module.parameters()) + [b for n, b in module.named_buffers() if "filter" not in n]:
            tensor.copy_(
                torch.randn(tensor.shape, generator=generator) * 0.3 + (1 if tensor.ndim == 1 else 0) * 0.1
            )
    return module.eval()


def write_network_pickle(path: Path, generator: Generator, discriminator: Discriminator, **extra) -> Path:
    """An NVIDIA-format pickle holding ``G`` and ``G_ema`` (both ``generator``), ``D``, an ``augment_pipe`` and
    ``training_set_kwargs``; ``extra`` entries are added (or replace these)."""
    with nvidia_names():
        content = {
            "training_set_kwargs": EasyDict(
                class_name="training.dataset.ImageFolderDataset", path="ffhq.zip"
            ),
            "G": record(generator, "Generator", generator_kwargs(generator)),
            "D": record(discriminator, "Discriminator", discriminator_kwargs(discriminator)),
            "G_ema": record(generator, "Generator", generator_kwargs(generator)),
            "augment_pipe": record(nn.Linear(2, 2), "AugmentPipe", {"xflip": 1}),
            **extra,
        }
        path.write_bytes(pickle.dumps(content, protocol=pickle.HIGHEST_PROTOCOL))
    return path


def rosinality_state(generator: Generator) -> dict[str, torch.Tensor]:
    """``generator``'s tensors under stylegan2-pytorch's ``Generator`` names and shapes."""
    state = generator.state_dict()
    out = {
        f"style.{i + 1}.{p}": state[f"mapping.fc{i}.{p}"]
        for i in range(generator.spec.mapping_layers)
        for p in ("weight", "bias")
    }
    out["input.input"] = state["synthesis.b4.const"][None]

    def layer(theirs: str, ours: str, noise: str | None) -> None:
        out[f"{theirs}.conv.weight"] = state[f"{ours}.weight"][None]
        out[f"{theirs}.conv.modulation.weight"] = state[f"{ours}.affine.weight"]
        out[f"{theirs}.conv.modulation.bias"] = state[f"{ours}.affine.bias"]
        if noise is None:  # toRGB
            out[f"{theirs}.bias"] = state[f"{ours}.bias"].reshape(1, -1, 1, 1)
            return
        out[f"{theirs}.noise.weight"] = state[f"{ours}.noise_strength"].reshape(1)
        out[f"{theirs}.activate.bias"] = state[f"{ours}.bias"]
        out[f"noises.{noise}"] = state[f"{ours}.noise_const"][None, None]

    layer("conv1", "synthesis.b4.conv1", "noise_0")
    layer("to_rgb1", "synthesis.b4.torgb", None)
    for k, res in enumerate(generator.synthesis.resolutions[1:]):
        layer(f"convs.{2 * k}", f"synthesis.b{res}.conv0", f"noise_{2 * k + 1}")
        out[f"convs.{2 * k}.conv.blur.kernel"] = fir_filter() * 4
        layer(f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", f"noise_{2 * k + 2}")
        layer(f"to_rgbs.{k}", f"synthesis.b{res}.torgb", None)
        out[f"to_rgbs.{k}.upsample.kernel"] = fir_filter() * 4
    return out


def rosinality_discriminator(discriminator: Discriminator) -> dict[str, torch.Tensor]:
    """``discriminator``'s tensors under stylegan2-pytorch's ``Discriminator`` names."""
    state = discriminator.state_dict()
    top = discriminator.spec.resolution
    out = {
        "convs.0.0.weight": state[f"b{top}.fromrgb.weight"],
        "convs.0.1.bias": state[f"b{top}.fromrgb.bias"],
    }
    for i, res in enumerate(discriminator.resolutions, 1):
        out |= {
            f"convs.{i}.conv1.0.weight": state[f"b{res}.conv0.weight"],
            f"convs.{i}.conv1.1.bias": state[f"b{res}.conv0.bias"],
            f"convs.{i}.conv2.0.kernel": fir_filter(),
            f"convs.{i}.conv2.1.weight": state[f"b{res}.conv1.weight"],
            f"convs.{i}.conv2.2.bias": state[f"b{res}.conv1.bias"],
            f"convs.{i}.skip.0.kernel": fir_filter(),
            f"convs.{i}.skip.1.weight": state[f"b{res}.skip.weight"],
        }
    out |= {
        "final_conv.0.weight": state["b4.conv.weight"],
        "final_conv.1.bias": state["b4.conv.bias"],
        "final_linear.0.weight": state["b4.fc.weight"],
        "final_linear.0.bias": state["b4.fc.bias"],
        "final_linear.1.weight": state["b4.out.weight"],
        "final_linear.1.bias": state["b4.out.bias"],
    }
    return out
