"""Pretrained StyleGAN2 networks from the files people download, into :mod:`facegen.nets.stylegan`.

Read formats (:func:`read_gan` tells them apart by content):
- NVIDIA network pickles (stylegan2-ada-pytorch; stylegan3's for its ``stylegan2`` config), read as data by
  :mod:`facegen.nets.network_pickle`: ``G``, ``G_ema`` and ``D`` with their official parameter names;
- state-dict checkpoints of rosinality's stylegan2-pytorch (``g_ema``, ``g``, ``d``, ``latent_avg``), keys mapped;
- facegen's own file (:func:`save_gan`), written by ``facegen gan import``;
- a Lightning checkpoint of facegen's ``FaceStyleGAN`` (``generator``, ``generator_ema``, ``discriminator``).

Sizes (resolution, channels, latent sizes, mapping depth, the channel schedule) are inferred from the tensors and
checked against the constructor arguments the file records; activation clamping and the minibatch-std group come
from those arguments. Conditional networks, other architectures (StyleGAN3 config-t/r, ``resnet`` generators,
``skip`` discriminators) and non-default resampling filters are refused with one line naming what was found.

Why one module over 400 lines: the readers of the three formats share the checks that a file's tensors fit the
architecture before anything is built."""

from __future__ import annotations

import argparse
import math
import pickle
import re
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from facegen.atomic import atomic_file
from facegen.errors import BadFileError, ConfigError, FacegenError
from facegen.nets.network_pickle import PersistentRecord, read_network_pickle
from facegen.nets.stylegan import Discriminator, DiscriminatorSpec, Generator, GeneratorSpec
from facegen.nets.upfirdn import fir_filter
from facegen.nets.weights import misfit

#: facegen's GAN file: a ``torch.save`` dict with this ``format`` and ``version``.
FORMAT, VERSION = "facegen-stylegan2", 1
#: The networks a GAN file may hold.
Network = Literal["G", "G_ema", "D"]
#: Most parameters an imported network may have (StyleGAN2 at 1024² has about 30 million per network).
MAX_PARAMETERS = 1_000_000_000
#: Samples averaged to estimate ``w_avg`` when a file has none.
W_AVG_SAMPLES = 10_000
#: The first bytes of a legacy (non-zip) ``torch.save`` file: its pickled magic number.
_TORCH_LEGACY_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)[:-1]


@dataclass
class GANWeights:
    """Networks read from a file: the generator's and discriminator's sizes, their state dicts by network
    (``G``, ``G_ema``, ``D``; those the file has) in facegen's names, the source and what the import did."""

    generator: GeneratorSpec | None
    discriminator: DiscriminatorSpec | None
    states: dict[str, dict[str, Tensor]]
    source: str
    notes: list[str] = field(default_factory=list)

    def build_generator(self, network: Literal["G", "G_ema"] = "G_ema") -> Generator:
        """The generator ``network`` (``G_ema`` falls back to ``G`` and back), weights loaded, in eval mode."""
        name = network if network in self.states else {"G": "G_ema", "G_ema": "G"}[network]
        if self.generator is None or name not in self.states:
            raise BadFileError(f"{self.source}: holds no generator (it has {', '.join(self.states)})")
        generator = Generator(**asdict(self.generator))
        generator.load_state_dict(self.states[name])
        return generator.eval()

    def build_discriminator(self) -> Discriminator:
        """The discriminator, weights loaded."""
        if self.discriminator is None or "D" not in self.states:
            raise BadFileError(f"{self.source}: holds no discriminator (it has {', '.join(self.states)})")
        discriminator = Discriminator(**asdict(self.discriminator))
        discriminator.load_state_dict(self.states["D"])
        return discriminator

    def summary(self) -> dict[str, Any]:
        """Sizes, networks and notes, JSON-ready."""
        return {
            "source": self.source,
            "networks": {name: sum(t.numel() for t in state.values()) for name, state in self.states.items()},
            "generator": asdict(self.generator) if self.generator else None,
            "discriminator": asdict(self.discriminator) if self.discriminator else None,
            "notes": self.notes,
        }


