"""Hostile and foreign StyleGAN2 files: a pickle whose code would create a file (refused, never run), a
persistence record with code in its source (read as data), truncated files, StyleGAN3 and conditional networks,
contradicting sizes, torch files of other things: each one line naming what was found."""

from __future__ import annotations

import pickle

import pytest
import torch

from facegen.cli import main
from facegen.errors import BadFileError, UnsafeFileError
from facegen.nets.gan_import import read_gan
from facegen.nets.stylegan import Discriminator, Generator
from tests.gan_files import EasyDict, Persistent, nvidia_names, randomised, record, write_network_pickle

SIZES = {"channel_base": 256, "channel_max": 32}


@pytest.fixture(scope="module")
def networks():
    generator = randomised(Generator(16, 3, 16, 16, 2, **SIZES), 0)
    return generator, randomised(Discriminator(16, 3, **SIZES), 1)


@pytest.fixture(scope="module")
def network_pickle(tmp_path_factory, networks):
    return write_network_pickle(tmp_path_factory.mktemp("gan") / "network-snapshot.pkl", *networks)


def test_a_pickle_with_code_is_refused_and_its_code_never_runs(tmp_path, networks):
    marker = tmp_path / "pwned"
    source = f"open({str(marker)!r}, 'w').write('ran')"

    class RunsCode:
        def __reduce__(self):
            return (exec, (source,))

    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(pickle.dumps({"G": RunsCode()}))
    with pytest.raises(UnsafeFileError, match="builtins.exec"):
        read_gan(hostile)
    assert main(["gan", "import", "--source", str(hostile), "--out", str(tmp_path / "x.pt")]) == 2
    assert not marker.exists() and not (tmp_path / "x.pt").exists()

    # a persistence record whose module source would create the file: read as data, the source never runs
    generator, discriminator = networks
    with nvidia_names():
        trojan = record(generator, "Generator")
        trojan.meta["module_src"] = source
    path = write_network_pickle(tmp_path / "trojan.pkl", generator, discriminator, G=trojan, G_ema=trojan)
    gan = read_gan(path)
    assert not marker.exists()
    assert torch.equal(gan.states["G"]["synthesis.b4.const"], generator.synthesis.b4.const)


def test_truncated_and_foreign_files_get_one_line_errors(tmp_path, network_pickle, networks, capsys):
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(network_pickle.read_bytes()[: network_pickle.stat().st_size // 2])
    with pytest.raises(BadFileError, match="truncated.pkl: not a readable pickle"):
        read_gan(truncated)
    assert main(["gan", "info", str(truncated)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "truncated.pkl" in err

    generator, discriminator = networks
    with nvidia_names():  # StyleGAN3 config-t: a synthesis network of an input layer and L0_... layers
        layers = {
            "input": record(torch.nn.Linear(2, 2), "SynthesisInput"),
            "L0_36_512": record(torch.nn.Linear(2, 2)),
        }
        synthesis = Persistent("SynthesisNetwork", {"_modules": layers, "_parameters": {}, "_buffers": {}})
        stylegan3 = record(generator, "Generator", {"c_dim": 0}, synthesis=synthesis)
    path = write_network_pickle(
        tmp_path / "stylegan3-t.pkl", generator, discriminator, G=stylegan3, G_ema=stylegan3
    )
    with pytest.raises(BadFileError, match="StyleGAN3 generator"):
        read_gan(path)

    with nvidia_names():  # a conditional network
        conditional = record(generator, "Generator", {"c_dim": 10, "img_resolution": 16})
    path = write_network_pickle(
        tmp_path / "cond.pkl", generator, discriminator, G=conditional, G_ema=conditional
    )
    with pytest.raises(BadFileError, match="conditional generator"):
        read_gan(path)

    with nvidia_names():  # recorded sizes that contradict the tensors
        liar = record(generator, "Generator", {"img_resolution": 1024})
    path = write_network_pickle(tmp_path / "liar.pkl", generator, discriminator, G=liar, G_ema=liar)
    with pytest.raises(BadFileError, match="img_resolution=1024 but its tensors say 16"):
        read_gan(path)

    with nvidia_names():
        path = tmp_path / "empty.pkl"
        path.write_bytes(pickle.dumps({"training_set_kwargs": EasyDict(path="x")}))
    with pytest.raises(BadFileError, match="no G, G_ema or D network"):
        read_gan(path)
    torch.save({"model": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(BadFileError, match="without StyleGAN2 networks"):
        read_gan(tmp_path / "other.pt")
    torch.save(
        {"g_ema": {"style.1.weight": torch.zeros(2, 2), "mystery": torch.zeros(1)}}, tmp_path / "odd.pt"
    )
    with pytest.raises(BadFileError, match="unexpected tensor mystery"):
        read_gan(tmp_path / "odd.pt")
    assert main(["gan", "info", str(tmp_path / "missing.pkl")]) == 2
    assert "does not exist" in capsys.readouterr().err
