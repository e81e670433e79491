"""Pretrained encoders: state dicts of facegen, torchvision (ImageNet ResNet layout) and timm mapped onto the
backbone, tensors only, and one-line errors for files that do not fit."""

from __future__ import annotations

import pickle

import pytest
import torch

from facegen.nets.encoder import ResNetEncoder
from facegen.tasks import MoFA

SIZE = 32


def torchvision_resnet_state(depths=(2, 2, 2, 2), width=16, seed=0) -> dict[str, torch.Tensor]:
    """A state dict laid out as torchvision's ResNet (BasicBlock), written from its naming, with random values."""
    generator = torch.Generator().manual_seed(seed)
    state = {}

    def conv(name, out_channels, in_channels, k):
        state[f"{name}.weight"] = torch.randn(out_channels, in_channels, k, k, generator=generator)

    def bn(name, channels):
        for part in ("weight", "bias", "running_mean"):
            state[f"{name}.{part}"] = torch.randn(channels, generator=generator)
        state[f"{name}.running_var"] = torch.rand(channels, generator=generator) + 0.5
        state[f"{name}.num_batches_tracked"] = torch.tensor(100)

    conv("conv1", width, 3, 7)
    bn("bn1", width)
    channels = width
    for stage, depth in enumerate(depths, 1):
        out_channels = width * 2 ** (stage - 1)
        for block in range(depth):
            name = f"layer{stage}.{block}"
            conv(f"{name}.conv1", out_channels, channels, 3)
            bn(f"{name}.bn1", out_channels)
            conv(f"{name}.conv2", out_channels, out_channels, 3)
            bn(f"{name}.bn2", out_channels)
            if block == 0 and channels != out_channels:
                conv(f"{name}.downsample.0", out_channels, channels, 1)
                bn(f"{name}.downsample.1", out_channels)
            channels = out_channels
    state["fc.weight"] = torch.randn(1000, channels, generator=generator)
    state["fc.bias"] = torch.randn(1000, generator=generator)
    return state


def test_a_torchvision_resnet_state_dict_starts_the_encoder(tmp_path, caplog):
    state = torchvision_resnet_state()
    torch.save(state, tmp_path / "resnet18.pth")
    with caplog.at_level("INFO"):
        model = MoFA(
            image_size=SIZE, depths=(2, 2, 2, 2), width=16, encoder_weights=str(tmp_path / "resnet18.pth")
        )
    backbone = model.encoder.backbone
    assert torch.equal(backbone.stem[0].weight, state["conv1.weight"])
    assert torch.equal(backbone.stem[1].running_var, state["bn1.running_var"])
    assert torch.equal(backbone.blocks[2].shortcut[0].weight, state["layer2.0.downsample.0.weight"])
    assert torch.equal(backbone.blocks[7].bn2.bias, state["layer4.1.bn2.bias"])
    assert "left out 2 classifier tensors (fc.bias, fc.weight)" in caplog.text
    # the head still starts at the mean face: the untrained code does not depend on the image
    assert torch.equal(model.encoder.head.weight, torch.zeros_like(model.encoder.head.weight))
    # the initial file is not needed to load the trained model: it stays out of the checkpoint's settings
    assert "encoder_weights" not in model.hparams


def test_a_facegen_checkpoint_state_dict_starts_another_encoder(tmp_path):
    source = MoFA(image_size=SIZE, depths=(1, 1), width=8)
    torch.save({"state_dict": source.state_dict()}, tmp_path / "mofa.ckpt")
    model = MoFA(image_size=SIZE, depths=(1, 1), width=8, encoder_weights=str(tmp_path / "mofa.ckpt"))
    for mine, theirs in zip(
        model.encoder.backbone.parameters(), source.encoder.backbone.parameters(), strict=True
    ):
        assert torch.equal(mine, theirs)


