"""The adversarial texture model: StyleGAN2 blocks, losses and regularisers, augmentation, KID, the UV unwrap
of synthetic faces, the TextureGAN training step, latent fitting, and the CLI."""

from __future__ import annotations

import math

import pytest
import torch

from facegen.losses.adversarial import discriminator_loss, generator_loss, path_length_penalty, r1_penalty
from facegen.nets.ada import AdaptiveAugment
from facegen.nets.stylegan import Generator

SMALL = {"channel_base": 256, "channel_max": 32}


def tiny_generator(resolution: int = 16) -> Generator:
    return Generator(resolution, 3, z_dim=16, w_dim=16, mapping_layers=2, **SMALL)


def test_r1_is_the_squared_gradient_norm_at_the_real_inputs():
    weight = torch.randn(3, 5, 5, requires_grad=True)
    real = torch.randn(4, 3, 5, 5, requires_grad=True)
    logits = (
        (real * weight).flatten(1).sum(1)
    )  # a linear D: its input gradient is the weight for every sample
    penalty = r1_penalty(logits, real)
    assert torch.allclose(penalty, weight.pow(2).sum())
    penalty.backward()
    assert torch.allclose(weight.grad, 2 * weight)


def test_logistic_losses_match_their_values_and_push_the_right_way():
    zero = torch.zeros(4)
    assert torch.allclose(discriminator_loss(zero, zero), torch.tensor(2 * math.log(2)))
    assert torch.allclose(generator_loss(zero), torch.tensor(math.log(2)))
    confident = discriminator_loss(torch.full((4,), 10.0), torch.full((4,), -10.0))
    assert confident < 1e-3 and generator_loss(torch.full((4,), -10.0)) > 9.9
    fake = torch.zeros(4, requires_grad=True)
    generator_loss(fake).backward()
    assert (fake.grad < 0).all()  # the generator raises D's scores of its samples


def test_path_length_penalty_measures_the_spread_around_the_running_mean():
    generator = tiny_generator()
    ws = generator.ws(torch.randn(4, 16)).detach().requires_grad_()
    images = generator.synthesis(ws)
    torch.manual_seed(1)
    from_zero, mean_length = path_length_penalty(images, ws, torch.zeros(()))
    torch.manual_seed(1)
    from_mean, _ = path_length_penalty(images, ws, mean_length)
    assert torch.allclose(from_zero, from_mean + mean_length**2, rtol=1e-4)  # E[l^2] = Var[l] + E[l]^2
    from_mean.backward()
    assert generator.synthesis.b4.const.grad.abs().sum() > 0


def test_adaptive_augmentation_probability_follows_overfitting():
    augment = AdaptiveAugment(target=0.6, speed_images=64, interval=1)
    images = torch.rand(8, 4, 16, 16)
    assert torch.equal(augment(images), images)  # p = 0
    augment.update(torch.ones(8))  # D is sure that every real is real: overfitting
    assert augment.p > 0
    moved = augment.p.clone()
    augment.p.fill_(1.0)
    out = augment(images.requires_grad_(), torch.Generator().manual_seed(0))
    assert out.shape == images.shape and not torch.allclose(out, images)
    out.sum().backward()
    assert images.grad.abs().sum() > 0
    augment.p.copy_(moved)
    augment.update(-torch.ones(8))
    assert augment.p < moved


def test_kid_is_zero_for_one_distribution_and_grows_with_a_shift():
    from facegen.evaluation.distribution import kernel_inception_distance

    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 16, generator=generator), torch.randn(400, 16, generator=generator)
    same, _ = kernel_inception_distance(a, b, subsets=5, subset_size=200)
    shifted, _ = kernel_inception_distance(a, b + 0.5, subsets=5, subset_size=200)
    assert abs(same) < 0.02 and shifted > 10 * max(abs(same), 1e-3)


# ----------------------------------------------------------------------------- the LightningModule and the CLI
@pytest.fixture(scope="module")
def mofa_setup(tmp_path_factory):
    """A tiny MoFA config and synthetic shards (48 px)."""
    from tests.test_mofa import tiny_config

    root = tmp_path_factory.mktemp("texture")
    from facegen.data import SynthOptions
    from facegen.data.synth import SynthJob

    options = SynthOptions(size=48)
    SynthJob("builtin", root / "train", 16, samples_per_shard=8, options=options, progress=False).run()
    SynthJob("builtin", root / "val", 8, samples_per_shard=8, seed=1, options=options, progress=False).run()
    config = tiny_config(root / "mofa", root, max_steps=2)
    return root, config


#: A texture model small enough for CPU tests (16² UV textures).
TINY_GAN = dict(
    resolution=16, z_dim=16, w_dim=16, mapping_layers=2, channel_base=256, channel_max=32, metric_samples=8
)


