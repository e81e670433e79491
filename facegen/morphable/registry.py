"""Which reader handles which format, and how a config names a face model: ``builtin``, a canonical .npz, or
an openly licensed model facegen fetches by name on first use (:data:`NAMED_MODELS`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from facegen.errors import ConfigError
from facegen.morphable.model import MorphableModel


def _builtin(source: str | Path | None = None) -> MorphableModel:
    from facegen.morphable.builtin import builtin_model

    return builtin_model()


def _reader(module: str, function: str) -> Callable[..., MorphableModel]:
    def read(*args, **kwargs) -> MorphableModel:
        import importlib

        return getattr(importlib.import_module(module), function)(*args, **kwargs)

    return read


#: format name -> reader(source, **options). Options: ``landmarks`` (bfm2009, bfm2017, flame, ict), ``region``
#: (ict).
FORMATS: dict[str, Callable[..., MorphableModel]] = {
    "bfm2009": _reader("facegen.morphable.formats.bfm", "load_bfm2009"),
    "bfm-front": _reader("facegen.morphable.formats.bfm", "load_bfm_front"),
    "bfm2017": _reader("facegen.morphable.formats.bfm", "load_bfm2017"),
    "flame": _reader("facegen.morphable.formats.flame", "load_flame"),
    "ict": _reader("facegen.morphable.formats.ict", "load_ict"),
    "npz": MorphableModel.load,
    "builtin": _builtin,
}


#: name -> ICT-FaceKit region: models downloaded (pinned, checksummed) and converted into the cache on first use.
NAMED_MODELS = {"ict-face": "face", "ict-head": "head"}
#: Revision of the cached conversions, part of their file name: raised whenever the conversion changes, so an
#: older cache is never used silently (2: ICT's expressions are marked as blendshapes; 3: the landmark vertices
#: calibrated for 2D detectors, :data:`facegen.morphable.formats.ict.CALIBRATED_LANDMARKS`).
NAMED_REVISION = 3


def fetched_model(name: str, cache: Path | None = None) -> Path:
    """The canonical .npz of the named model ``name`` in ``cache`` (default: :func:`cache_folder`), downloaded
    and converted when it is not there yet."""
    from facegen.morphable.download import cache_folder, fetch_ict

    cache = cache or cache_folder()
    path = cache / "models" / f"{name}.r{NAMED_REVISION}.npz"
    if not path.is_file():
        convert("ict", fetch_ict(cache, path, NAMED_MODELS[name]), region=NAMED_MODELS[name]).save(path)
    return path


def convert(format: str, source: str | Path | None, **options) -> MorphableModel:
    """Read ``source`` in ``format`` (one of :data:`FORMATS`) into a :class:`MorphableModel`."""
    if format not in FORMATS:
        raise ConfigError(f"unknown face-model format {format!r}; choose one of {sorted(FORMATS)}")
    if source is None and format != "builtin":
        raise ConfigError(f"format {format!r} needs a source file or folder")
    options = {k: v for k, v in options.items() if v is not None}
    return FORMATS[format](source, **options)


def load_face_model(spec: str | Path) -> MorphableModel:
    """The face model a config names: ``builtin``, a name of :data:`NAMED_MODELS` (fetched on first use) or the
    path of a canonical ``.npz``."""
    if str(spec) == "builtin":
        return _builtin()
    if str(spec) in NAMED_MODELS:
        return MorphableModel.load(fetched_model(str(spec)))
    path = Path(spec).expanduser()
    if path.suffix != ".npz":
        raise ConfigError(
            f"face model {spec!r}: give 'builtin', one of {sorted(NAMED_MODELS)} or a canonical .npz; convert "
            "other formats first with "
            f"`facegen model convert FORMAT --source {spec} --out model.npz`"
        )
    return MorphableModel.load(path)