# ---------------------------------------------------------------------------------------------- reading
def read_gan(path: str | Path) -> GANWeights:
    """The StyleGAN2 networks in ``path`` (any format of the module docstring), checked to load.

    Raises:
        ConfigError: no such file.
        UnsafeFileError: a pickle naming code (nothing from it ran).
        BadFileError: unreadable, truncated, or networks facegen cannot hold (the message says what it found).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{path} does not exist: give a StyleGAN2 network pickle (.pkl), a stylegan2-pytorch checkpoint (.pt) "
            "or a file written by `facegen gan import`"
        )
    with path.open("rb") as handle:
        head = handle.read(len(_TORCH_LEGACY_MAGIC))
    try:
        gan = _read(path, head)
        _check_loads(gan)
    except FacegenError:
        raise
    except (RuntimeError, IndexError, KeyError, ValueError, TypeError, AttributeError) as error:
        # tensors of shapes or types that no StyleGAN2 has, found while mapping them
        raise BadFileError(
            f"{path}: its tensors do not fit a StyleGAN2 ({type(error).__name__}: {error})"
        ) from None
    return gan


def _read(path: Path, head: bytes) -> GANWeights:
    if zipfile.is_zipfile(path) or head == _TORCH_LEGACY_MAGIC:
        content = _torch_load(path)
        if content.get("format") == FORMAT:
            return _from_facegen(content, path)
        if isinstance(content.get("state_dict"), dict) and "pytorch-lightning_version" in content:
            return _from_lightning(content, path)
        if any(key in content for key in ("g_ema", "g", "d")):
            return _from_rosinality(content, path)
        keys = ", ".join(sorted(map(str, content))[:8])
        raise BadFileError(f"{path}: a torch file without StyleGAN2 networks (keys: {keys})")
    return _from_network_pickle(read_network_pickle(path), path)


def _torch_load(path: Path) -> dict:
    try:  # rosinality's checkpoints keep their argparse Namespace: plain data, allowed
        with torch.serialization.safe_globals([argparse.Namespace]):
            content = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BadFileError(f"{path}: not a readable torch file of tensors ({first})") from None
    if not isinstance(content, dict):
        raise BadFileError(f"{path}: holds a {type(content).__name__}, not a dict of networks")
    return content


def _check_loads(gan: GANWeights) -> None:
    for name, state in gan.states.items():
        _check_fits(name, gan.discriminator if name == "D" else gan.generator, state, gan.source)


def _check_fits(
    name: str, spec: GeneratorSpec | DiscriminatorSpec, state: dict[str, Tensor], source: str, unset: str = ""
) -> None:
    """Raise :class:`BadFileError` unless ``state`` loads into network ``name`` of ``spec`` (but for the tensor
    named ``unset``, filled in later). Nothing is allocated before it passes: the network is built on PyTorch's
    ``meta`` device, its size is bounded by :data:`MAX_PARAMETERS`, and every tensor of ``state`` must own the
    memory it spans (no zero-stride views that pose as large tensors)."""
    with torch.device("meta"):
        network = Discriminator(**asdict(spec)) if name == "D" else Generator(**asdict(spec))
    expected = {key: value for key, value in network.state_dict().items() if key != unset}
    size = sum(value.numel() for value in expected.values())
    if size > MAX_PARAMETERS:
        raise BadFileError(
            f"{source}: {name} asks for a network of {size:.3g} parameters (more than {MAX_PARAMETERS:.0g}); "
            "not a StyleGAN2 facegen can hold"
        )
    for key, value in state.items():
        if value.numel() * value.element_size() > value.untyped_storage().nbytes():
            raise BadFileError(f"{source}: {name}.{key} claims more elements than its storage holds")
    problems = misfit(state, expected)
    if problems:
        raise BadFileError(f"{source}: {name} does not fit a StyleGAN2 of its inferred sizes: {problems}")


def _from_facegen(content: dict, path: Path) -> GANWeights:
    if content.get("version") != VERSION:
        raise BadFileError(
            f"{path}: facegen GAN file version {content.get('version')}, this facegen reads {VERSION}: "
            "import the original file again"
        )
    generator = GeneratorSpec(**content["generator"]) if content.get("generator") else None
    discriminator = DiscriminatorSpec(**content["discriminator"]) if content.get("discriminator") else None
    states = {name: dict(content[name]) for name in ("G", "G_ema", "D") if content.get(name)}
    return GANWeights(generator, discriminator, states, str(path), list(content.get("notes", [])))


#: Lightning checkpoint prefixes of facegen's StyleGAN2 tasks -> the networks they hold.
_LIGHTNING_PREFIXES = {"generator.": "G", "generator_ema.": "G_ema", "discriminator.": "D"}


def _from_lightning(content: dict, path: Path) -> GANWeights:
    states: dict[str, dict[str, Tensor]] = {}
    for key, value in content["state_dict"].items():
        prefix = key.split(".", 1)[0] + "."
        if prefix in _LIGHTNING_PREFIXES and isinstance(value, Tensor):
            states.setdefault(_LIGHTNING_PREFIXES[prefix], {})[key[len(prefix) :]] = value.float()
    if not states:
        raise BadFileError(
            f"{path}: a Lightning checkpoint without StyleGAN2 networks (train one with a FaceStyleGAN config, e.g. "
            "configs/stylegan_synth.yaml)"
        )
    clamp = (content.get("hyper_parameters") or {}).get("conv_clamp")
    where = f"{path}: "
    generator = discriminator = None
    if "G" in states or "G_ema" in states:
        state = states.get("G_ema") or states["G"]
        generator = _generator_spec(state, {"synthesis_kwargs": {"conv_clamp": clamp}}, where + "generator")
    if "D" in states:
        discriminator = _discriminator_spec(states["D"], {"conv_clamp": clamp}, where + "discriminator")
    notes = [f"read from a facegen Lightning checkpoint (step {content.get('global_step', '?')})"]
    return GANWeights(generator, discriminator, states, str(path), notes)


def save_gan(gan: GANWeights, out: str | Path) -> Path:
    """Write ``gan`` as facegen's GAN file (tensors and plain data only) and return its path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    content = {
        "format": FORMAT,
        "version": VERSION,
        "source": Path(gan.source).name,
        "notes": list(gan.notes),
        "generator": asdict(gan.generator) if gan.generator else None,
        "discriminator": asdict(gan.discriminator) if gan.discriminator else None,
        **{name: {k: v.contiguous() for k, v in state.items()} for name, state in gan.states.items()},
    }
    with atomic_file(out, durable=True) as handle:
        torch.save(content, handle)
    return out


