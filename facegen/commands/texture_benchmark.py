"""Texture reconstruction scores for ``facegen evaluate texture``: what a texture model's ``facegen predict`` wrote
per photo (``fit.json``: PSNR, SSIM and L1 of the render against the photo on visible face pixels, and LPIPS when
the texture model's ``latent_fit.lpips`` names its files) and, with a
face-recognition network you give (TorchScript; none is bundled), the cosine similarity of the identity
embeddings of the photo crop and the render (both taken from ``side_by_side.png``: photo | render | views)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facegen.errors import ConfigError
from facegen.evaluation.features import TorchScriptFeatures

#: Per-photo metrics of ``fit.json`` that are summarised (``lpips`` when it was measured).
METRICS = ("psnr", "ssim", "l1", "lpips")


def _photo_and_render(path: Path) -> torch.Tensor:
    """(2, 3, S, S) in [0, 1]: the photo crop and the render of a ``side_by_side.png``."""
    picture = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
    size = picture.shape[0]
    cells = [picture[:, i * size : (i + 1) * size] for i in range(2)]
    return torch.from_numpy(np.stack(cells)).permute(0, 3, 1, 2)


def score_textures(predictions: Path, identity: str | None) -> tuple[list[dict], list[dict]]:
    """Per-face results (``fit.json``'s metrics, ``identity_cosine`` with ``identity``) and the photos
    ``facegen predict`` rejected."""
    if identity is not None and not Path(identity).is_file():
        raise ConfigError(
            f"--identity {identity} does not exist; give a TorchScript face-recognition network"
        )
    network = TorchScriptFeatures(identity) if identity else None
    results = []
    for path in sorted(predictions.glob("*/fit.json")):
        record = json.loads(path.read_text())
        result = {
            "item": path.parent.name,
            **{name: float(record[name]) for name in METRICS if name in record},
        }
        if network is not None:
            with torch.no_grad():
                embeddings = torch.nn.functional.normalize(
                    network(_photo_and_render(path.parent / "side_by_side.png"))
                )
            result["identity_cosine"] = float((embeddings[0] * embeddings[1]).sum())
        results.append(result)
    summary_path = predictions / "summary.json"
    rejected = json.loads(summary_path.read_text()).get("rejected", []) if summary_path.is_file() else []
    failures = [{"item": r.get("photo"), "reason": r.get("reason")} for r in rejected]
    return results, failures


def summarise_textures(results: list[dict], failures: list[dict]) -> dict:
    """Means of the per-face metrics (and identity similarity when measured)."""
    summary: dict = {"found": len(results), "failures": len(failures)}
    for name in (*METRICS, "identity_cosine"):
        values = [r[name] for r in results if name in r]
        if values:
            summary[name] = float(np.mean(values))
    return summary
