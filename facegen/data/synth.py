"""``facegen synth``: random faces of any morphable model rendered into shards with their ground-truth code.

Every sample has the keys of real shards (crop, 68 landmarks, mask, json) plus ``params.npz`` holding the code
(:mod:`facegen.decoder.code`) that rendered it. Shard ``i`` is drawn from the seed ``(seed, i)``, so shards are
reproducible one by one and an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from facegen.data.sample import encode_image, encode_sample
from facegen.data.shards import ShardWriter, plan_shards, shard_path, write_json_atomic
from facegen.decoder import CodeLayout, FaceCode, FaceDecoder
from facegen.errors import ConfigError, check_choice
from facegen.geometry.framing import DEFAULT_FILL, DEFAULT_FOV
from facegen.geometry.sh import ambient_sh
from facegen.morphable.model import ExpressionKind, MorphableModel
from facegen.morphable.registry import load_face_model

#: Backgrounds behind synthetic faces: smooth random colour fields, or one random colour.
Background = Literal["smooth", "plain"]
#: The chance that a blendshape expression is on in a random face.
BLENDSHAPE_ACTIVE = 0.25
#: Side of synthetic renders in pixels when nothing else says.
DEFAULT_SIZE = 224


@dataclass(frozen=True)
class SynthOptions:
    """Distributions of the random faces. Angles in degrees (uniform in +-limit; the yaw's magnitude at least
    ``yaw_min``, e.g. turned faces only with ``yaw_min: 60, yaw: 90``); coefficient spreads are
    multiples of the model's standard deviations, except the weights of blendshape expressions (ICT-FaceKit's
    ARKit-style ones, which mean something only in [0, 1]): each is on with probability
    :data:`BLENDSHAPE_ACTIVE` and then uniform in [0, ``expression``] (capped at 1); translation spreads are in
    code units (a tenth of the default camera distance). ``size``: side of the renders in pixels (None:
    :data:`DEFAULT_SIZE` for ``facegen synth``; in a data module, its image size)."""

    size: int | None = None
    yaw: float = 35.0
    yaw_min: float = 0.0
    pitch: float = 15.0
    roll: float = 10.0
    translation_xy: float = 0.08
    translation_z: float = 0.5
    shape: float = 1.0
    expression: float = 0.7
    albedo: float = 1.0
    ambient: tuple[float, float] = (0.6, 1.1)
    directional: float = 0.6  # largest first-band strength relative to the ambient term
    background: Background = "smooth"

    def __post_init__(self) -> None:
        if self.size is not None and self.size < 16:
            raise ConfigError(f"synth options.size must be at least 16 pixels, got {self.size}")
        check_choice("synth options.background", self.background, Background)
        if not 0 <= self.yaw_min <= self.yaw:
            raise ConfigError(
                f"synth options: 0 <= yaw_min <= yaw, got yaw_min={self.yaw_min}, yaw={self.yaw}"
            )


def sample_code(
    layout: CodeLayout,
    batch: int,
    options: SynthOptions,
    generator: torch.Generator,
    expression_kind: ExpressionKind = "pca",
) -> FaceCode:
    """A random :class:`FaceCode` (B = ``batch``) drawn from ``options`` for a model whose expressions are of
    ``expression_kind``."""

    def uniform(low, high, *size):
        return low + (high - low) * torch.rand(*size, generator=generator)

    def normal(std, size):
        return std * torch.randn(batch, size, generator=generator)

    limits = torch.tensor([options.pitch, options.yaw, options.roll]).deg2rad()
    rotation = uniform(-1, 1, batch, 3) * limits
    if options.yaw_min > 0:  # magnitude in [yaw_min, yaw], the side kept
        low = math.radians(options.yaw_min)
        rotation[:, 1] = rotation[:, 1].sign() * (low + rotation[:, 1].abs() / limits[1] * (limits[1] - low))
    translation = torch.cat([normal(options.translation_xy, 2), normal(options.translation_z, 1)], 1)
    ambient = uniform(*options.ambient, batch, 1) * uniform(
        0.9, 1.1, batch, 3
    )  # intensity and tint per channel
    direction = torch.nn.functional.normalize(torch.randn(batch, 3, generator=generator), dim=1)
    direction[:, 2] = -direction[:, 2].abs()  # light from the camera's side (normals facing it have z < 0)
    strength = uniform(0, options.directional, batch, 1)
    light = ambient_sh(batch).reshape(batch, 3, 9) * ambient[:, :, None]
    first_band = strength * direction[:, [1, 2, 0]]  # SH order y, z, x
    light[:, :, 1:4] = light[:, :, :1] * first_band[:, None, :]
    light[:, :, 4:] = light[:, :, :1] * 0.05 * torch.randn(batch, 1, 5, generator=generator)
    shape = normal(options.shape, layout.shape)  # drawn first: the same faces as before for PCA models
    if expression_kind == "blendshape":
        active = torch.rand(batch, layout.expression, generator=generator) < BLENDSHAPE_ACTIVE
        expression = active * uniform(0, min(options.expression, 1.0), batch, layout.expression)
    else:
        expression = normal(options.expression, layout.expression)
    return FaceCode(
        rotation,
        translation,
        shape,
        expression,
        normal(options.albedo, layout.albedo),
        light.reshape(batch, -1),
    )


class RandomSkinAlbedo(torch.nn.Module):
    """Albedo for models without an albedo basis: a skin tone per face (blend of a light and a dark tone set by
    the first coefficient) with smooth variation over the face from the next six."""

    rank = 7

    def __init__(self, model: MorphableModel) -> None:
        super().__init__()
        positions = model.mean - model.mean.mean(0)
        self.register_buffer("positions", positions / positions.abs().max(), persistent=False)

    def forward(self, coefficients: Tensor) -> Tensor:
        light, dark = torch.tensor([0.92, 0.72, 0.6]), torch.tensor([0.45, 0.3, 0.22])
        blend = torch.sigmoid(coefficients[:, :1]).to(self.positions)[:, None]  # (B, 1, 1)
        tone = light.to(blend) * (1 - blend) + dark.to(blend) * blend
        waves = torch.cos(3 * self.positions @ coefficients[:, 1:4].T.to(self.positions))  # (V, B)
        variation = 0.05 * waves.T[..., None] * torch.tanh(coefficients[:, 4:7]).to(blend)[:, None]
        return (tone + variation).clamp(0, 1)


def smooth_backgrounds(batch: int, size: int, generator: torch.Generator) -> Tensor:
    """(B, 3, size, size) random smooth colour fields in [0, 1]."""
    coarse = torch.rand(batch, 3, 4, 4, generator=generator)
    field = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    return (field + 0.03 * torch.randn(batch, 3, size, size, generator=generator)).clamp(0, 1)


@dataclass
class SynthJob:
    """One ``facegen synth`` run; faces are framed by the camera's field of view ``fov`` (degrees) and ``fill``
    (:mod:`facegen.geometry.framing`)."""

    model: str
    out: Path
    n: int
    samples_per_shard: int = 1000
    seed: int = 0
    batch_size: int = 64
    options: SynthOptions = field(default_factory=SynthOptions)
    progress: bool = True
    fov: float = DEFAULT_FOV
    fill: float = DEFAULT_FILL

    def __post_init__(self) -> None:
        if self.options.size is None:
            self.options = replace(self.options, size=DEFAULT_SIZE)

    def signature(self) -> dict:
        """What the shards depend on; a folder of shards with another signature is not resumed."""
        signature = {
            "model": str(self.model),
            "seed": self.seed,
            "samples_per_shard": self.samples_per_shard,
            "options": asdict(self.options),
        }
        if (self.fov, self.fill) != (
            DEFAULT_FOV,
            DEFAULT_FILL,
        ):  # absent when default: older shards stay valid
            signature["framing"] = {"fov": self.fov, "fill": self.fill}
        return signature

    def run(self) -> dict:
        started = time.perf_counter()
        self.out = Path(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        records, todo = plan_shards(self.out, self.n, self.samples_per_shard, self.signature())
        renderer = self.renderer()
        face_model, _, layout, _ = renderer
        bar = tqdm(
            total=self.n,
            initial=sum(r["samples"] for r in records.values()),
            desc="synth",
            unit="face",
            disable=not self.progress,
        )
        for index, start, stop in todo:
            generator = torch.Generator().manual_seed(
                int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0])
            )
            with ShardWriter(shard_path(self.out, index), {"signature": self.signature()}) as writer:
                for first in range(start, stop, self.batch_size):
                    count = min(self.batch_size, stop - first)
                    for sample in self.render_batch(renderer, first, count, generator):
                        writer.write(sample)
                    bar.update(count)
            records[index] = writer.record
        bar.close()
        manifest = {
            "version": 1,
            "kind": "synth",
            "options": self.signature(),
            "model": face_model.name,
            "face_model": {"name": face_model.name, "sha256": face_model.checksum()},
            "image_size": self.options.size,
            "framing": {"fov": self.fov, "fill": self.fill},
            "layout": layout.sizes(),
            "faces": self.n,
            "shards": [
                {"file": shard_path(self.out, i).name, "samples": records[i]["samples"]}
                for i in sorted(records)
            ],
            "seconds_this_run": round(time.perf_counter() - started, 2),
        }
        write_json_atomic(self.out / "manifest.json", manifest)
        return manifest

    def renderer(self) -> tuple[MorphableModel, FaceDecoder, CodeLayout, Tensor]:
        """What renders this job's faces: the face model, its decoder at the job's size and framing (random skin
        albedo for models without an albedo basis), the code layout and the face-region flags of the triangles."""
        face_model = load_face_model(self.model)
        albedo = None if face_model.has_albedo else RandomSkinAlbedo(face_model)
        decoder = FaceDecoder(face_model, (self.options.size,) * 2, self.fov, self.fill, albedo=albedo)
        return face_model, decoder, decoder.layout(), _face_region(face_model)

    @torch.no_grad()
    def render_batch(self, renderer, first: int, count: int, generator: torch.Generator) -> list[dict]:
        """``count`` new faces drawn with ``generator`` as encoded samples (what a shard holds), keyed from
        ``first``; ``renderer``: :meth:`renderer`."""
        face_model, decoder, layout, face_flags = renderer
        options = self.options
        code = sample_code(layout, count, options, generator, face_model.expression_kind)
        decoded = decoder(code)
        background = (
            smooth_backgrounds(count, options.size, generator)
            if options.background == "smooth"
            else torch.rand(count, 3, 1, 1, generator=generator).expand(-1, -1, options.size, options.size)
        )
        output = decoder.render(decoded, code.light, background=background)
        images = (output.image.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
        faces = output.fragments.pix_to_face
        in_face = torch.where(faces >= 0, face_flags[faces.clamp(min=0) % face_flags.numel()], False)
        masks = (in_face.byte() * 255).numpy()
        samples = []
        for i in range(count):
            landmarks = decoded.landmarks[i].numpy()
            params = {part: value[i].numpy() for part, value in code.to_dict().items()}
            params["focal"] = decoded.K[i, 0, 0].reshape(1).numpy()
            x0, y0 = landmarks.min(0)
            x1, y1 = landmarks.max(0)
            meta = {
                "source": f"synth:{self.model}",
                "model": decoder.model.name,
                "index": first + i,
                "seed": self.seed,
                "detector": "synth",
                "score": 1.0,
                "face_index": 0,
                "bbox": [round(float(v), 2) for v in (x0, y0, x1, y1)],
                "fov": decoder.fov,
                "transform": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
                "photo_size": [options.size] * 2,
            }
            samples.append(
                encode_sample(
                    f"synth_{first + i:08d}",
                    encode_image(images[i], "jpg"),
                    landmarks,
                    meta,
                    mask=encode_image(masks[i], "png"),
                    params=params,
                )
            )
        return samples


def _face_region(model: MorphableModel) -> Tensor:
    """(F,) bool: triangles whose three vertices are in the model's ``face`` mask (all when it has none)."""
    if "face" not in model.mask_names:
        return torch.ones(model.num_faces, dtype=torch.bool)
    return model.mask("face")[model.faces].all(1)