# ---------------------------------------------------------------------------------------------- NVIDIA
def _from_network_pickle(content: dict, path: Path) -> GANWeights:
    networks = {
        k: v for k, v in content.items() if k in ("G", "G_ema", "D") and isinstance(v, PersistentRecord)
    }
    if not networks:
        keys = ", ".join(sorted(map(str, content))[:8])
        raise BadFileError(f"{path}: no G, G_ema or D network in this pickle (keys: {keys})")
    notes = [f"read G/G_ema/D ({', '.join(networks)}) from an NVIDIA network pickle as data"]
    generator = discriminator = None
    states: dict[str, dict[str, Tensor]] = {}
    for name, record in networks.items():
        where = f"{path}: {name}"
        if name == "D":
            _check_discriminator_record(record, where)
            states[name] = _without_filters(record.tensors(), where)
            discriminator = _discriminator_spec(states[name], record.init_kwargs, where)
        else:
            _check_generator_record(record, where)
            states[name] = _without_filters(record.tensors(), where)
            generator = _generator_spec(states[name], record.init_kwargs, where)
    fp16 = (networks.get("G_ema") or networks.get("G") or networks["D"]).init_kwargs
    if (fp16.get("synthesis_kwargs") or fp16).get("num_fp16_res"):
        notes.append("the file's float16 layers run in float32 here")
    return GANWeights(generator, discriminator, states, str(path), notes)


def _check_generator_record(record: PersistentRecord, where: str) -> None:
    kwargs = record.init_kwargs
    synthesis = record.children().get("synthesis")
    if record.class_name != "Generator" or synthesis is None or "mapping" not in record.children():
        raise BadFileError(f"{where} is a {record.class_name}, not a StyleGAN2 Generator")
    layers = set(synthesis.children())
    if "input" in layers or any(name.startswith("L0_") for name in layers):
        raise BadFileError(
            f"{where} is a StyleGAN3 generator (config-t/r): facegen reads StyleGAN2 generators (stylegan2-ada, or "
            "stylegan3's --cfg=stylegan2)"
        )
    if int(kwargs.get("c_dim", 0) or 0) > 0 or "embed" in record.children()["mapping"].children():
        raise BadFileError(
            f"{where} is a conditional generator (c_dim={kwargs.get('c_dim')}): facegen reads unconditional ones"
        )
    architecture = (kwargs.get("synthesis_kwargs") or {}).get("architecture", "skip")
    if architecture != "skip":
        raise BadFileError(f"{where}: a '{architecture}' synthesis network; facegen's generator is 'skip'")
    lr = (kwargs.get("mapping_kwargs") or {}).get("lr_multiplier", 0.01)
    if not math.isclose(float(lr), 0.01):
        raise BadFileError(f"{where}: mapping lr_multiplier {lr}; facegen's mapping network uses 0.01")


