"""Data pipeline speed: the training loader against the raw JPEG-decode rate of the same crops, and
``facegen prepare`` throughput per landmark backend.

Prints one JSON object per measurement (one line each) and a summary line. Everything runs side by side in
this process on data made here (synthetic shards, generated photos), so ratios are comparable. Example:

    python benchmarks/dataloader.py                      # 512 synthetic crops at 224², workers 1 and 2
    python benchmarks/dataloader.py --samples 2048 --workers 1 2 4
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facegen.data.detectors import DetectorUnavailable
from facegen.data.prepare import PrepareJob
from facegen.data.streams import ShardStream, expand_shards
from facegen.data.synth import SynthJob, SynthOptions


def emit(record: dict) -> dict:
    print(json.dumps(record), flush=True)
    return record


def raw_decode_rate(shards: list[str], repeats: int) -> float:
    """JPEG crops decoded to RGB arrays per second in a plain loop (one process)."""
    jpegs = []
    for shard in shards:
        with tarfile.open(shard) as archive:
            jpegs += [archive.extractfile(m).read() for m in archive.getmembers() if m.name.endswith(".jpg")]
    started = time.perf_counter()
    for _ in range(repeats):
        for data in jpegs:
            with Image.open(io.BytesIO(data)) as image:
                np.asarray(image.convert("RGB"))
    return repeats * len(jpegs) / (time.perf_counter() - started)


def loader_rate(shards: list[str], workers: int, batch_size: int, samples: int, repeats: int) -> float:
    """Training-loader samples per second (decoding, checks, shuffling, collation) with ``workers`` processes."""
    batches = repeats * samples // batch_size
    stream = ShardStream(shards, batch_size, 224, "train", batches_per_rank=batches, shuffle_buffer=256)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers, prefetch_factor=4)
    iterator = iter(loader)
    next(iterator)  # worker start-up is not throughput
    started, count = time.perf_counter(), 0
    for batch in iterator:
        count += batch["image"].shape[0]
    return count / (time.perf_counter() - started)


def prepare_rates(folder: Path, work: Path, backends: list[str]) -> None:
    for backend in backends:
        out = work / f"prepare-{backend}"
        try:
            started = time.perf_counter()
            manifest = PrepareJob(
                str(folder),
                out,
                backend,
                photos_per_shard=1000,
                progress=False,
                use_landmark_files=backend == "files",
            ).run()
            seconds = time.perf_counter() - started
            emit(
                {
                    "measure": "prepare",
                    "backend": backend,
                    "photos": manifest["photos"],
                    "faces": manifest["faces"],
                    "images_per_s": round(manifest["photos"] / seconds, 2),
                }
            )
        except DetectorUnavailable as error:
            emit({"measure": "prepare", "backend": backend, "skipped": str(error).splitlines()[0]})


def photo_folder(folder: Path, shards: list[str], count: int) -> None:
    """Photos for prepare: synthetic renders pasted into larger frames, each with a .pts file."""
    folder.mkdir(parents=True, exist_ok=True)
    stream = ShardStream(shards[:1], count)
    batch = next(iter(stream))
    for i in range(min(count, batch["image"].shape[0])):
        frame = np.full((480, 640, 3), 90, np.uint8)
        frame[100:324, 200:424] = batch["image"][i].permute(1, 2, 0).numpy()
        Image.fromarray(frame).save(folder / f"photo{i:04d}.jpg", quality=92)
        rows = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in batch["landmarks"][i].numpy() + [200, 100])
        (folder / f"photo{i:04d}.pts").write_text(f"version: 1\nn_points: 68\n{{\n{rows}\n}}\n")  # 1-based


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=512, help="synthetic crops in the shards")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="passes over the data per measurement")
    parser.add_argument("--photos", type=int, default=64, help="photos for the prepare measurement")
    parser.add_argument("--backends", nargs="+", default=["files", "mediapipe", "face-alignment"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        SynthJob(
            "builtin",
            work / "synth",
            args.samples,
            samples_per_shard=128,
            options=SynthOptions(size=224),
            progress=False,
        ).run()
        shards = expand_shards(str(work / "synth"))
        decode = emit(
            {"measure": "raw_jpeg_decode", "samples_per_s": round(raw_decode_rate(shards, args.repeats), 1)}
        )
        ratios = {}
        for workers in args.workers:
            rate = loader_rate(shards, workers, args.batch_size, args.samples, args.repeats)
            per_worker = rate / workers
            ratios[workers] = round(per_worker / decode["samples_per_s"], 3)
            emit(
                {
                    "measure": "train_loader",
                    "workers": workers,
                    "samples_per_s": round(rate, 1),
                    "samples_per_s_per_worker": round(per_worker, 1),
                    "ratio_to_raw_decode": ratios[workers],
                }
            )
        photo_folder(work / "photos", shards, args.photos)
        prepare_rates(work / "photos", work, args.backends)
        emit({"summary": "train loader per worker / raw JPEG decode", "ratios": ratios, "target": 0.85})


if __name__ == "__main__":
    main()
