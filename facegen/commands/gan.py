"""``facegen gan``: import pretrained StyleGAN2 networks (NVIDIA network pickles read as data, stylegan2-pytorch
checkpoints) into facegen's GAN file, and describe such files. Bad files raise facegen's user errors, which
``facegen`` prints as one line."""

from __future__ import annotations

import json
from pathlib import Path

from jsonargparse import ArgumentParser

from facegen.errors import ConfigError

HELP = "import and describe pretrained StyleGAN2 networks"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="facegen gan", description=HELP)
    commands = parser.add_subcommands(dest="command")

    imported = ArgumentParser(
        description="Read G, G_ema and D from a StyleGAN2 file without running any code from it and write them as "
        "facegen's GAN file (tensors and sizes only; usable as model.pretrained)."
    )
    imported.add_argument(
        "--source",
        type=str,
        required=True,
        help="NVIDIA network pickle (.pkl, stylegan2-ada-pytorch or stylegan3 --cfg=stylegan2) or a stylegan2-pytorch "
        "checkpoint (.pt)",
    )
    imported.add_argument("--out", type=str, required=True, help="facegen GAN file to write (.pt)")
    imported.add_argument("--overwrite", type=bool, default=False, help="replace --out when it exists")
    commands.add_subcommand("import", imported, help="convert a StyleGAN2 file to facegen's GAN file")

    info = ArgumentParser(
        description="Describe the networks of a StyleGAN2 file (any format `import` reads)."
    )
    info.add_argument("file", type=str, help="StyleGAN2 file")
    commands.add_subcommand("info", info, help="describe a StyleGAN2 file's networks")
    return parser


def run(argv: list[str]) -> int:
    from facegen.nets.gan_import import read_gan, save_gan

    config = build_parser().parse_args(argv)
    options = config[config.command]
    if config.command == "import":
        out = Path(options.out)
        if out.exists() and not options.overwrite:
            raise ConfigError(f"--out {out} exists; pass --overwrite true to replace it")
        if out.resolve() == Path(options.source).resolve():
            raise ConfigError(f"--out {out} is the --source file; write the import elsewhere")
        gan = read_gan(options.source)
        save_gan(gan, out)
        networks = ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in gan.summary()["networks"].items())
        spec = gan.generator or gan.discriminator
        print(f"wrote {out}: {networks} parameters at {spec.resolution}² ({'; '.join(gan.notes)})")
    else:
        print(json.dumps(read_gan(options.file).summary(), indent=1))
    return 0