def _check_discriminator_record(record: PersistentRecord, where: str) -> None:
    kwargs = record.init_kwargs
    if record.class_name != "Discriminator":
        raise BadFileError(f"{where} is a {record.class_name}, not a StyleGAN2 Discriminator")
    if int(kwargs.get("c_dim", 0) or 0) > 0 or "mapping" in record.children():
        raise BadFileError(
            f"{where} is a conditional discriminator (c_dim={kwargs.get('c_dim')}): facegen reads unconditional ones"
        )
    architecture = kwargs.get("architecture", "resnet")
    if architecture != "resnet":
        raise BadFileError(f"{where}: a '{architecture}' discriminator; facegen's discriminator is 'resnet'")


def _without_filters(state: dict[str, Tensor], where: str) -> dict[str, Tensor]:
    """``state`` without its resampling-filter buffers, after checking they are StyleGAN2's [1, 3, 3, 1]."""
    expected = fir_filter()
    kept = {}
    for key, value in state.items():
        if key.endswith("resample_filter"):
            if value.shape != expected.shape or not torch.allclose(value.float(), expected, atol=1e-6):
                raise BadFileError(f"{where}: {key} is not the [1, 3, 3, 1] filter facegen resamples with")
        else:
            kept[key] = value.float()
    return kept


