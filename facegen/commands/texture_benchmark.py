"""Texture reconstruction scores for ``facegen evaluate texture``: what a texture model's ``facegen predict`` wrote
per photo (``fit.json``: PSNR, SSIM and L1 of the render against the photo on visible face pixels, and LPIPS when
the texture model's ``latent_fit.lpips`` names its files) and the identity similarity of the photo crop and the
render (both taken from ``side_by_side.png``: photo | render | views): by default under dlib's face descriptor
(:mod:`facegen.data.detection.dlib_identity`: cosine similarity and dlib's Euclidean distance), or the cosine
similarity of the embeddings of a TorchScript face-recognition network you give."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facegen.data.detection.dlib_identity import DlibIdentity, ModelMissing
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


def _identity_scorer(identity: str | None):
    """``identity`` (``dlib``, None/``none`` or a TorchScript file) as a function of the (2, 3, S, S) photo and
    render to their identity metrics."""
    if identity in (None, "none"):
        return None
    if identity == "dlib":
        try:
            dlib = DlibIdentity()
        except ModelMissing as error:
            raise ConfigError(f"--identity dlib: {error}; or give --identity none") from None

        def dlib_scores(pair: torch.Tensor) -> dict[str, float]:
            photo, render = ((p.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for p in pair)
            similarity = dlib.similarity(photo, render)
            return {"identity_cosine": similarity.cosine, "identity_distance": similarity.distance}

        return dlib_scores
    if not Path(identity).is_file():
        raise ConfigError(
            f"--identity {identity} does not exist; give dlib, none or a TorchScript face-recognition network"
        )
    network = TorchScriptFeatures(identity)

    def network_scores(pair: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            embeddings = torch.nn.functional.normalize(network(pair))
        return {"identity_cosine": float((embeddings[0] * embeddings[1]).sum())}

    return network_scores


def score_textures(predictions: Path, identity: str | None) -> tuple[list[dict], list[dict]]:
    """Per-face results (``fit.json``'s metrics, the identity metrics under ``identity``: ``dlib``, None/``none``
    or a TorchScript network's file) and the photos ``facegen predict`` rejected."""
    scorer = _identity_scorer(identity)
    results = []
    for path in sorted(predictions.glob("*/fit.json")):
        record = json.loads(path.read_text())
        result = {
            "item": path.parent.name,
            **{name: float(record[name]) for name in METRICS if name in record},
        }
        if scorer is not None:
            result.update(scorer(_photo_and_render(path.parent / "side_by_side.png")))
        results.append(result)
    summary_path = predictions / "summary.json"
    rejected = json.loads(summary_path.read_text()).get("rejected", []) if summary_path.is_file() else []
    failures = [{"item": r.get("photo"), "reason": r.get("reason")} for r in rejected]
    return results, failures


def summarise_textures(results: list[dict], failures: list[dict]) -> dict:
    """Means of the per-face metrics (and identity similarity when measured)."""
    summary: dict = {"found": len(results), "failures": len(failures)}
    for name in (*METRICS, "identity_cosine", "identity_distance"):
        values = [r[name] for r in results if name in r]
        if values:
            summary[name] = float(np.mean(values))
    return summary
