"""Data pipeline speed: the training loader against the raw JPEG-decode rate of the same crops, and
``facegen prepare`` throughput per landmark backend.

Prints one JSON object per measurement (one line each) and a summary line. Everything runs side by side in
this process on data made here (synthetic shards, generated photos), so ratios are comparable. Example:

    python benchmarks/dataloader.py                      # 512 synthetic crops at 224², workers 1 and 2
    python benchmarks/dataloader.py --samples 2048 --workers 1 2 4
    python benchmarks/dataloader.py --workers 1 --backends files --compare-decoders
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from facegen.data.detection.detectors import DetectorUnavailable
from facegen.data.prepare import PrepareJob
from facegen.data.streams import ShardStream, expand_shards
from facegen.data.synth import SynthJob, SynthOptions


def emit(record: dict) -> dict:
    print(json.dumps(record), flush=True)
    return record


def raw_decode_rate(shards: list[str], repeats: int, decoder: str) -> float:
    """JPEG crops decoded to RGB arrays per second in a plain loop (one process), with ``decoder``: ``opencv``
    (``cv2.imdecode`` + BGR -> RGB, the loader's decoder) or ``pil`` (``Image.open`` + ``convert("RGB")``)."""
    jpegs = []
    for shard in shards:
        with tarfile.open(shard) as archive:
            jpegs += [archive.extractfile(m).read() for m in archive.getmembers() if m.name.endswith(".jpg")]
    started = time.perf_counter()
    for _ in range(repeats):
        for data in jpegs:
            if decoder == "opencv":
                cv2.cvtColor(
                    cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB
                )
            else:
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


def compare_decoders(shards: list[str], batch_size: int, samples: int, rounds: int = 3) -> None:
    """The stream (in this process, and through one worker) with PIL's and with OpenCV's image decoding swapped
    in, alternating ``rounds`` times: the decoder's share of the loader, side by side."""
    from facegen.data import sample

    fast = sample._decode_pixels

    def pil(data: bytes, grey: bool) -> np.ndarray:
        return np.asarray(sample._open_image(data, "L" if grey else "RGB"))

    def in_process() -> float:
        stream = ShardStream(shards, batch_size, 224, "train", batches_per_rank=samples // batch_size)
        started, count = time.perf_counter(), 0
        for batch in stream:
            count += batch["image"].shape[0]
        return count / (time.perf_counter() - started)

    rates: dict[str, dict[str, list[float]]] = {"in_process": {}, "one_worker": {}}
    try:
        for _ in range(rounds):
            for name, decode in (("pil", pil), ("opencv", fast)):
                sample._decode_pixels = decode
                rates["in_process"].setdefault(name, []).append(round(in_process(), 1))
                one = loader_rate(shards, 1, batch_size, samples, 1)
                rates["one_worker"].setdefault(name, []).append(round(one, 1))
    finally:
        sample._decode_pixels = fast
    for where, found in rates.items():
        speedup = float(np.median(found["opencv"]) / np.median(found["pil"]))
        emit(
            {
                "measure": "decoder_side_by_side",
                "where": where,
                "samples_per_s": found,
                "speedup": round(speedup, 2),
            }
        )


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
    parser.add_argument(
        "--compare-decoders", action="store_true", help="also PIL against OpenCV decoding, side by side"
    )
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
        rates = {decoder: raw_decode_rate(shards, args.repeats, decoder) for decoder in ("opencv", "pil")}
        for decoder, rate in rates.items():
            emit({"measure": "raw_jpeg_decode", "decoder": decoder, "samples_per_s": round(rate, 1)})
        ratios, pil_ratios = {}, {}
        for workers in args.workers:
            rate = loader_rate(shards, workers, args.batch_size, args.samples, args.repeats)
            per_worker = rate / workers
            ratios[workers] = round(per_worker / rates["opencv"], 3)
            pil_ratios[workers] = round(per_worker / rates["pil"], 3)
            emit(
                {
                    "measure": "train_loader",
                    "workers": workers,
                    "samples_per_s": round(rate, 1),
                    "samples_per_s_per_worker": round(per_worker, 1),
                    "ratio_to_raw_decode": ratios[workers],
                    "ratio_to_raw_pil_decode": pil_ratios[workers],
                }
            )
        if args.compare_decoders:
            compare_decoders(shards, args.batch_size, args.samples)
        photo_folder(work / "photos", shards, args.photos)
        prepare_rates(work / "photos", work, args.backends)
        emit(
            {
                "summary": "train loader per worker / raw JPEG decode with the same decoder (OpenCV)",
                "ratios": ratios,
                "ratios_to_pil": pil_ratios,
                "target": 0.85,
            }
        )


if __name__ == "__main__":
    main()
