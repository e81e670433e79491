"""Test-time refinement: analysis-by-synthesis on MoFA's own losses, starting from a code (the encoder's, or the
untrained encoder's mean face) and optimising chosen parts of it per face with Adam."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from facegen.data.batch import FaceBatch
from facegen.decoder.code import PARTS, FaceCode
from facegen.errors import ConfigError
from facegen.losses.weights import LossWeights


@dataclass
class RefineOptions:
    """``steps`` of Adam at ``lr`` on the code ``parts`` (the others stay as predicted); 0 steps: no refinement.
    Each step is one decode, render and loss evaluation of the whole batch. ``weights``: the loss weights of
    the refinement objective (default: the model's training weights). Weaker priors and a stronger landmark
    term than in training suit refinement: started from the encoder's estimate, it can afford to let the data
    decide the fine shape, where the encoder, still pixels off, needs strong priors."""

    steps: int = 0
    lr: float = 0.02
    parts: tuple[str, ...] = PARTS
    weights: LossWeights | None = None

    def __post_init__(self) -> None:
        unknown = set(self.parts) - set(PARTS)
        if unknown or self.steps < 0 or self.lr <= 0:
            raise ConfigError(
                f"refine: steps must be >= 0, lr > 0 and parts among {PARTS}; got steps={self.steps}, "
                f"lr={self.lr}, unknown parts {sorted(unknown)}"
            )


def refine_code(
    loss_of, batch: FaceBatch, code: FaceCode, options: RefineOptions
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
    """``value`` with every tensor (also inside dicts, NamedTuples and dataclasses) cloned; called outside inference mode, the
    clones are ordinary tensors that autograd can use."""
    if isinstance(value, Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {key: clone_out_of_inference(item) for key, item in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(clone_out_of_inference(item) for item in value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: clone_out_of_inference(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **fields)
    return value
