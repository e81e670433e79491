"""Helpers for the data tests: tiny synthetic shards and photos with known landmarks."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from facegen.data.sample import encode_image, encode_sample
from facegen.data.shards import ShardWriter


def face_photo(size: tuple[int, int], landmarks: np.ndarray, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 noise photo with a bright 3x3 dot at each landmark (to check where crops put them)."""
    rng = np.random.default_rng(seed)
    image = (rng.random((*size, 3)) * 60).astype(np.uint8)
    for x, y in np.round(landmarks).astype(int):
        image[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] = 255
    return image


def template_landmarks(scale: float, offset: tuple[float, float], angle: float = 0.0) -> np.ndarray:
    """The crop template moved by a similarity (for photos whose landmarks are known)."""
    from facegen.data.alignment import crop_template

    template = crop_template(224, 0.55) - 111.5
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return template @ rotation.T * scale + np.asarray(offset)


def write_shard(path: Path, samples: list[dict]) -> None:
    with ShardWriter(path) as writer:
        for sample in samples:
            writer.write(sample)


def good_sample(key: str, size: int = 32, value: int = 128) -> dict:
    image = np.full((size, size, 3), value, np.uint8)
    landmarks = np.random.default_rng(abs(hash(key)) % 2**32).random((68, 2)).astype(np.float32) * (size - 1)
    return encode_sample(key, encode_image(image, "png"), landmarks, {"source": key}, image_format="png")


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def write_raw_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    """A tar file with members named exactly as given (``ShardWriter`` refuses unsafe keys; hostile shards don't)."""
    import tarfile

    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def sample_members(key: str, sample: dict) -> list[tuple[str, bytes]]:
    """Tar members of an encoded ``sample`` under the (possibly hostile) ``key``."""
    return [
        (f"{key}.{name}", value.encode() if isinstance(value, str) else value)
        for name, value in sample.items()
        if name != "__key__"
    ]


def face_batch(image, landmarks, mask=None, params=None):
    """A :class:`FaceBatch` of hand-made tensors: keys ``face0``, ``face1``, ...; a full mask unless given."""
    import torch

    from facegen.data.batch import FaceBatch

    count = image.shape[0]
    mask = torch.ones(count, 1, *image.shape[-2:]) if mask is None else mask
    return FaceBatch(
        image, landmarks, mask, [f"face{i}" for i in range(count)], [{} for _ in range(count)], params
    )


def cpu_config(path: Path, out: Path, **trainer) -> dict:
    """A shipped config (YAML at ``path``) with its trainer shrunk to a few CPU steps (6, validation every 2;
    ``trainer`` overrides) writing under ``out``."""
    import yaml

    config = yaml.safe_load(Path(path).read_text())
    init = (config.get("model") or {}).get("init_args") or {}
    if isinstance(init.get("fit"), str):  # a preset, named relative to the shipped config: read in
        init["fit"] = yaml.safe_load((Path(path).parent / init["fit"]).read_text())
    settings = dict(
        max_steps=6,
        val_check_interval=2,
        log_every_n_steps=1,
        enable_progress_bar=False,
        default_root_dir=str(out),
        accelerator="cpu",
    )
    config["trainer"].update({**settings, **trainer})
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(out / "runs")
    return config


def undecodable_shard(path: Path, count: int) -> Path:
    """A shard of ``count`` samples whose images do not decode (each a bad sample, the file itself sound)."""
    bad = []
    for i in range(count):
        sample = good_sample(f"b{i}")
        sample["png"] = b"not an image"
        bad.append(sample)
    write_shard(path, bad)
    return path