def _schedule(channels: dict[int, int], where: str) -> tuple[int, int]:
    """(channel_base, channel_max) such that min(max, base // res) gives ``channels`` {resolution: count}."""
    maximum = max(channels.values())
    uncapped = {res: count for res, count in channels.items() if count < maximum}
    base = max((count * res for res, count in uncapped.items()), default=maximum * max(channels))
    if any(max(1, min(maximum, base // res)) != count for res, count in channels.items()):
        raise BadFileError(f"{where}: channel counts {channels} do not follow StyleGAN2's schedule")
    return base, maximum


def _checked(where: str, kwargs: dict, inferred: dict[str, Any], names: dict[str, str]) -> None:
    """Compare sizes inferred from tensors with the constructor arguments the file records."""
    for field_name, kwarg in names.items():
        source: Any = kwargs
        for part in kwarg.split("."):
            source = source.get(part) if isinstance(source, dict) else None
        if source is not None and int(source) != int(inferred[field_name]):
            raise BadFileError(
                f"{where}: records {kwarg}={source} but its tensors say {inferred[field_name]}"
            )


def _resolutions(state: dict[str, Tensor], pattern: str) -> list[int]:
    found = {int(m.group(1)) for key in state if (m := re.match(pattern, key))}
    if not found:
        raise BadFileError(f"no blocks matching {pattern}")
    return sorted(found)


def _generator_spec(state: dict[str, Tensor], kwargs: dict, where: str) -> GeneratorSpec:
    resolutions = _resolutions(state, r"synthesis\.b(\d+)\.")
    channels = {res: state[f"synthesis.b{res}.conv1.weight"].shape[0] for res in resolutions}
    base, maximum = _schedule(channels, where)
    layers = len([k for k in state if re.fullmatch(r"mapping\.fc\d+\.weight", k)])
    inferred = {
        "resolution": resolutions[-1],
        "channels": state[f"synthesis.b{resolutions[-1]}.torgb.weight"].shape[0],
        "z_dim": state["mapping.fc0.weight"].shape[1],
        "w_dim": state[f"mapping.fc{layers - 1}.weight"].shape[0],
        "mapping_layers": layers,
        "channel_base": base,
        "channel_max": maximum,
    }
    names = {
        "resolution": "img_resolution",
        "channels": "img_channels",
        "z_dim": "z_dim",
        "w_dim": "w_dim",
        "mapping_layers": "mapping_kwargs.num_layers",
        "channel_max": "synthesis_kwargs.channel_max",
    }
    _checked(where, kwargs, inferred, names)
    clamp = (kwargs.get("synthesis_kwargs") or {}).get("conv_clamp")
    return GeneratorSpec(**inferred, conv_clamp=float(clamp) if clamp is not None else None)


def _discriminator_spec(state: dict[str, Tensor], kwargs: dict, where: str) -> DiscriminatorSpec:
    resolutions = _resolutions(state, r"b(\d+)\.conv0\.")
    channels = {res: state[f"b{res}.conv0.weight"].shape[0] for res in resolutions}
    channels[4] = state["b4.conv.weight"].shape[0]
    base, maximum = _schedule(channels, where)
    top = resolutions[-1]
    inferred = {
        "resolution": top,
        "channels": state[f"b{top}.fromrgb.weight"].shape[1],
        "channel_base": base,
        "channel_max": maximum,
    }
    names = {"resolution": "img_resolution", "channels": "img_channels", "channel_max": "channel_max"}
    _checked(where, kwargs, inferred, names)
    epilogue = kwargs.get("epilogue_kwargs") or {}
    clamp = kwargs.get("conv_clamp")
    return DiscriminatorSpec(
        **inferred,
        mbstd_group=int(epilogue.get("mbstd_group_size", 4)),
        mbstd_channels=state["b4.conv.weight"].shape[1] - channels[4],
        conv_clamp=float(clamp) if clamp is not None else None,
    )


# ---------------------------------------------------------------------------------------------- rosinality
def _from_rosinality(content: dict, path: Path) -> GANWeights:
    notes = ["mapped the keys of a rosinality stylegan2-pytorch checkpoint"]
    states: dict[str, dict[str, Tensor]] = {}
    generator = discriminator = None
    for theirs, ours in (("g_ema", "G_ema"), ("g", "G")):
        if isinstance(content.get(theirs), dict):
            states[ours] = rosinality_generator_state(content[theirs], content.get("latent_avg"))
            generator = _generator_spec(states[ours], {}, f"{path}: {theirs}")
    if isinstance(content.get("d"), dict):
        states["D"] = rosinality_discriminator_state(content["d"])
        discriminator = _discriminator_spec(states["D"], {}, f"{path}: d")
    if not states:
        raise BadFileError(f"{path}: no g_ema, g or d state dict")
    if generator is not None and content.get("latent_avg") is None:
        for name in ("G", "G_ema"):
            if name in states:
                _check_fits(name, generator, states[name], str(path), unset="mapping.w_avg")
                states[name]["mapping.w_avg"] = _estimated_w_avg(generator, states[name])
        notes.append(f"no latent_avg in the file: w_avg is the mean w of {W_AVG_SAMPLES} random z (seed 0)")
    return GANWeights(generator, discriminator, states, str(path), notes)


def _estimated_w_avg(spec: GeneratorSpec, state: dict[str, Tensor]) -> Tensor:
    generator = Generator(**asdict(spec)).eval()
    generator.load_state_dict(state, strict=False)  # all but w_avg
    z = torch.randn(W_AVG_SAMPLES, spec.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return generator.mapping(z).mean(0)


def _rename(state: dict[str, Tensor], renames: list[tuple[str, str]]) -> dict[str, Tensor]:
    """``state`` with each key renamed by the first matching (regex, replacement); blur-filter buffers
    (``...kernel``) dropped (facegen's filter is fixed [1, 3, 3, 1]); any other key is an error."""
    out = {}
    for key, value in state.items():
        for pattern, replacement in renames:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, replacement, key)] = value.float()
                break
        else:
            if not key.endswith("kernel"):
                raise BadFileError(f"unexpected tensor {key} in a stylegan2-pytorch state dict")
    return out


#: stylegan2-pytorch's modulated-layer tensor names -> facegen's (per layer prefix).
_LAYER_NAMES = [
    (r"conv\.weight", "weight"),
    (r"conv\.modulation\.(weight|bias)", r"affine.\1"),
    (r"noise\.weight", "noise_strength"),
    (r"activate\.bias", "bias"),
    (r"bias", "bias"),
]


def rosinality_generator_state(state: dict[str, Tensor], latent_avg: Tensor | None) -> dict[str, Tensor]:
    """A stylegan2-pytorch ``Generator`` state dict in facegen's names and shapes (``latent_avg`` -> ``w_avg``).
    Its ``convs.{2k}``/``convs.{2k+1}`` are the block at 8·2^k's conv0/conv1, ``to_rgbs.{k}`` its toRGB,
    ``noises.noise_{i}`` the noise of its i-th modulated convolution (0: the 4² block's)."""
    layers = {"conv1": "synthesis.b4.conv1", "to_rgb1": "synthesis.b4.torgb"}
    noises = {"0": "synthesis.b4.conv1"}
    for index in range(len({k.split(".")[1] for k in state if k.startswith("convs.")})):
        block = f"synthesis.b{8 * 2 ** (index // 2)}"
        layers[f"convs.{index}"] = noises[str(index + 1)] = f"{block}.conv{index % 2}"
        layers[f"to_rgbs.{index // 2}"] = f"{block}.torgb"
    mapping_layers = len([k for k in state if re.fullmatch(r"style\.\d+\.weight", k)])
    renames = [(rf"style\.{i + 1}\.(weight|bias)", rf"mapping.fc{i}.\1") for i in range(mapping_layers)]
    renames += [(r"input\.input", "synthesis.b4.const")]  # style.0 is the pixel norm: no tensors
    renames += [(rf"noises\.noise_{i}", f"{name}.noise_const") for i, name in noises.items()]
    renames += [
        (rf"{re.escape(theirs)}\.{pattern}", rf"{ours}.{replacement}")
        for theirs, ours in layers.items()
        for pattern, replacement in _LAYER_NAMES
    ]
    out = {}
    for key, value in _rename(state, renames).items():
        if key == "synthesis.b4.const" or re.fullmatch(r"synthesis\.b\d+\.(conv\d|torgb)\.weight", key):
            value = value[0]  # a leading batch dimension of 1
        elif key.endswith("noise_const"):
            value = value.reshape(value.shape[-2:])
        elif key.endswith("noise_strength"):
            value = value.reshape(())
        elif key.endswith("bias"):
            value = value.reshape(-1)
        out[key] = value
    if latent_avg is not None:
        out["mapping.w_avg"] = latent_avg.float().reshape(-1)
    return out


def rosinality_discriminator_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A stylegan2-pytorch ``Discriminator`` state dict in facegen's names."""
    blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("convs.")})
    if not blocks or "convs.0.0.weight" not in state:
        raise BadFileError("a stylegan2-pytorch discriminator without convs.0 (fromRGB)")
    top = 4 * 2 ** (len(blocks) - 1)
    renames = [
        (r"convs\.0\.0\.weight", f"b{top}.fromrgb.weight"),
        (r"convs\.0\.1\.bias", f"b{top}.fromrgb.bias"),
        (r"final_conv\.0\.weight", "b4.conv.weight"),
        (r"final_conv\.1\.bias", "b4.conv.bias"),
        (r"final_linear\.0\.(weight|bias)", r"b4.fc.\1"),
        (r"final_linear\.1\.(weight|bias)", r"b4.out.\1"),
    ]
    for index in blocks[1:]:
        res = top // 2 ** (index - 1)
        renames += [
            (rf"convs\.{index}\.conv1\.0\.weight", f"b{res}.conv0.weight"),
            (rf"convs\.{index}\.conv1\.1\.bias", f"b{res}.conv0.bias"),
            (rf"convs\.{index}\.conv2\.1\.weight", f"b{res}.conv1.weight"),
            (rf"convs\.{index}\.conv2\.2\.bias", f"b{res}.conv1.bias"),
            (rf"convs\.{index}\.skip\.1\.weight", f"b{res}.skip.weight"),
        ]
    return {key: value.float() for key, value in _rename(state, renames).items()}


# ---------------------------------------------------------------------------------------------- transfer
def transfer(module: torch.nn.Module, state: dict[str, Tensor]) -> tuple[int, list[str]]:
    """Copy into ``module`` the tensors of ``state`` whose names and shapes match its own (transfer learning
    between networks of different resolution or channels). Returns how many were copied and the names of
    ``module``'s tensors left as they were."""
    own = module.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    module.load_state_dict(matching, strict=False)
    return len(matching), sorted(set(own) - set(matching))