def texture_model(checkpoint, **kwargs):
    from facegen.tasks import MoFASource, TextureGAN

    return TextureGAN(mofa=MoFASource(str(checkpoint)), **{**TINY_GAN, **kwargs})


def shard_batch(root, size=48, count=4):
    from facegen.data import FaceDataModule

    module = FaceDataModule(val=str(root / "val"), batch_size=count, num_workers=0, image_size=size)
    module.setup("validate")
    return module.on_after_batch_transfer(next(iter(module.val_dataloader())), 0)


@pytest.fixture(scope="module")
def mofa_checkpoint(mofa_setup):
    """The last checkpoint of a tiny ``facegen fit`` of the MoFA config."""
    from facegen.cli import main

    root, config = mofa_setup
    main(["fit", "--config", str(config)])
    (checkpoint,) = (root / "mofa" / "checkpoints").glob("last.ckpt")
    return checkpoint


@pytest.mark.parametrize("mode", ["uv", "image"])
def test_one_training_iteration_updates_generator_discriminator_and_ema(mofa_setup, mofa_checkpoint, mode):
    import lightning as L

    from facegen.data import FaceDataModule

    root, _ = mofa_setup
    torch.manual_seed(0)
    model = texture_model(mofa_checkpoint, mode=mode)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    ema_before = [p.clone() for p in model.generator_ema.parameters()]
    mofa_before = [p.clone() for p in model.mofa.parameters()]
    data = FaceDataModule(train=str(root / "train"), batch_size=4, num_workers=0, image_size=48)
    trainer = L.Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
    )
    trainer.fit(model, data)
    changed = {name.split(".")[0] for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert {"generator", "discriminator"} <= changed and "mofa" not in changed
    assert any(
        not torch.equal(a, b) for a, b in zip(ema_before, model.generator_ema.parameters(), strict=True)
    )
    assert all(torch.equal(a, b) for a, b in zip(mofa_before, model.mofa.parameters(), strict=True))
    assert model.iteration == 1  # D step + R1 step + G step = the 3 optimizer steps
    assert torch.isfinite(trainer.callback_metrics["train/d_loss"]) and "train/r1" in trainer.callback_metrics


def test_real_uv_textures_are_delit_partial_and_masked(mofa_checkpoint, mofa_setup):
    root, _ = mofa_setup
    model = texture_model(mofa_checkpoint).eval()
    condition = model.condition(shard_batch(root))
    real, seen = model.real_textures(condition)
    assert real.shape == (4, 3, 16, 16) and set(seen.unique().tolist()) <= {0.0, 1.0}
    assert 0.05 < seen.mean() < 0.9  # partial: one side of the head at most
    assert (real * (1 - seen)).abs().max() == 0 and real.max() <= 1


def test_latent_fitting_lowers_the_reconstruction_error(mofa_checkpoint, mofa_setup):
    from facegen.tasks.latent_fit import LatentFit, fit_latent

    root, _ = mofa_setup
    torch.manual_seed(0)
    model = texture_model(mofa_checkpoint).eval()
    condition = model.condition(shard_batch(root, count=2))
    fit = LatentFit(w_steps=15, wplus_steps=15, lr=0.1)
    fitted = fit_latent(model.generator_ema, model.mofa.decoder, condition, fit)
    texture, history, metrics = fitted.texture, fitted.loss, fitted.metrics
    assert texture.shape == (2, 3, 16, 16) and 0 <= texture.min() and texture.max() <= 1
    assert history[-1] < 0.8 * history[0]
    assert set(metrics) == {"psnr", "ssim", "l1"} and metrics["psnr"].shape == (2,)


def test_pretrained_networks_start_the_texture_model_where_shapes_match(tmp_path, mofa_checkpoint, caplog):
    """A 2D StyleGAN2 of the texture's size and channel schedule (an NVIDIA-format pickle): the texture generator
    and its EMA take every tensor; the uv-mode discriminator (4 input channels) keeps its own fromRGB."""
    from facegen.nets.stylegan import Discriminator
    from tests.gan_files import randomised, write_network_pickle

    sizes = {"channel_base": 256, "channel_max": 32}
    generator = randomised(Generator(16, 3, 16, 16, 2, **sizes), 0)
    discriminator = randomised(Discriminator(16, 3, **sizes), 1)
    path = write_network_pickle(tmp_path / "ffhq-tiny.pkl", generator, discriminator)
    with caplog.at_level("INFO"):
        model = texture_model(mofa_checkpoint, pretrained=str(path))
    z = torch.randn(2, 16)
    assert torch.equal(model.generator_ema(z, 0.7, "const"), generator(z, 0.7, "const"))
    own = model.discriminator.state_dict()
    assert torch.equal(own["b16.conv0.weight"], discriminator.b16.conv0.weight)
    assert own["b16.fromrgb.weight"].shape[1] == 4
    assert "G 48/48 tensors; G_ema 48/48 tensors; D 17/18 tensors (kept 1: b16.fromrgb.weight)" in caplog.text
    assert "pretrained" not in model.hparams  # a run-time choice, not part of checkpoints


def test_a_checkpoint_of_another_face_model_is_rejected(mofa_checkpoint, ict_facegen_npz):
    with pytest.raises(ValueError, match="does not match the face model"):
        texture_model(mofa_checkpoint, face_model=str(ict_facegen_npz))
    with pytest.raises(ValueError, match="train MoFA first.*make demo"):
        texture_model(mofa_checkpoint.parent / "missing.ckpt")


def test_cli_trains_then_generates_and_reconstructs_textures(tmp_path, mofa_setup, mofa_checkpoint):
    import json

    import yaml

    from facegen.cli import main
    from facegen.export import read_obj
    from tests.conftest import ROOT

    root, _ = mofa_setup
    config = yaml.safe_load((ROOT / "configs" / "texture_gan.yaml").read_text())
    config["trainer"].update(
        max_steps=6,
        val_check_interval=2,
        log_every_n_steps=1,
        enable_progress_bar=False,
        default_root_dir=str(tmp_path),
        accelerator="cpu",
    )
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "runs")
    config["model"]["init_args"].update(
        mofa={"checkpoint": str(mofa_checkpoint)},
        **TINY_GAN,
        latent_fit={"w_steps": 3, "wplus_steps": 3},
    )
    config["data"]["init_args"].update(
        synthetic=None,
        train=str(root / "train"),
        val=str(root / "val"),
        batch_size=4,
        num_workers=0,
        image_size=48,
    )
    path = tmp_path / "texture.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(path)])
    (metrics_file,) = tmp_path.glob("runs/texture_gan/version_*/metrics.csv")
    assert "val/kid_uv" in metrics_file.read_text() and list(
        tmp_path.glob("runs/texture_gan/version_*/images/*.png")
    )
    (checkpoint,) = tmp_path.rglob("last.ckpt")

    generated = tmp_path / "generated"
    main(
        [
            "predict",
            "--config",
            str(path),
            "--config",
            str(ROOT / "configs" / "texture_generate.yaml"),
            "--data.init_args.seeds",
            "0-2",
            "--ckpt_path",
            str(checkpoint),
            "--out",
            str(generated),
        ]
    )
    folders = sorted(p for p in generated.iterdir() if p.is_dir())
    assert [p.name for p in folders] == ["seed_000000", "seed_000001", "seed_000002"]
    mesh = read_obj(folders[0] / "textured.obj")
    assert mesh["uv"].shape[1] == 2 and (folders[0] / "views.png").is_file()
    # the generation config's truncation applies, not the training run's (run-time settings stay out of checkpoints)
    assert json.loads((folders[0] / "generated.json").read_text())["truncation"] == 0.7

    reconstructed = tmp_path / "reconstructed"
    main(
        [
            "predict",
            "--config",
            str(path),
            "--data.init_args.predict",
            str(root / "val"),
            "--ckpt_path",
            str(checkpoint),
            "--out",
            str(reconstructed),
        ]
    )
    summary = json.loads((reconstructed / "summary.json").read_text())
    assert len(summary["written"]) == 8
    fit = json.loads((reconstructed / summary["written"][0] / "fit.json").read_text())
    assert fit["psnr"] > 0 and fit["loss_last"] <= fit["loss_first"]
    assert (reconstructed / summary["written"][0] / "side_by_side.png").is_file()

    # the texture benchmark: photos with landmark files, an identity network given as TorchScript
    from facegen.data.landmarks import write_pts

    photos = tmp_path / "photos"
    photos.mkdir()
    batch = shard_batch(root, count=2)
    import cv2

    for i in range(2):  # crops scaled x4: faces large enough for facegen predict
        image = (batch.image[i].permute(1, 2, 0).numpy() * 255).round().astype("uint8")
        cv2.imwrite(str(photos / f"photo{i}.png"), cv2.resize(image, None, fx=4, fy=4)[..., ::-1])
        write_pts(photos / f"photo{i}.pts", batch.landmarks[i].numpy() * 4 + 1.5)

    class Identity(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)

    torch.jit.script(Identity()).save(str(tmp_path / "identity.pt"))
    scores = tmp_path / "texture_scores"
    args = [
        "evaluate",
        "texture",
        "--config",
        str(path),
        "--ckpt_path",
        str(checkpoint),
        "--root",
        str(photos),
    ]
    args += ["--out", str(scores), "--identity", str(tmp_path / "identity.pt")]
    assert main([*args, "--", "--data.init_args.predict_detector", "files"]) == 0
    scored = json.loads((scores / "summary.json").read_text())
    assert scored["found"] == 2 and scored["psnr"] > 0 and 0 < scored["identity_cosine"] <= 1 + 1e-6
    assert "identity cosine" in (scores / "summary.md").read_text()


