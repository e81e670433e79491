"""What a folder of shards was made with, checked against the task that is about to read it.

``facegen synth`` and ``facegen prepare`` write ``manifest.json`` beside their shards with the face model (name
and :meth:`~facegen.morphable.model.MorphableModel.checksum`; synth), the crop size and the framing. A task
reads shards made for it only: synthetic faces of another face model would feed that model's ground truth into
``val/vertex_error*``, and crops framed otherwise mislead the camera. The crop size is not checked: the reader
resizes crops to ``data.image_size`` by design.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from facegen.data.batch import InputSpec
from facegen.errors import BadFileError, ConfigError
from facegen.morphable.registry import load_face_model

MANIFEST = "manifest.json"


def manifests(urls: list[str]) -> dict[Path, dict]:
    """The manifest of each local folder that holds one of ``urls`` (shards elsewhere carry none).

    Raises:
        BadFileError: naming a manifest that is not JSON.
    """
    found = {}
    for folder in sorted({Path(url).parent for url in urls if "://" not in url}):
        path = folder / MANIFEST
        if path.is_file():
            try:
                found[folder] = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise BadFileError(f"{path}: not a JSON manifest ({error}); re-make the shards") from None
    return found


def mismatch(manifest: dict, spec: InputSpec) -> str | None:
    """What in ``manifest`` contradicts ``spec`` (one phrase), or None (also for older manifests that do not
    record it)."""
    model = manifest.get("face_model")
    if isinstance(model, dict) and model.get("sha256"):
        wanted = load_face_model(spec.face_model)
        if model["sha256"] != wanted.checksum():
            return f"were rendered with face model {model.get('name')!r}, not the task's {spec.face_model!r}"
    framing = manifest.get("framing")
    for key in ("fov", "fill"):
        value = framing.get(key) if isinstance(framing, dict) else None
        if isinstance(value, int | float) and not math.isclose(value, getattr(spec, key), rel_tol=1e-6):
            return f"were made with {key} {value:g}, the task uses {getattr(spec, key):g}"
    return None


def check_origin(split: str, urls: list[str], spec: InputSpec) -> None:
    """Refuse shards of ``split`` whose manifest contradicts ``spec``, in one line naming the folder and the
    command that re-makes them.

    Raises:
        ConfigError: a mismatch.
    """
    for folder, manifest in manifests(urls).items():
        problem = mismatch(manifest, spec)
        if problem is None:
            continue
        if manifest.get("kind") == "synth":
            remedy = (
                f"delete {folder} so that data.synthetic renders it for this task, or run `facegen synth --model "
                f"{spec.face_model} --n N --options.size {spec.image_size} --out NEW_FOLDER` and point "
                f"data.{split} there"
            )
        else:
            remedy = (
                f"run `facegen prepare --input {manifest.get('input', 'PHOTOS')} --out NEW_FOLDER --fill "
                f"{spec.fill:g}` and point data.{split} there"
            )
        raise ConfigError(f"data.{split}: the shards in {folder} {problem}; {remedy}")
