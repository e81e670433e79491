"""Reading pickles as data, never as code.

A pickle names Python callables that the standard unpickler imports and calls, so a crafted file runs whatever
it names (``os.system``, ``subprocess.Popen``, ...). facegen reads the few pickles that face-model downloads come
as (FLAME's ``generic_model.pkl``, DECA's ``landmark_embedding.npy``) through :class:`SafeUnpickler`:

- numpy arrays, dtypes and scalars, and plain containers (``set``, ``frozenset``, ``OrderedDict``, ...) are
  rebuilt as usual;
- classes under the ``stand_ins`` module prefixes given by the caller (e.g. ``chumpy``, ``scipy.sparse``) become
  :class:`PickledObject` records that only keep the constructor arguments and the state the pickle sets;
- a caller may map a few more qualified names to its own data-only ``handlers`` (e.g. tensor rebuilding through
  ``torch.load(weights_only=True)``, see :mod:`facegen.nets.network_pickle`);
- every other global is refused with :class:`~facegen.errors.UnsafeFileError` naming the file and the global,
  before anything is called.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import io
import pickle
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from facegen.errors import BadFileError, UnsafeFileError

try:  # numpy >= 2 moved the pickle helpers to numpy._core; pickles written by numpy 1 name numpy.core
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric


class PickledObject:
    """Data-only stand-in for a pickled instance of a class facegen does not import.

    ``pickled_class``: the original ``module.name``; ``args``/``kwargs``: what the pickle passed to the
    constructor; ``state``: what it set with ``__setstate__`` (usually the instance ``__dict__``).
    """

    pickled_class = "?"
    args: tuple = ()
    kwargs: dict = {}
    state: Any = None

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"PickledObject({self.pickled_class})"


def _safe_reconstructor(cls, base, state):
    """``copyreg._reconstructor`` (Python 2 pickles of new-style classes), for stand-in classes only."""
    if not (isinstance(cls, type) and issubclass(cls, PickledObject)) or base is not object:
        raise pickle.UnpicklingError(f"copyreg._reconstructor of {cls!r} is not allowed")
    instance = cls.__new__(cls)
    if state is not None:
        instance.__setstate__(state)
    return instance


_ALLOWED: dict[tuple[str, str], Any] = {
    **{
        (module, name): getattr(source, name)
        for module, source in (
            ("numpy.core.multiarray", _multiarray),
            ("numpy._core.multiarray", _multiarray),
            ("numpy.core.numeric", _numeric),
            ("numpy._core.numeric", _numeric),
        )
        for name in ("_reconstruct", "scalar", "_frombuffer")
        if hasattr(source, name)
    },
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("builtins", "slice"): slice,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "object"): object,  # only ever used as the base argument of _safe_reconstructor
    ("copyreg", "_reconstructor"): _safe_reconstructor,
    ("_codecs", "encode"): codecs.encode,  # bytes in protocol-2 pickles written by Python 3
}
# dtype classes of numpy >= 1.25 pickles (numpy.dtypes.Float64DType, ...)
_DTYPES = getattr(np, "dtypes", None)
_ALLOWED.update({("numpy.dtypes", n): getattr(_DTYPES, n) for n in dir(_DTYPES) if n.endswith("DType")})


class _Refused(pickle.UnpicklingError):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.global_name = f"{module}.{name}"


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds only allow-listed globals (see the module docstring).

    Args:
        file: binary stream positioned at the pickle.
        stand_ins: module prefixes whose classes become :class:`PickledObject` records.
        encoding: as :class:`pickle.Unpickler` (``latin1`` for Python 2 pickles holding numpy arrays).
        handlers: ``module.name`` -> the data-only callable or class built in its place.
    """

    def __init__(
        self,
        file: BinaryIO,
        stand_ins: Sequence[str] = (),
        encoding: str = "ASCII",
        handlers: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(file, encoding=encoding)
        self.stand_ins = tuple(stand_ins)
        self.handlers = dict(handlers or {})
        self._classes: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        # Python 2 names (copy_reg, __builtin__.set) as Python 3 spells them, as the standard find_class does
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        allowed = _ALLOWED.get((module, name), self.handlers.get(f"{module}.{name}"))
        if allowed is not None:
            return allowed
        if any(module == p or module.startswith(p + ".") for p in self.stand_ins):
            qualified = f"{module}.{name}"
            if qualified not in self._classes:
                self._classes[qualified] = type(name, (PickledObject,), {"pickled_class": qualified})
            return self._classes[qualified]
        raise _Refused(module, name)

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent references are not allowed")


def load_pickle(
    file: BinaryIO,
    source: str | Path,
    stand_ins: Sequence[str] = (),
    encoding: str = "ASCII",
    handlers: Mapping[str, Any] | None = None,
) -> Any:
    """The object pickled in ``file``, built by :class:`SafeUnpickler` (``handlers``: as there).

    Raises:
        UnsafeFileError: the pickle names a global that is not allow-listed (nothing it names was called).
        BadFileError: the pickle is truncated or malformed.
    """
    try:
        return SafeUnpickler(file, stand_ins, encoding, handlers).load()
    except _Refused as refused:
        raise UnsafeFileError(
            f"{source}: refusing to load '{refused.global_name}' from this pickle: facegen reads only arrays "
            "and plain containers from pickles, never code (is this the file you downloaded?)"
        ) from None
    except UnsafeFileError:
        raise
    except BadFileError as error:  # a handler's finding, without the file's name
        raise BadFileError(f"{source}: {error}") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        RuntimeError,
    ) as error:
        raise BadFileError(f"{source}: not a readable pickle ({type(error).__name__}: {error})") from None


def load_npy(path: str | Path, stand_ins: Sequence[str] = ()) -> Any:
    """A ``.npy`` file's array; an object array (a pickle inside the ``.npy``) is read with
    :class:`SafeUnpickler` and returned as its 0-d item when it has one element (e.g. a pickled dict).

    Raises:
        BadFileError / UnsafeFileError: as :func:`load_pickle`, or a malformed ``.npy`` header.
    """
    path = Path(path)
    with path.open("rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except ValueError as error:
            raise BadFileError(f"{path}: not a readable .npy file ({error})") from None
        if not dtype.hasobject:
            handle.seek(0)
            try:
                return np.load(io.BytesIO(handle.read()), allow_pickle=False)
            except ValueError as error:
                raise BadFileError(f"{path}: not a readable .npy file ({error})") from None
        array = load_pickle(handle, path, stand_ins, encoding="latin1")
    if not isinstance(array, np.ndarray):
        raise BadFileError(f"{path}: the .npy pickle holds a {type(array).__name__}, not an array")
    return array.item() if array.size == 1 else array