def test_texture_reconstruction_of_the_shared_photos(tmp_path, assets, mofa_checkpoint):
    import json

    import yaml
    from PIL import Image

    from facegen.cli import main

    config = {
        "trainer": {
            "accelerator": "cpu",
            "logger": False,
            "enable_progress_bar": False,
            "default_root_dir": str(tmp_path),
        },
        "model": {
            "class_path": "facegen.tasks.TextureGAN",
            "init_args": {
                "mofa": {"checkpoint": str(mofa_checkpoint)},
                **TINY_GAN,
                "latent_fit": {"w_steps": 4, "wplus_steps": 4, "refine": {"photometric": {"steps": 3}}},
            },
        },
        "data": {
            "class_path": "facegen.data.FaceDataModule",
            "init_args": {
                "predict_dir": str(assets / "photos" / "annotated"),
                "predict_detector": "files",
                "batch_size": 2,
                "num_workers": 0,
                "image_size": 48,
            },
        },
    }
    path = tmp_path / "fit.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["predict", "--config", str(path), "--out", str(tmp_path / "out"), "--texture_size", "32"])
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(summary["written"]) == 4
    for name in summary["written"]:
        folder = tmp_path / "out" / name
        assert Image.open(folder / "texture.png").size == (32, 32)  # resampled to --texture_size
        assert (folder / "textured.mtl").is_file() and json.loads((folder / "fit.json").read_text())[
            "psnr"
        ] > 0


