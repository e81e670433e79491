"""NVIDIA's network pickles (stylegan2-ada-pytorch, stylegan3), read as data: no code from the file ever runs.

Such a pickle is a dict (``G``, ``D``, ``G_ema``, ``augment_pipe``, ``training_set_kwargs``, ...) whose networks were
saved by ``torch_utils.persistence``: each network is a call ``_reconstruct_persistent_obj(meta)`` with ``meta`` =
``{type, version, module_src, class_name, state}``, ``module_src`` being the Python source that NVIDIA's loader
executes. Here :class:`facegen.safe_pickle.SafeUnpickler` maps that call to :class:`PersistentRecord`, which keeps
the class name, the source (as text, for inspection only) and the instance state; tensors are rebuilt from their
storages with ``torch.load(weights_only=True)``; ``dnnlib.EasyDict`` becomes a plain dict. Any other global the
file names is refused before anything is called.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from facegen.errors import BadFileError
from facegen.safe_pickle import load_pickle


@dataclass
class PersistentRecord:
    """A network saved by ``torch_utils.persistence``, as data: ``class_name``, ``module_src`` (never executed)
    and ``state`` (the module's ``__dict__``: ``_parameters``, ``_buffers``, ``_modules``, ``_init_kwargs``...)."""

    class_name: str
    module_src: str
    state: dict = field(repr=False)

    @property
    def init_kwargs(self) -> dict:
        """The keyword arguments the network was constructed with (empty when not recorded)."""
        return dict(self.state.get("_init_kwargs") or {})

    def tensors(self, prefix: str = "") -> dict[str, Tensor]:
        """Parameters and buffers of this network and its submodules, keyed by dotted names like a
        ``state_dict``."""
        out: dict[str, Tensor] = {}
        for group in ("_parameters", "_buffers"):
            for name, value in (self.state.get(group) or {}).items():
                if value is not None:
                    out[prefix + name] = _tensor(value, prefix + name)
        for name, child in (self.state.get("_modules") or {}).items():
            if isinstance(child, PersistentRecord):
                out.update(child.tensors(f"{prefix}{name}."))
            elif child is not None:
                raise BadFileError(
                    f"submodule {prefix}{name} is a {type(child).__name__}, not a network saved as data"
                )
        return out

    def children(self) -> dict[str, PersistentRecord]:
        """Direct submodules by name."""
        modules = self.state.get("_modules") or {}
        return {k: v for k, v in modules.items() if isinstance(v, PersistentRecord)}


class EasyDict(dict):
    """``dnnlib.EasyDict`` read as a plain dict."""


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class" or "class_name" not in meta:
        raise BadFileError(f"a persistent-object record without a class ({type(meta).__name__})")
    state = meta.get("state")
    if not isinstance(state, dict):
        raise BadFileError(f"{meta['class_name']}: persistent state is a {type(state).__name__}, not a dict")
    return PersistentRecord(str(meta["class_name"]), str(meta.get("module_src", "")), dict(state))


def _load_from_bytes(data: bytes):
    """A storage saved by ``torch.save`` inside the pickle, read with torch's weights-only loader."""
    if not isinstance(data, bytes | bytearray):
        raise BadFileError(f"tensor storage given as {type(data).__name__}, not bytes")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, *rest) -> Tensor:
    if not isinstance(storage, torch.TypedStorage):
        raise BadFileError(f"tensor built on a {type(storage).__name__}, not a storage")
    if not all(isinstance(v, int) for v in (offset, *size, *stride)):
        raise BadFileError("tensor with a non-integer size, stride or offset")
    return torch._utils._rebuild_tensor_v2(storage, offset, tuple(size), tuple(stride), False, OrderedDict())


def _rebuild_parameter(data, requires_grad=False, hooks=None, *rest) -> Tensor:
    return _tensor(data, "parameter")


def _tensor(value: Any, name: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise BadFileError(f"{name} is a {type(value).__name__}, not a tensor")
    return value.detach()


#: Data-only stand-ins for the globals a network pickle names (everything else is refused).
HANDLERS: dict[str, Any] = {
    "torch_utils.persistence._reconstruct_persistent_obj": _reconstruct_persistent_obj,
    "torch.storage._load_from_bytes": _load_from_bytes,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "dnnlib.util.EasyDict": EasyDict,
    "dnnlib.EasyDict": EasyDict,
    "torch.device": torch.device,
    **{
        f"torch.{name}": getattr(torch, name)
        for name in ("float16", "float32", "float64", "bfloat16", "int64", "int32", "uint8", "bool")
    },
}


def read_network_pickle(path: str | Path) -> dict[str, Any]:
    """The top-level dict of the network pickle at ``path`` with networks as :class:`PersistentRecord`.

    Raises:
        UnsafeFileError: the file names a global outside the allow-list (nothing it names was called).
        BadFileError: truncated or malformed, or not a dict.
    """
    path = Path(path)
    with path.open("rb") as handle:
        content = load_pickle(handle, path, handlers=HANDLERS)
    if not isinstance(content, dict):
        raise BadFileError(
            f"{path}: a network pickle holds a dict of networks, this one a {type(content).__name__}"
        )
    return content
