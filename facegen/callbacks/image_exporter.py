"""``ImageExporter``: the prediction writer of :class:`~facegen.tasks.ImageGAN`: ``seed_<n>.png`` per generated
image (existing ones kept unless ``overwrite``) and ``summary.json`` (seeds written, truncation, time)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

from facegen.atomic import write_text_atomic
from facegen.export.files import write_png_atomic
from facegen.export.pictures import to_uint8
from facegen.predictions import GeneratedImages


class ImageExporter(BasePredictionWriter):
    """Writes ``out/seed_<n>.png`` for every image of each :class:`GeneratedImages`."""

    def __init__(self, out: str, overwrite: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.out, self.overwrite = Path(out), overwrite
        self.written: list[int] = []
        self.existing: list[int] = []
        self.truncation: float | None = None
        self._started = time.perf_counter()

    def on_predict_start(self, trainer, pl_module) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.written, self.existing, self._started = [], [], time.perf_counter()

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ):
        self.write(prediction)

    def write(self, prediction: GeneratedImages) -> None:
        """Write each image as ``seed_<n>.png`` (6-digit seed)."""
        self.truncation = prediction.truncation
        for seed, image in zip(prediction.seeds, prediction.image, strict=True):
            path = self.out / f"seed_{seed:06d}.png"
            if path.exists() and not self.overwrite:
                self.existing.append(seed)
                continue
            picture = to_uint8(image if image.shape[0] == 3 else image[:1].expand(3, -1, -1))
            write_png_atomic(path, picture)
            self.written.append(seed)

    def on_predict_end(self, trainer, pl_module) -> None:
        seconds = time.perf_counter() - self._started
        summary = {
            "out": str(self.out),
            "written": self.written,
            "already_there": self.existing,
            "truncation": self.truncation,
            "seconds": round(seconds, 2),
        }
        write_text_atomic(self.out / "summary.json", json.dumps(summary, indent=1))
        rank_zero_info(
            f"facegen predict: {len(self.written)} images written to {self.out}, {len(self.existing)} already there"
        )