@pytest.mark.parametrize("name", ["texture_gan.yaml", "texture_gan_ffhq.yaml"])
def test_texture_configs_parse(capsys, name):
    from facegen.cli import main
    from tests.conftest import ROOT

    with pytest.raises(SystemExit) as raised:
        main(["fit", "--config", str(ROOT / "configs" / name), "--print_config"])
    assert raised.value.code == 0 and "facegen.tasks.TextureGAN" in capsys.readouterr().out


def test_a_diverged_discriminator_stops_training_naming_the_step(mofa_setup, mofa_checkpoint):
    import lightning as L

    from facegen.data import FaceDataModule

    root, _ = mofa_setup
    model = texture_model(mofa_checkpoint)
    with torch.no_grad():
        model.discriminator.b4.out.bias.fill_(float("nan"))
    data = FaceDataModule(train=str(root / "train"), batch_size=4, num_workers=0, image_size=48)
    trainer = L.Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
    )
    with pytest.raises(FloatingPointError, match="step 0: loss term 'd_loss' is nan"):
        trainer.fit(model, data)


def test_latent_fitting_with_a_user_given_perceptual_network(tmp_path, mofa_setup, mofa_checkpoint):
    from facegen.tasks.latent_fit import LatentFit, fit_latent

    network = torch.jit.script(
        torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, 2), torch.nn.ReLU(), torch.nn.Flatten())
    )
    network.save(str(tmp_path / "features.pt"))
    root, _ = mofa_setup
    model = texture_model(mofa_checkpoint).eval()
    condition = model.condition(shard_batch(root, count=1))
    fit = LatentFit(
        w_steps=4, wplus_steps=0, lr=0.1, perceptual=str(tmp_path / "features.pt"), perceptual_weight=1e-4
    )
    history = fit_latent(model.generator_ema, model.mofa.decoder, condition, fit).loss
    assert len(history) == 4 and history[-1] < history[0]


def test_bad_settings_get_clear_errors(tmp_path, mofa_checkpoint):
    from facegen.data.seeds import parse_seeds
    from facegen.evaluation.features import build_feature_extractor

    assert parse_seeds("0-2,7") == [0, 1, 2, 7]
    with pytest.raises(ValueError, match="data.seeds"):
        parse_seeds("a-b")
    with pytest.raises(ValueError, match="unknown feature extractor"):
        build_feature_extractor("vgg")
    with pytest.raises(FileNotFoundError, match="do not exist"):
        build_feature_extractor(f"inception:{tmp_path / 'missing.pth'}")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_feature_extractor(f"torchscript:{tmp_path / 'missing.pt'}")
    with pytest.raises(ValueError, match="model.mode"):
        texture_model(mofa_checkpoint, mode="pixels")
