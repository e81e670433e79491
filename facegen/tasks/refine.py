"""The fitting schedule after the encoder (:class:`RefineOptions`) and its photometric stage: analysis-by-synthesis
on MoFA's own losses, optimising chosen parts of a code per face with Adam or Levenberg-Marquardt
(:mod:`facegen.fitting.photometric_fit`). The landmark stages are in :mod:`facegen.fitting`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from facegen.data.batch import FaceBatch
from facegen.decoder.code import PARTS, FaceCode
from facegen.errors import ConfigError, check_choice
from facegen.fitting import LandmarkStage, PoseStage
from facegen.losses.weights import LossWeights

#: How the photometric stage descends (see :class:`PhotometricStage`).
Solver = Literal["adam", "levenberg"]


@dataclass
class PhotometricStage:
    """Stage 3: the code ``parts`` (the others stay) fitted to MoFA's whole objective (photometric + landmarks +
    priors) with loss ``weights`` (default: the model's training weights). Weaker priors and a stronger
    landmark term than in training suit fitting: the landmark stages have placed the face, so the data can
    decide the fine shape.

    ``solver``: ``adam``, ``steps`` of Adam at ``lr``, each one decode, render and loss evaluation of the batch
    (any photometric mode and norm); ``levenberg``, ``steps`` iterations of Levenberg-Marquardt on the same
    objective as least squares (:mod:`facegen.fitting.photometric_fit`: the ``points`` photometric term with
    the squared colour distance averaged per face; ``lr`` is not used), which reaches in 2-3 iterations what
    Adam does not in hundreds of steps when shape and expression move."""

    steps: int = 0
    lr: float = 0.02
    parts: tuple[str, ...] = PARTS
    weights: LossWeights | None = None
    solver: Solver = "adam"

    def __post_init__(self) -> None:
        unknown = set(self.parts) - set(PARTS)
        if unknown or self.steps < 0 or self.lr <= 0:
            raise ConfigError(
                f"refine.photometric: steps must be >= 0, lr > 0 and parts among {PARTS}; got "
                f"steps={self.steps}, lr={self.lr}, unknown parts {sorted(unknown)}"
            )
        check_choice("refine.photometric.solver", self.solver, Solver)


@dataclass
class RefineOptions:
    """The fitting schedule that follows the encoder (or starts from the mean face): stage 1 rigid pose from
    the landmarks (closed form, then Levenberg-Marquardt), stage 2 pose + identity + expression on the
    landmarks (Levenberg-Marquardt with priors), stage 3 the photometric objective (Adam). A stage with no
    iterations is skipped; all off (the default): no fitting."""

    pose: PoseStage = field(default_factory=PoseStage)
    landmarks: LandmarkStage = field(default_factory=LandmarkStage)
    photometric: PhotometricStage = field(default_factory=PhotometricStage)

    @property
    def active(self) -> bool:
        return self.pose.active or self.landmarks.active or self.photometric.steps > 0


def check_solver(options: RefineOptions, photometric: str) -> None:
    """Raise :class:`ConfigError` when ``options`` ask Levenberg-Marquardt of a model whose photometric term
    (``model.photometric``) is not ``points``, the term it fits."""
    if options.photometric.steps and options.photometric.solver == "levenberg" and photometric != "points":
        raise ConfigError(
            "model.refine.photometric.solver: levenberg fits the points photometric term; set "
            f"model.photometric: points (got {photometric!r}) or solver: adam"
        )


class Fitted(NamedTuple):
    """A fitting's result: the code, the photometric stage's objective (batch mean) before each of its steps,
    the seconds each stage took (``pose``, ``landmarks``, ``photometric``; stages that ran), and ``diverged``
    (B,) bool: faces whose fit ended in a non-finite code, given back their starting code."""

    code: FaceCode
    history: list[float]
    seconds: dict[str, float]
    diverged: Tensor


def refine_code(
    loss_of, batch: FaceBatch, code: FaceCode, options: PhotometricStage
) -> tuple[FaceCode, list[float]]:
    """Optimise ``code`` so that ``loss_of(batch, code)`` (a scalar, e.g. MoFA's weighted loss) falls.

    Runs with gradients even inside ``torch.inference_mode`` (Lightning's predict loop): the batch's tensors
    are cloned out of inference mode first. Returns the refined code (detached) and the loss before each step.
    """
    with torch.inference_mode(False), torch.enable_grad():
        batch = clone_out_of_inference(batch)
        values = {part: getattr(code, part).detach().clone() for part in PARTS}
        free = [values[part].requires_grad_() for part in options.parts if values[part].numel()]
        optimizer = torch.optim.Adam(free, lr=options.lr)
        history = []
        for _ in range(options.steps):
            loss = loss_of(batch, FaceCode(**values))
            history.append(loss.item())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return FaceCode(**{part: value.detach() for part, value in values.items()}), history


def clone_out_of_inference(value):
    """``value`` with every tensor (also inside dicts, lists, tuples, NamedTuples and dataclasses) cloned;
    called outside inference mode, the clones are ordinary tensors that autograd can use."""
    if isinstance(value, Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {key: clone_out_of_inference(item) for key, item in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(clone_out_of_inference(item) for item in value))
    if isinstance(value, (tuple, list)):
        return type(value)(clone_out_of_inference(item) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: clone_out_of_inference(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **fields)
    return value
