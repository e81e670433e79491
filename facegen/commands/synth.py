"""``facegen synth``: render random faces of a face model into WebDataset shards with ground truth."""

from __future__ import annotations

import json
import sys

from jsonargparse import ArgumentParser

HELP = "render random faces of a face model into shards with their ground-truth code"


def build_parser() -> ArgumentParser:
    from facegen.data.synth import SynthOptions

    parser = ArgumentParser(
        prog="facegen synth",
        description=HELP + ". Same sample keys as `facegen prepare`, plus params.npz. Rerun to resume.",
    )
    parser.add_argument(
        "--model", type=str, default="builtin", help="'builtin' or a canonical face model .npz"
    )
    parser.add_argument("--out", type=str, required=True, help="output folder for shards and manifest.json")
    parser.add_argument("--n", type=int, required=True, help="number of faces")
    parser.add_argument("--samples-per-shard", "--samples_per_shard", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="shard i is drawn from the seed (seed, i)")
    parser.add_argument("--batch-size", "--batch_size", type=int, default=64, help="faces rendered at once")
    parser.add_argument("--options", type=SynthOptions, default=SynthOptions(), help="face distributions")
    parser.add_argument("--progress", type=bool, default=True)
    return parser


def run(argv: list[str]) -> int:
    from facegen.data.synth import SynthJob
    from facegen.morphable.model import ModelFileError

    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("n", "samples_per_shard", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    options = parser.instantiate_classes(args).options
    job = SynthJob(
        args.model,
        args.out,
        args.n,
        args.samples_per_shard,
        args.seed,
        args.batch_size,
        options,
        args.progress,
    )
    try:
        manifest = job.run()
    except (FileNotFoundError, FileExistsError, ModelFileError) as error:
        print(f"facegen synth: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"faces": manifest["faces"], "shards": len(manifest["shards"]), "out": str(job.out)}))
    return 0
