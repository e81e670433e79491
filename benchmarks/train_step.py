"""One MoFA training step split into its parts: data (decode + collate + augmentation of one batch, in this
process), encoder forward + backward, and decoder + render + losses (forward + backward down to the code).

Target (issue 6): decoder + render + losses at most 30% of the encoder's forward + backward at batch 32, 224²,
on CPU. On a CUDA GPU it also reports whole-step images/s with bf16 autocast (batch 64 by default there).
Prints one JSON object per configuration. Everything is measured side by side in this process, on synthetic
shards rendered here. Examples:

    python benchmarks/train_step.py                                  # CPU, batch 32, 224², points and raster
    python benchmarks/train_step.py --device cuda --batch 64 --bf16
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from facegen.data import FaceDataModule, SynthOptions
from facegen.data.batch import FaceBatch
from facegen.data.synth import SynthJob
from facegen.tasks import MoFA


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(function, device: str, repeats: int) -> float:
    """Median seconds of ``function()`` over ``repeats`` runs after one warm-up run."""
    function()
    synchronize(device)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def data_module(folder: Path, batch: int, size: int) -> FaceDataModule:
    SynthJob(
        "builtin", folder, batch, samples_per_shard=batch, options=SynthOptions(size=size), progress=False
    ).run()
    module = FaceDataModule(
        train=str(folder),
        batch_size=batch,
        num_workers=0,
        image_size=size,
        augment={"flip": 0.5, "rotate": 5.0},
    )
    module.setup("fit")
    return module


def measure(args, photometric: str, module: FaceDataModule) -> dict:
    device = args.device
    model = MoFA(image_size=args.size, depths=tuple(args.depths), width=args.width, photometric=photometric)
    model.to(device).train()
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=args.bf16)

    def next_batch() -> FaceBatch:
        batch = next(iter(module.train_dataloader()))
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        return module.on_after_batch_transfer(batch, 0)

    batch = next_batch()

    def encoder_step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast:
            output = model.encoder(batch.image)
        output.float().sum().backward()

    code_values = model.encoder(batch.image).detach()

    def decoder_step() -> None:
        code = model.layout.split(code_values.clone().requires_grad_(True))
        with autocast:
            terms = model.loss_terms(batch, code)
        model._total(terms).backward()

    def whole_step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast:
            terms = model.loss_terms(batch, model(batch.image))
        model._total(terms).backward()

    row = {
        "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu x{torch.get_num_threads()}",
        "photometric": photometric,
        "batch": args.batch,
        "size": args.size,
        "bf16": args.bf16,
        "encoder": f"resnet depths {args.depths} width {args.width}",
        "data_s": timed(next_batch, device, args.repeats),
        "encoder_forward_backward_s": timed(encoder_step, device, args.repeats),
        "decoder_render_losses_s": timed(decoder_step, device, args.repeats),
        "whole_step_s": timed(whole_step, device, args.repeats),
    }
    row["decoder_over_encoder"] = row["decoder_render_losses_s"] / row["encoder_forward_backward_s"]
    row["images_per_s"] = args.batch / row["whole_step_s"]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 2, 2, 2], help="ResNet-18 by default")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--photometric", nargs="+", default=["points", "raster"])
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        module = data_module(Path(folder), args.batch, args.size)
        for photometric in args.photometric:
            print(json.dumps(measure(args, photometric, module)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