def test_weights_that_do_not_fit_or_run_code_are_one_line_errors(tmp_path):
    state = torchvision_resnet_state(depths=(2, 2, 2, 2), width=16)
    torch.save(state, tmp_path / "resnet18.pth")
    with pytest.raises(ValueError, match=r"does not fit the encoder: .*wrong shape"):
        MoFA(image_size=SIZE, depths=(2, 2, 2, 2), width=8, encoder_weights=str(tmp_path / "resnet18.pth"))
    with pytest.raises(ValueError, match=r"does not fit the encoder: unexpected 48 \(layer1\.1\."):
        MoFA(image_size=SIZE, depths=(1, 1, 1, 1), width=16, encoder_weights=str(tmp_path / "resnet18.pth"))

    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"conv1.weight": Payload()}))
    with pytest.raises(ValueError, match="evil.pth: not a readable state dict of tensors"):
        MoFA(image_size=SIZE, encoder_weights=str(tmp_path / "evil.pth"))
    with pytest.raises(ValueError, match="does not exist"):
        MoFA(image_size=SIZE, encoder_weights=str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="pretrained applies to timm backbones"):
        MoFA(image_size=SIZE, pretrained=True)


def test_a_run_started_from_a_state_dict_trains(tmp_path, tiny_shards):
    from facegen.cli import main
    from tests.test_mofa import SIZE as MOFA_SIZE
    from tests.test_mofa import tiny_config

    source = MoFA(image_size=MOFA_SIZE, depths=(1, 1), width=8)
    torch.save(source.state_dict(), tmp_path / "start.pt")
    config = tiny_config(tmp_path / "run", tiny_shards, max_steps=2)
    assert (
        main(
            ["fit", "--config", str(config), "--model.init_args.encoder_weights", str(tmp_path / "start.pt")]
        )
        == 0
    )
    (checkpoint,) = (tmp_path / "run" / "checkpoints").glob("last.ckpt")
    (tmp_path / "start.pt").unlink()
    trained = MoFA.load_from_checkpoint(checkpoint, map_location="cpu")  # the initial file is not needed here
    assert not torch.equal(trained.encoder.head.weight, source.encoder.head.weight)  # it trained


@pytest.mark.parametrize("stem_pool", [True, False])
def test_inference_with_folded_batch_norms_gives_the_training_paths_output(stem_pool):
    torch.manual_seed(0)
    encoder = ResNetEncoder((1, 1), width=8, grid=2, stem_pool=stem_pool)
    # without the stem's max pool every stage sees twice the resolution: 32² -> 8x8 after two stages, not 4x4
    side = 8 if not stem_pool else 4
    assert encoder.blocks(encoder.stem(torch.rand(1, 3, 32, 32))).shape[-2:] == (side, side)
    norms = [m for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:  # non-trivial statistics
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.5, 2.0)
        torch.nn.init.normal_(norm.weight)
        torch.nn.init.normal_(norm.bias)
    encoder.eval()
    image = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        inferred = encoder(image)  # channels-last, batch norms folded into the convolutions
    assert torch.allclose(encoder(image), inferred, atol=1e-4)  # with gradients: the modules as trained
    folded = encoder._folded()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert encoder._folded() is folded  # cached while the weights stay
    with torch.no_grad():
        encoder.stem[0].weight.mul_(2)  # a training step, loaded weights: the folded copy follows
        changed = encoder(image)
    assert encoder._folded() is not folded
    assert torch.allclose(encoder(image), changed, atol=1e-4)
    assert not torch.allclose(changed, inferred, atol=1e-3)
    assert "_inference" not in str(list(encoder.state_dict()))


def test_the_mofa_config_chooses_the_stem_pooling():
    """model.init_args.stem_pool reaches the encoder: without the max pool no MaxPool2d is left, and the code
    comes out of the finer features."""
    for stem_pool in (True, False):
        model = MoFA(image_size=SIZE, depths=(1, 1), width=8, grid=2, stem_pool=stem_pool)
        pools = [m for m in model.encoder.modules() if isinstance(m, torch.nn.MaxPool2d)]
        assert len(pools) == int(stem_pool)
        code = model(torch.rand(2, 3, SIZE, SIZE))
        assert code.shape.shape == (2, model.layout.shape) and torch.isfinite(code.flatten()).all()
