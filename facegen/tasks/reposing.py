"""Re-posing the faces of a frozen 2D StyleGAN2 (the texture paper's pose manipulation), so that the texture
model sees every side of the face.

The directions are learnt InterFaceGAN-style: facegen's MoFA fits the head pose (pitch, yaw) of ``samples``
generated faces; a ridge regression from w to that pose gives a linear model ``pose ≈ offset + w @ basis``. Moving
a face from its predicted pose to a target pose adds the smallest change of w that the model says does it,
``basis (basisᵀ basis)⁻¹ Δpose``, to every layer of W+. With ``feedback`` (closed loop, a non-linear
alternative), the MoFA then fits the re-posed image and further steps along the directions move its fitted pose to
the target: each corrects what the linear model got wrong about that face. The re-posed images are fitted again by
the MoFA (the geometry used for compositing is always that of the image shown), and a share of them is mirrored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facegen.decoder import FaceCode
from facegen.errors import ConfigError
from facegen.nets.stylegan import Generator, to_unit

#: Pose directions weaker than this (radians per unit of w) are not used to re-pose.
MIN_SINGULAR_VALUE = 1e-6
#: Which Euler angles of MoFA's rotation (pitch, yaw, roll) the directions control: pitch and yaw.
POSE_ANGLES = (0, 1)


@dataclass
class PoseAugment:
    """Re-posing of the 2D generator's faces: ``samples`` generated faces fitted to learn the directions (ridge
    weight ``ridge``); target yaw uniform in ±``max_yaw`` and pitch in ±``max_pitch`` around the mean pitch
    (radians); the share ``flip`` of the images mirrored; ``truncation`` of the 2D generator's w; ``feedback``
    closed-loop corrections after the step (module docstring; each one more synthesis and MoFA pass per image)."""

    samples: int = 512
    ridge: float = 1.0
    max_yaw: float = 0.8
    max_pitch: float = 0.2
    flip: float = 0.2
    truncation: float = 1.0
    feedback: int = 0

    def __post_init__(self) -> None:
        if self.samples < 8:
            raise ConfigError(
                f"model.pose.samples must be at least 8 to learn pose directions, got {self.samples}"
            )
        if not 0 <= self.flip <= 1:
            raise ConfigError(f"model.pose.flip is a probability in [0, 1], got {self.flip}")
        if self.max_yaw < 0 or self.max_pitch < 0 or self.ridge <= 0 or self.feedback < 0:
            raise ConfigError("model.pose: max_yaw, max_pitch and feedback must be >= 0 and ridge > 0")


class PoseDirections(nn.Module):
    """The linear model ``pose (B, 2) = offset + w (B, w_dim) @ basis`` of (pitch, yaw) in radians, kept in the
    checkpoint (``fitted`` says whether it was learnt)."""

    def __init__(self, w_dim: int) -> None:
        super().__init__()
        self.register_buffer("basis", torch.zeros(w_dim, len(POSE_ANGLES)))
        self.register_buffer("offset", torch.zeros(len(POSE_ANGLES)))
        self.register_buffer("mean_pose", torch.zeros(len(POSE_ANGLES)))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def fit(self, w: Tensor, pose: Tensor, ridge: float) -> float:
        """Ridge regression of ``pose`` (N, 2) on ``w`` (N, w_dim); returns R² (the share of pose variance the
        model explains, over both angles)."""
        w, pose = w.double(), pose.double()
        w_mean, pose_mean = w.mean(0), pose.mean(0)
        wc, pc = w - w_mean, pose - pose_mean
        gram = wc.T @ wc + ridge * torch.eye(w.shape[1], dtype=w.dtype, device=w.device)
        basis = torch.linalg.solve(gram, wc.T @ pc)
        self.basis.copy_(basis)
        self.offset.copy_(pose_mean - w_mean @ basis)
        self.mean_pose.copy_(pose_mean)
        self.fitted.fill_(True)
        total = pc.square().sum()
        if total < 1e-12:  # the pose does not vary: nothing to explain
            return 0.0
        return float(1 - (pc - wc @ basis).square().sum() / total)

    def predict(self, w: Tensor) -> Tensor:
        """w (B, w_dim) -> predicted (pitch, yaw) (B, 2)."""
        return self.offset + w @ self.basis

    def shift(self, w: Tensor, target: Tensor) -> Tensor:
        """The smallest change of w (B, w_dim) that moves the predicted pose of ``w`` to ``target`` (B, 2)."""
        return self.step(self.predict(w), target)

    def step(self, pose: Tensor, target: Tensor) -> Tensor:
        """The smallest change of w (B, w_dim) that the model says moves ``pose`` (B, 2) to ``target`` (B, 2):
        ``(target - pose) @ pinv(basis)``; none along directions that do not move the pose."""
        inverse = torch.linalg.pinv(self.basis, atol=MIN_SINGULAR_VALUE)  # (2, w_dim)
        return (target - pose) @ inverse

    def targets(self, batch: int, options: PoseAugment, generator: torch.Generator | None = None) -> Tensor:
        """Random target poses (B, 2): pitch around the mean pitch within ±max_pitch, yaw within ±max_yaw."""
        uniform = torch.rand(batch, 2, generator=generator).to(self.basis) * 2 - 1
        spread = torch.tensor([options.max_pitch, options.max_yaw]).to(self.basis)
        centre = torch.stack([self.mean_pose[0], torch.zeros_like(self.mean_pose[0])])
        return centre + uniform * spread


class Scene(NamedTuple):
    """Images of the frozen 2D generator: image (B, 3, S, S) in [0, 1] at the MoFA's crop size, the w each was
    made from (B, w_dim) after re-posing, which were mirrored (B,) bool, and the images at the generator's own
    resolution (B, 3, R, R) (what the discriminator compares composites with, never resized)."""

    image: Tensor
    w: Tensor
    flipped: Tensor
    native: Tensor


def render_scene(
    generator: Generator,
    z: Tensor,
    size: int,
    directions: PoseDirections | None = None,
    options: PoseAugment | None = None,
    noise_mode: str = "random",
    rng: torch.Generator | None = None,
    measure: Callable[[Tensor], Tensor] | None = None,
) -> Scene:
    """Images of the 2D ``generator`` for ``z`` (B, z_dim), resized to ``size``; re-posed to random targets and
    partly mirrored when ``directions`` and ``options`` are given (``rng`` draws the targets and flips), with
    ``options.feedback`` corrections when ``measure`` (images (B, 3, size, size) -> fitted (pitch, yaw) (B, 2))
    is given. The noise is drawn once, so a correction changes only w."""
    truncation = options.truncation if options is not None else 1.0
    w = generator.mapping(z, truncation, update_average=False)
    flipped = torch.zeros(z.shape[0], dtype=torch.bool, device=z.device)
    noise = generator.synthesis.noise_maps(z.shape[0], z.device) if noise_mode == "random" else None
    if directions is not None and options is not None:
        target = directions.targets(z.shape[0], options, rng)
        w = w + directions.shift(w, target)
        flipped = (torch.rand(z.shape[0], generator=rng) < options.flip).to(z.device)
        for _ in range(options.feedback if measure is not None else 0):
            w = w + directions.step(measure(_synthesis(generator, w, noise_mode, noise, size)), target)
    native = _synthesis(generator, w, noise_mode, noise)
    native = torch.where(flipped[:, None, None, None], native.flip(-1), native)
    image = native if native.shape[-1] == size else _resized(native, size)
    return Scene(image, w, flipped, native)


def _synthesis(generator: Generator, w: Tensor, noise_mode: str, noise, size: int | None = None) -> Tensor:
    """The 2D images of ``w`` (B, w_dim) in [0, 1] (B, 3, R, R), resized to ``size`` when given."""
    ws = w.unsqueeze(1).repeat(1, generator.num_ws, 1)
    image = to_unit(generator.synthesis(ws, noise_mode=noise_mode, noise=noise)).clamp(0, 1)
    return image if size is None or image.shape[-1] == size else _resized(image, size)


def _resized(image: Tensor, size: int) -> Tensor:
    return F.interpolate(
        image, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    ).clamp(0, 1)


@torch.no_grad()
def fit_scenes(
    generator: Generator,
    encoder: Callable[[Tensor], FaceCode],
    size: int,
    z: Tensor,
    chunk: int,
    directions: PoseDirections | None = None,
    options: PoseAugment | None = None,
    rng: torch.Generator | None = None,
) -> tuple[Tensor, FaceCode]:
    """The 2D ``generator``'s images of ``z`` (B, z_dim) with constant noise, ``chunk`` at a time, re-posed as
    :func:`render_scene` does when ``directions`` and ``options`` are given (the ``encoder`` measuring the pose
    for feedback), at ``size`` and coded by ``encoder`` (the MoFA): their w (B, w_dim) and codes."""
    ws, codes = [], []
    for start in range(0, z.shape[0], chunk):
        scene = render_scene(
            generator, z[start : start + chunk], size, directions, options, "const", rng, pose_of(encoder)
        )
        ws.append(scene.w)
        codes.append(encoder(scene.image))
    return torch.cat(ws), FaceCode(*(torch.cat(parts) for parts in zip(*codes, strict=True)))


def pose_of(encoder: Callable[[Tensor], FaceCode]) -> Callable[[Tensor], Tensor]:
    """Images (B, 3, S, S) -> the (pitch, yaw) (B, 2) of ``encoder``'s codes: the measurement of feedback."""
    return lambda image: encoder(image).rotation[:, POSE_ANGLES].to(image.dtype)
