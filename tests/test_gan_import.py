"""Importing pretrained StyleGAN2 networks: NVIDIA network pickles read as data (never executed), stylegan2-pytorch
checkpoints, facegen's GAN file, the ``facegen gan`` command, the 2D generator in ``facegen predict``, and the
hostile or foreign files that must be refused in one line."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from facegen.cli import main
from facegen.nets.gan_import import read_gan, save_gan
from facegen.nets.stylegan import Discriminator, Generator
from tests.conftest import ROOT
from tests.gan_files import (
    randomised,
    rosinality_discriminator,
    rosinality_state,
    write_network_pickle,
)

SIZES = {"channel_base": 256, "channel_max": 32}


@pytest.fixture(scope="module")
def networks():
    generator = randomised(Generator(16, 3, 16, 16, 2, conv_clamp=2.0, **SIZES), 0)
    discriminator = randomised(Discriminator(16, 3, mbstd_group=2, conv_clamp=2.0, **SIZES), 1)
    return generator, discriminator


@pytest.fixture(scope="module")
def network_pickle(tmp_path_factory, networks):
    return write_network_pickle(tmp_path_factory.mktemp("gan") / "network-snapshot.pkl", *networks)


def _same_outputs(generator: Generator, discriminator: Discriminator, gan) -> None:
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(5))
    imported = gan.build_generator()
    for truncation in (1.0, 0.7):
        expected = generator(z, truncation, "const")
        assert torch.equal(imported(z, truncation, "const"), expected)
    images = torch.randn(4, 3, 16, 16)
    assert torch.equal(gan.build_discriminator().eval()(images), discriminator.eval()(images))


def test_a_network_pickle_is_read_as_data_and_reproduces_the_networks(network_pickle, networks):
    for name in ("torch_utils", "torch_utils.persistence", "dnnlib"):
        assert name not in sys.modules
    gan = read_gan(network_pickle)
    generator, discriminator = networks
    assert (
        gan.generator == generator.spec and gan.discriminator == discriminator.spec
    )  # clamp, mbstd group too
    assert set(gan.states) == {"G", "G_ema", "D"}
    assert "torch_utils" not in sys.modules  # nothing from the file was imported or run
    assert any("float32" in note for note in gan.notes)  # the file's fp16 layers
    _same_outputs(generator, discriminator, gan)


def test_gan_import_writes_a_weights_only_file_that_predict_generates_from(
    tmp_path, network_pickle, networks, capsys
):
    out = tmp_path / "models" / "tiny.pt"
    assert main(["gan", "import", "--source", str(network_pickle), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    content = torch.load(out, weights_only=True)  # tensors and plain data only
    assert content["format"] == "facegen-stylegan2" and set(content) >= {"G", "G_ema", "D"}
    _same_outputs(*networks, read_gan(out))
    assert main(["gan", "import", "--source", str(network_pickle), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["gan", "info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["generator"]["resolution"] == 16 and info["discriminator"]["mbstd_group"] == 2

    images = tmp_path / "images"
    args = [
        "predict",
        "--config",
        str(ROOT / "configs" / "stylegan_generate.yaml"),
        "--trainer.accelerator",
        "cpu",
    ]
    args += [
        "--model.init_args.pretrained",
        str(out),
        "--data.init_args.seeds",
        "3,4,3",
        "--out",
        str(images),
    ]
    assert main([*args, "--model.init_args.truncation", "1.0"]) == 0
    written = sorted(p.name for p in images.glob("*.png"))
    assert written == ["seed_000003.png", "seed_000004.png"]
    summary = json.loads((images / "summary.json").read_text())
    assert summary["written"] == [3, 4] and summary["already_there"] == [
        3
    ]  # the repeated seed is not rewritten
    from PIL import Image

    picture = Image.open(images / "seed_000004.png")
    z = torch.randn(16, generator=torch.Generator().manual_seed(4))[None]
    with torch.no_grad():
        expected = ((networks[0](z, 1.0, "const").clamp(-1, 1) + 1) / 2 * 255).round()[0].permute(1, 2, 0)
    expected = expected.numpy()
    np.testing.assert_allclose(np.asarray(picture, dtype=np.float64), expected, atol=1)


def test_a_rosinality_checkpoint_maps_onto_the_same_networks(tmp_path, networks):
    generator, discriminator = networks
    path = tmp_path / "550000.pt"
    torch.save(
        {
            "g_ema": rosinality_state(generator),
            "d": rosinality_discriminator(discriminator),
            "latent_avg": generator.mapping.w_avg.clone(),
            "args": __import__("argparse").Namespace(size=16, n_mlp=2),
        },
        path,
    )
    gan = read_gan(path)
    assert set(gan.states) == {"G_ema", "D"}
    assert gan.generator.conv_clamp is None and gan.discriminator.mbstd_group == 4  # the port's
    spec = generator.spec.__class__(**{**generator.spec.__dict__, "conv_clamp": None})
    unclamped = Generator(**spec.__dict__).eval()
    unclamped.load_state_dict(generator.state_dict())
    z = torch.randn(2, 16)
    assert torch.allclose(gan.build_generator()(z, 0.7, "const"), unclamped(z, 0.7, "const"), atol=1e-6)
    # without latent_avg, w_avg is estimated from the mapping network
    torch.save({"g_ema": rosinality_state(generator)}, path)
    estimated = read_gan(path)
    assert any("latent_avg" in note for note in estimated.notes)
    with torch.no_grad():
        mean_w = generator.mapping(torch.randn(20000, 16)).mean(0)
    assert torch.allclose(estimated.states["G_ema"]["mapping.w_avg"], mean_w, atol=0.05)
    saved = save_gan(estimated, tmp_path / "again.pt")
    assert read_gan(saved).generator == estimated.generator
