"""The adversarial texture model: StyleGAN2 blocks, losses and regularisers, augmentation, KID, the UV unwrap
of synthetic faces, the TextureGAN training step, latent fitting, and the CLI."""

from __future__ import annotations

import math

import pytest
import torch

from facegen.losses.adversarial import discriminator_loss, generator_loss, path_length_penalty, r1_penalty
from facegen.nets.ada import AdaptiveAugment
from facegen.nets.stylegan import Generator, seeded_latents
from tests.data_helpers import cpu_config

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


def cpu_trainer(**settings):
    """A Lightning trainer of 3 CPU steps without logger, checkpoints or progress bar (``settings`` override)."""
    import lightning as L

    return L.Trainer(
        **{
            "max_steps": 3,
            "accelerator": "cpu",
            "logger": False,
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            **settings,
        }
    )


@pytest.fixture(scope="module")
def mofa_checkpoint(mofa_setup):
    """The last checkpoint of a tiny ``facegen fit`` of the MoFA config."""
    from facegen.cli import main

    root, config = mofa_setup
    main(["fit", "--config", str(config)])
    (checkpoint,) = (root / "mofa" / "checkpoints").glob("last.ckpt")
    return checkpoint


def test_one_training_iteration_updates_generator_discriminator_and_ema(mofa_setup, mofa_checkpoint):

    from facegen.data import FaceDataModule

    root, _ = mofa_setup
    torch.manual_seed(0)
    model = texture_model(mofa_checkpoint, mode="uv")
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    ema_before = [p.clone() for p in model.generator_ema.parameters()]
    mofa_before = [p.clone() for p in model.mofa.parameters()]
    data = FaceDataModule(train=str(root / "train"), batch_size=4, num_workers=0, image_size=48)
    trainer = cpu_trainer(limit_val_batches=0)
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
    fit = LatentFit(steps=30, lr=0.1)
    fitted = fit_latent(model.generator_ema, model.mofa.decoder, condition, fit)
    texture, history, metrics = fitted.texture, fitted.loss, fitted.metrics
    assert texture.shape == (2, 3, 16, 16) and 0 <= texture.min() and texture.max() <= 1
    assert history[-1] < 0.8 * history[0]
    assert set(metrics) == {"psnr", "ssim", "l1"} and metrics["psnr"].shape == (2,)


def test_the_reconstruction_protocol_ramps_the_rate_fades_the_latent_noise_and_keeps_noise_maps_white():
    from facegen.tasks.latent_fit import LatentFit, noise_penalty

    fit = LatentFit(steps=100)
    assert fit.learning_rate(0) == 0 and fit.learning_rate(50) == pytest.approx(fit.lr)
    assert fit.learning_rate(2) == pytest.approx(0.4 * fit.lr) and fit.learning_rate(99) < 0.01 * fit.lr
    assert fit.latent_noise(0) == fit.w_noise and fit.latent_noise(75) == 0 and fit.latent_noise(90) == 0
    generator = torch.Generator().manual_seed(0)
    white = [torch.randn(2, 1, 32, 32, generator=generator)]
    smooth = [
        torch.nn.functional.interpolate(
            torch.randn(2, 1, 8, 8, generator=generator), size=32, mode="bilinear"
        )
    ]
    assert noise_penalty(white) < 0.01 * noise_penalty(smooth)
    with pytest.raises(ValueError, match="model.latent_fit.space"):
        LatentFit(space="z")


def test_given_noise_maps_replace_the_noise_mode():
    generator = tiny_generator().eval()
    for layer in generator.modules():
        if hasattr(layer, "noise_strength"):
            layer.noise_strength.data.fill_(0.5)
    ws = generator.ws(torch.randn(2, 16))
    layers = [m for m in generator.synthesis.modules() if hasattr(m, "noise_const")]
    const = [layer.noise_const.expand(2, 1, -1, -1) for layer in layers]
    assert [m.shape[-1] for m in generator.synthesis.noise_maps(2)] == [m.shape[-1] for m in const]
    assert torch.allclose(generator.synthesis(ws, noise=const), generator.synthesis(ws, "const"), atol=1e-6)
    assert not torch.allclose(
        generator.synthesis(ws, noise=generator.synthesis.noise_maps(2)), generator.synthesis(ws, "const")
    )


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
    config = cpu_config(ROOT / "configs" / "texture_gan.yaml", tmp_path)
    config["model"]["init_args"].update(
        mofa={"checkpoint": str(mofa_checkpoint)},
        **TINY_GAN,
        latent_fit={"steps": 6},
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
                "latent_fit": {"steps": 8, "fit": {"photometric": {"steps": 3}}},
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


@pytest.mark.parametrize(
    "name, task",
    [
        ("texture_gan.yaml", "TextureGAN"),
        ("texture_gan_ffhq.yaml", "TextureGAN"),
        ("texture_gan_composite.yaml", "TextureGAN"),
        ("stylegan_synth.yaml", "FaceStyleGAN"),
    ],
)
def test_texture_configs_parse(capsys, name, task):
    from facegen.cli import main
    from tests.conftest import ROOT

    with pytest.raises(SystemExit) as raised:
        main(["fit", "--config", str(ROOT / "configs" / name), "--print_config"])
    assert raised.value.code == 0 and f"facegen.tasks.{task}" in capsys.readouterr().out


def test_a_diverged_discriminator_stops_training_naming_the_step(mofa_setup, mofa_checkpoint):

    from facegen.data import FaceDataModule

    root, _ = mofa_setup
    model = texture_model(mofa_checkpoint)
    with torch.no_grad():
        model.discriminator.b4.out.bias.fill_(float("nan"))
    data = FaceDataModule(train=str(root / "train"), batch_size=4, num_workers=0, image_size=48)
    trainer = cpu_trainer(limit_val_batches=0)
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
        steps=4, space="w+", lr=0.1, perceptual=str(tmp_path / "features.pt"), perceptual_weight=1e-4
    )
    history = fit_latent(model.generator_ema, model.mofa.decoder, condition, fit).loss
    assert len(history) == 4 and history[-1] < history[0]


def test_latent_fitting_with_lpips_reports_it(tmp_path, mofa_setup, mofa_checkpoint):
    from facegen.tasks.latent_fit import LatentFit, fit_latent
    from tests.test_lpips import write_files

    root, _ = mofa_setup
    model = texture_model(mofa_checkpoint).eval()
    condition = model.condition(shard_batch(root, count=2))
    fit = LatentFit(steps=3, lpips=write_files(tmp_path / "lpips"), lpips_weight=1.0)
    fitted = fit_latent(model.generator_ema, model.mofa.decoder, condition, fit)
    lpips = fitted.metrics["lpips"]
    assert lpips.shape == (2,) and torch.isfinite(lpips).all() and (lpips > 0).all()
    assert set(
        fit_latent(model.generator_ema, model.mofa.decoder, condition, LatentFit(steps=1)).metrics
    ) == {
        "psnr",
        "ssim",
        "l1",
    }


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


# ---------------------------------------------------------------------------------------------- the paper's pipeline
#: A 2D face generator of the tiny texture model's sizes (16², 16-d latents), so every tensor transfers.
TINY_2D = {k: v for k, v in TINY_GAN.items() if k != "metric_samples"}


@pytest.fixture(scope="module")
def face_stylegan_checkpoint(mofa_setup, tmp_path_factory):
    """A tiny FaceStyleGAN fitted a few steps through the CLI on the 48 px shards (configs/stylegan_synth.yaml)."""
    import yaml

    from facegen.cli import main
    from tests.conftest import ROOT

    root, _ = mofa_setup
    out = tmp_path_factory.mktemp("stylegan")
    config = cpu_config(ROOT / "configs" / "stylegan_synth.yaml", out)
    config["trainer"]["callbacks"][0]["init_args"]["dirpath"] = str(out / "checkpoints")
    config["model"]["init_args"].update(image_size=48, metric_samples=8, **TINY_2D)
    config["data"]["init_args"].update(
        synthetic=None, train=str(root / "train"), val=str(root / "val"), batch_size=4, num_workers=0
    )
    path = out / "stylegan.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(path)])
    (metrics_file,) = out.glob("runs/stylegan_synth/version_*/metrics.csv")
    assert "val/kid_image" in metrics_file.read_text()
    assert list(out.glob("runs/stylegan_synth/version_*/images/faces-*.png"))
    return out / "checkpoints" / "last.ckpt", path


def test_a_face_stylegan_checkpoint_is_a_2d_generator_for_every_reader(face_stylegan_checkpoint, tmp_path):
    import json

    from facegen.cli import main
    from facegen.nets.gan_import import read_gan
    from facegen.tasks import ImageGAN

    checkpoint, config = face_stylegan_checkpoint
    gan = read_gan(checkpoint)
    assert set(gan.states) == {"G", "G_ema", "D"} and gan.generator.resolution == 16
    assert gan.discriminator.channel_max == 32
    saved = torch.load(checkpoint, weights_only=True)["state_dict"]  # tensors and plain data only
    ema = gan.build_generator("G_ema")
    assert torch.equal(
        ema.state_dict()["synthesis.b16.conv1.weight"], saved["generator_ema.synthesis.b16.conv1.weight"]
    )

    out = tmp_path / "faces"
    args = ["predict", "--config", str(config), "--ckpt_path", str(checkpoint), "--out", str(out)]
    main([*args, "--data", "facegen.data.SeedDataModule", "--data.seeds", "0-1"])
    assert sorted(p.name for p in out.glob("*.png")) == ["seed_000000.png", "seed_000001.png"]
    assert json.loads((out / "summary.json").read_text())["written"] == [0, 1]
    z = torch.randn(1, 16)
    with torch.no_grad():
        assert torch.equal(ImageGAN(str(checkpoint)).generator(z, 1.0, "const"), ema(z, 1.0, "const"))


def test_pose_directions_move_the_predicted_pose_to_the_target_with_the_smallest_step():
    from facegen.tasks.reposing import PoseAugment, PoseDirections

    generator = torch.Generator().manual_seed(0)
    w = torch.randn(400, 8, generator=generator)
    true_basis = torch.randn(8, 2, generator=generator) * 0.1
    pose = w @ true_basis + torch.tensor([0.05, -0.1]) + 1e-3 * torch.randn(400, 2, generator=generator)
    directions = PoseDirections(8)
    assert directions.fit(w, pose, ridge=1e-3) > 0.99 and bool(directions.fitted)
    assert torch.allclose(directions.basis, true_basis, atol=2e-3)
    target = directions.targets(5, PoseAugment(max_yaw=0.8, max_pitch=0.2), torch.Generator().manual_seed(1))
    assert (target[:, 1].abs() <= 0.8).all() and ((target[:, 0] - directions.mean_pose[0]).abs() <= 0.2).all()
    shift = directions.shift(w[:5], target)
    assert torch.allclose(directions.predict(w[:5] + shift), target, atol=1e-5)
    # the smallest such step lies in the span of the directions: nothing orthogonal to them changes
    projector = directions.basis @ torch.linalg.pinv(directions.basis)
    assert torch.allclose(shift @ projector.T, shift, atol=1e-5)


def test_feedback_corrects_the_linear_step_by_the_measured_pose():
    """A non-linear "pose" of the 2D images (a saturating function of their colours), learnt linearly from w:
    each closed-loop correction by the measured pose brings the images closer to their targets."""
    from facegen.tasks.reposing import PoseAugment, PoseDirections, render_scene

    torch.manual_seed(0)
    generator = tiny_generator().eval()
    mix = torch.randn(3, 2, generator=torch.Generator().manual_seed(2))

    def measure(image):
        return torch.tanh(4 * (image.mean((2, 3)) - 0.5) @ mix)

    z = torch.randn(256, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        learnt = render_scene(generator, z, 16, noise_mode="const")
        directions = PoseDirections(16)
        directions.fit(learnt.w, measure(learnt.image), ridge=1e-3)
        errors = []
        for feedback in (0, 1, 3):
            options = PoseAugment(max_yaw=0.3, max_pitch=0.1, flip=0.0, feedback=feedback)
            scene = render_scene(
                generator, z[:32], 16, directions, options, "const", torch.Generator().manual_seed(1), measure
            )
            target = directions.targets(32, options, torch.Generator().manual_seed(1))
            errors.append(float((measure(scene.image) - target).abs().mean()))
    assert errors[2] < errors[1] < errors[0] and errors[2] < 0.5 * errors[0]
    with pytest.raises(ValueError, match="feedback must be >= 0"):
        PoseAugment(feedback=-1)


def composite_model(mofa_checkpoint, gan_checkpoint, **kwargs):
    from facegen.tasks import PoseAugment

    return texture_model(
        mofa_checkpoint,
        mode="composite",
        pretrained=str(gan_checkpoint),
        pose=PoseAugment(samples=16),
        **kwargs,
    )


def test_composite_mode_trains_on_re_posed_faces_of_the_2d_generator(
    mofa_checkpoint, face_stylegan_checkpoint, tmp_path
):

    from facegen.data import SeedDataModule
    from facegen.nets.gan_import import read_gan

    checkpoint, _ = face_stylegan_checkpoint
    torch.manual_seed(0)
    model = composite_model(mofa_checkpoint, checkpoint)
    gan = read_gan(checkpoint)
    # transfer learning: both networks start as the 2D ones, every tensor
    assert all(torch.equal(v, gan.states["G"][k]) for k, v in model.generator.state_dict().items())
    assert all(torch.equal(v, gan.states["D"][k]) for k, v in model.discriminator.state_dict().items())
    frozen = [p.clone() for p in (*model.scene_generator.parameters(), *model.mofa.parameters())]
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    data = SeedDataModule(train_seeds="0-15", val_seeds="100-107", batch_size=4)
    pairs, generate = [], model.generate

    def recorded(z, ema=False, truncation=1.0):  # each texture latent beside its batch's 2D-image latents
        pairs.append((z.clone(), model._scene_z.clone(), ema))
        return generate(z, ema, truncation)

    model.generate = recorded
    trainer = cpu_trainer(default_root_dir=tmp_path)
    trainer.fit(model, data)
    # one latent per person: every texture of a training step (D's, G's and the path-length batch) is driven by
    # the latent of the 2D image it is composited onto, seeded by the batch's seeds
    training = [(z, scene) for z, scene, ema in pairs if not ema]
    assert len(training) >= 2 and all(torch.equal(z, scene[: len(z)]) for z, scene in training)
    table = seeded_latents(list(range(16)), model.scene_generator.z_dim)  # the training seeds' latents
    assert all((row == table).all(1).any() for _, scene in training for row in scene)
    model.generate = generate
    assert bool(model.directions.fitted) and model.directions.basis.abs().sum() > 0
    changed = {name.split(".")[0] for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert {"generator", "discriminator"} <= changed
    after = (*model.scene_generator.parameters(), *model.mofa.parameters())
    assert all(torch.equal(a, b) for a, b in zip(frozen, after, strict=True))
    trainer.validate(model, data, verbose=False)
    assert torch.isfinite(trainer.callback_metrics["val/kid_render"])
    assert list((tmp_path / "images").glob("textures-*.png"))
    assert "val/kid_uv" not in trainer.callback_metrics  # no real UV textures in this mode

    # re-posing moves the fitted pose; mirroring flips the image, same targets
    model.eval()
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(2))
    plain = model.scene_condition(z, repose=False)
    reposed = model.scene_condition(z, repose=True, rng=torch.Generator().manual_seed(3))
    assert not torch.allclose(plain.code.rotation, reposed.code.rotation)
    from facegen.tasks.reposing import render_scene

    def scene(flip: float):
        model.pose.flip = flip
        return render_scene(
            model.scene_generator,
            z,
            48,
            model.directions,
            model.pose,
            "const",
            torch.Generator().manual_seed(3),
        )

    mirrored, upright = scene(1.0), scene(0.0)
    assert mirrored.flipped.all() and not upright.flipped.any()
    assert torch.allclose(mirrored.image, upright.image.flip(-1), atol=1e-6)

    # generation pairs each texture with the geometry fitted to the 2D image of the same seed
    generated = model.generated([0, 1])
    mean = model.mofa.decoder.model.mean
    assert generated.vertices_model.shape == (2, *mean.shape) and not torch.allclose(
        generated.vertices_model[0], mean
    )
    assert torch.allclose(generated.vertices_model, model.generated([0, 1]).vertices_model)


def test_scene_fit_refines_the_encoders_fit_of_the_2d_images_without_landmarks(
    mofa_checkpoint, face_stylegan_checkpoint
):
    from facegen.fitting import FitSchedule, PhotometricStage

    checkpoint, _ = face_stylegan_checkpoint
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(4))
    encoder_only = composite_model(mofa_checkpoint, checkpoint).eval()
    stage = PhotometricStage(steps=5, parts=("albedo", "light"))
    fitted = composite_model(mofa_checkpoint, checkpoint, scene_fit=FitSchedule(photometric=stage)).eval()
    plain, refined = encoder_only.scene_condition(z, repose=False), fitted.scene_condition(z, repose=False)
    assert torch.equal(plain.image, refined.image)
    # the chosen parts moved, the others are the encoder's
    assert not torch.allclose(plain.code.light, refined.code.light)
    assert torch.equal(plain.code.shape, refined.code.shape) and torch.equal(
        plain.code.rotation, refined.code.rotation
    )
    assert torch.isfinite(refined.decoded.vertices).all()

    def error(condition):
        render = fitted.mofa.decoder.render(condition.decoded, condition.code.light)
        return ((render.image - condition.image).abs() * render.mask).sum() / render.mask.sum()

    assert error(refined) < error(plain)  # the render explains the image better
    assert "scene_fit" not in fitted.hparams  # a run-time choice: the current config decides it


class KnownFaces:
    """A landmark backend that finds the given 68 points (one face per image, in call order), or no face."""

    def __init__(self, landmarks):
        self.landmarks, self.calls = list(landmarks), 0

    def detect(self, image):
        from facegen.data.detection.face import DetectedFace, landmark_bbox

        points = self.landmarks[self.calls]
        self.calls += 1
        return [] if points is None else [DetectedFace(points, landmark_bbox(points), 1.0, "known")]


def test_two_step_geometry_fits_each_detected_face_in_its_crop_and_draws_it_back_exactly(mofa_checkpoint):
    import torch.nn.functional as F

    from facegen.fitting import FitSchedule, LandmarkStage, PoseStage
    from facegen.geometry.camera import intrinsics_from_fov, project_points
    from facegen.tasks.conditioning import MoFASource, load_mofa
    from facegen.tasks.scene_geometry import crop_scenes, fit_scene_geometry

    mofa = load_mofa(MoFASource(str(mofa_checkpoint)), None).eval()
    decoder, native_size, size = mofa.decoder, 80, mofa.hparams.image_size
    # two model faces, rolled so that their crops turn, drawn at the 2D images' own size (80 px, crops 48 px)
    with torch.no_grad():
        truth = mofa(torch.zeros(2, 3, size, size))  # the MoFA's code sizes
    generator = torch.Generator().manual_seed(0)
    truth = truth._replace(
        rotation=torch.tensor([[0.05, 0.2, 0.35], [-0.05, -0.25, -0.3]]),
        translation=torch.zeros_like(truth.translation),  # the default framing
        shape=torch.randn(truth.shape.shape, generator=generator) * 0.8,
        expression=torch.zeros_like(truth.expression),
    )
    decoded = decoder(truth)
    K_native = intrinsics_from_fov(decoder.fov, (native_size, native_size)).expand(2, 3, 3)
    landmarks, _ = project_points(decoded.vertices[:, decoder.model.landmark_indices], K_native)
    render = decoder.render(decoded, truth.light, background=0.5).image
    native = F.interpolate(render, size=(native_size, native_size), mode="bilinear", align_corners=False)
    resized = F.interpolate(native, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    schedule = FitSchedule(
        pose=PoseStage(closed_form=True, iterations=5),
        landmarks=LandmarkStage(iterations=10, shape_prior=1e-4, expression_prior=1e-4),
    )

    def two_step(detector):
        return fit_scene_geometry(mofa, crop_scenes(mofa, detector, native), native, resized, schedule)

    found = two_step(KnownFaces(landmarks.numpy()))
    assert found.detected.all() and found.image.shape == (2, 3, size, size)
    assert not torch.allclose(found.image, resized)  # the aligned crops, not the resized images
    assert (found.landmark_error < 0.01).all()
    # the fit, made in the turned crop, lands on the face's points in the 80 px image through native_K
    fitted = decoder(found.code).vertices[:, decoder.model.landmark_indices]
    drawn, _ = project_points(fitted, found.native_K)
    assert (drawn - landmarks).norm(dim=-1).mean() < 0.01 * native_size
    assert found.native_K[:, 0, 1].abs().min() > 0.1  # turned crops: intrinsics with a rotation

    # no face found: the encoder's code on the whole image, drawn with the plain camera at the image's size
    missed = two_step(KnownFaces([None, landmarks[1].numpy()]))
    assert missed.detected.tolist() == [False, True] and torch.isnan(missed.landmark_error[0])
    assert torch.equal(missed.image[0], resized[0])
    assert torch.allclose(missed.native_K[0], K_native[0], atol=1e-4)
    # the face found in both calls fits alike (the batched solver's shared damping: within 1e-3 in practice)
    assert torch.allclose(missed.code.shape[1], found.code.shape[1], atol=1e-2)


def test_the_scene_benchmarks_the_texture_figure_and_benchmark_run_on_tiny_composite_models(
    mofa_setup, mofa_checkpoint, face_stylegan_checkpoint, tmp_path, capsys, monkeypatch
):
    import json

    import cv2
    import numpy as np

    from docs.make_texture_figure import CELL, GAP, LABEL
    from docs.make_texture_figure import main as make_texture_figure
    from tests.conftest import ROOT

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import reposing
    import scene_fit

    gan, _ = face_stylegan_checkpoint
    models = ["--mofa", str(mofa_checkpoint), "--generator", str(gan)]
    reposing.main([*models, "--samples", "16", "--test", "4", "--feedback", "0", "1", "--identity", "dlib"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["feedback"] for line in lines] == [0, 1]
    for line in lines:
        assert -1 <= line["identity"]["cosine"] <= 1 and line["identity"]["distance"] >= 0
        assert 0 <= line["identity"]["same_person"] <= 1 and line["seconds_per_face"] > 0
    with pytest.raises(SystemExit, match="--feedback >= 0"):
        reposing.main([*models, "--feedback", "-1"])

    scene_fit.main([*models, "--faces", "3", "--steps", "0", "--detector", "dlib"])
    two_step = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert two_step["two_step"] == "dlib" and 0 <= two_step["detected"] <= 1 and two_step["faces"] == 3
    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(2):
        cv2.imwrite(str(photos / f"{index}.png"), np.random.default_rng(index).integers(0, 255, (40, 60, 3)))
    scene_fit.main([*models, "--steps", "0", "--detector", "dlib", "--images", str(photos), "--size", "32"])
    on_photos = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert on_photos["faces"] == 2 and on_photos["image_size"] == 32
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no photos there"):
        scene_fit.main([*models, "--steps", "0", "--detector", "dlib", "--images", str(tmp_path / "empty")])
    with pytest.raises(SystemExit, match="--fit nowhere.yaml does not exist"):
        scene_fit.main([*models, "--detector", "dlib", "--fit", "nowhere.yaml"])

    # a composite model trained two steps through the CLI, as a user's run writes its checkpoint
    import yaml

    from facegen.cli import main
    from facegen.data.landmarks import write_pts

    init = {
        **TINY_GAN,
        "mofa": {"checkpoint": str(mofa_checkpoint)},
        "mode": "composite",
        "pretrained": str(gan),
    }
    trainer = {"accelerator": "cpu", "logger": False, "enable_progress_bar": False, "max_steps": 2}
    config = {
        "trainer": {**trainer, "limit_val_batches": 0, "default_root_dir": str(tmp_path / "run")},
        "model": {"class_path": "facegen.tasks.TextureGAN", "init_args": {**init, "pose": {"samples": 16}}},
        "data": {
            "class_path": "facegen.data.SeedDataModule",
            "init_args": {"train_seeds": "0-7", "batch_size": 4},
        },
    }
    (tmp_path / "composite.yaml").write_text(yaml.safe_dump(config))
    torch.manual_seed(0)
    assert main(["fit", "--config", str(tmp_path / "composite.yaml")]) == 0
    (checkpoint,) = (tmp_path / "run").rglob("*.ckpt")

    # the figure: composites of the checkpoint, one row per model
    out = tmp_path / "figure.png"
    runs = ["--run", f"first={checkpoint}", "--run", f"second={checkpoint}"]
    make_texture_figure([*runs, "--generator", str(gan), "--seeds", "100-103", "--out", str(out)])
    figure = cv2.imread(str(out))
    assert figure.shape == (2 * (CELL + GAP), LABEL + 4 * (CELL + GAP), 3)
    assert figure[:CELL, LABEL:].std() > 1  # composites drawn, not blank
    with pytest.raises(SystemExit, match="--run nothing"):
        make_texture_figure(["--run", "nothing", "--generator", str(gan)])

    # the texture benchmark on the composite config (its data are seeds: photos are read by FaceDataModule)
    root, _ = mofa_setup
    batch = shard_batch(root, count=2)
    for index in range(2):
        (photos / f"{index}.png").unlink()  # the noise images of the two-step check above
        image = (batch.image[index].permute(1, 2, 0).numpy() * 255).round().astype("uint8")
        cv2.imwrite(str(photos / f"face{index}.png"), cv2.resize(image, None, fx=4, fy=4)[..., ::-1])
        write_pts(photos / f"face{index}.pts", batch.landmarks[index].numpy() * 4 + 1.5)
    scores = tmp_path / "scores"
    args = [
        "evaluate",
        "texture",
        "--config",
        str(tmp_path / "composite.yaml"),
        "--ckpt_path",
        str(checkpoint),
    ]
    args += ["--root", str(photos), "--out", str(scores), "--identity", "none"]
    assert main([*args, "--", "--model.init_args.latent_fit.steps", "2"]) == 0
    assert json.loads((scores / "summary.json").read_text())["found"] == 2


def test_composite_mode_settings_are_checked(mofa_checkpoint, face_stylegan_checkpoint, tmp_path):
    from facegen.data import SeedDataModule
    from facegen.data.batch import SeedBatch
    from facegen.errors import BadFileError
    from facegen.nets.gan_import import read_gan

    checkpoint, _ = face_stylegan_checkpoint
    with pytest.raises(ValueError, match="model.mode composite needs model.pretrained"):
        texture_model(mofa_checkpoint, mode="composite")
    with pytest.raises(ValueError, match="model.resolution 32 differs from the 2D generator's 16"):
        composite_model(mofa_checkpoint, checkpoint, resolution=32)
    with pytest.raises(ValueError, match="seed batches are for mode composite"):
        texture_model(mofa_checkpoint).condition(SeedBatch(torch.arange(2)))
    with pytest.raises(ValueError, match="data.train_seeds has 2 seeds, fewer than data.batch_size 4"):
        SeedDataModule(train_seeds="0-1", batch_size=4)
    with pytest.raises(ValueError, match="data.train_seeds: give the training seeds"):
        SeedDataModule().train_dataloader()
    with pytest.raises(BadFileError, match="without StyleGAN2 networks"):
        read_gan(mofa_checkpoint)
    from facegen.tasks import PoseAugment

    with pytest.raises(ValueError, match="model.pose.flip is a probability"):
        PoseAugment(flip=1.5)
    with pytest.raises(ValueError, match="model.pose.samples must be at least 8"):
        PoseAugment(samples=2)
    from facegen.fitting import FitSchedule, PoseStage

    landmark_stages = FitSchedule(pose=PoseStage(closed_form=True))
    with pytest.raises(ValueError, match="model.scene_fit has landmark stages .* set model.scene_detector"):
        composite_model(mofa_checkpoint, checkpoint, scene_fit=landmark_stages)
    with pytest.raises(ValueError, match="model.scene_detector files reads landmark files"):
        composite_model(mofa_checkpoint, checkpoint, scene_fit=landmark_stages, scene_detector="files")
    with pytest.raises(ValueError, match="model.scene_detector"):
        composite_model(mofa_checkpoint, checkpoint, scene_detector="nonsense")


def test_the_research_config_reaches_training_with_format_exact_stand_ins(tmp_path, monkeypatch):
    """configs/texture_gan_ffhq.yaml (composite mode) with stand-ins: a Deep3DFaceRecon front-BFM file (a dome)
    converted with a UV file, a MoFA trained two steps on its synthetic faces, and an NVIDIA network pickle in place
    of the FFHQ network, synthetic crops in place of FFHQ's photos; only sizes, devices and run lengths are shrunk
    for the CPU."""
    import numpy as np
    import scipy.io
    import yaml

    from facegen.cli import main
    from facegen.data import SynthOptions
    from facegen.data.synth import SynthJob
    from facegen.nets.stylegan import Discriminator
    from tests.conftest import ROOT
    from tests.gan_files import randomised, write_network_pickle
    from tests.test_formats import dome
    from tests.test_mofa import tiny_config

    monkeypatch.setenv("WANDB_MODE", "offline")
    vertices, faces = dome(12, 12)
    count, rng = len(vertices), np.random.default_rng(0)
    bfm = tmp_path / "bfm"
    bfm.mkdir()
    mat = {
        "meanshape": vertices.reshape(1, -1).astype(np.float32),  # decimetres
        "idBase": (rng.standard_normal((3 * count, 8)) * 0.01).astype(np.float32),
        "exBase": (rng.standard_normal((3 * count, 6)) * 0.01).astype(np.float32),
        "meantex": rng.uniform(60, 200, (1, 3 * count)).astype(np.float32),
        "texBase": (rng.standard_normal((3 * count, 5)) * 0.5).astype(np.float32),
        "tri": (faces + 1).astype(np.float64),
        "keypoints": (rng.choice(count, 68) + 1).astype(np.float64).reshape(1, -1),
    }
    scipy.io.savemat(bfm / "BFM_model_front.mat", mat)
    np.save(tmp_path / "uv.npy", (vertices[:, :2] - vertices[:, :2].min(0)) / np.ptp(vertices[:, :2], axis=0))
    model = tmp_path / "bfm_front.npz"
    args = [
        "model",
        "convert",
        "bfm-front",
        "--source",
        str(bfm),
        "--out",
        str(model),
        "--uv",
        str(tmp_path / "uv.npy"),
    ]
    assert main(args) == 0

    options = SynthOptions(size=48)
    for split, seed in (("train", 0), ("val", 1)):
        SynthJob(
            str(model), tmp_path / split, 8, samples_per_shard=8, seed=seed, options=options, progress=False
        ).run()
    mofa_config = tiny_config(tmp_path / "mofa", tmp_path, max_steps=2)
    config = yaml.safe_load(mofa_config.read_text())
    config["model"]["init_args"]["face_model"] = str(model)
    mofa_config.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(mofa_config)])

    sizes = {"channel_base": 256, "channel_max": 32, "conv_clamp": 256}
    ffhq = write_network_pickle(
        tmp_path / "ffhq-stand-in.pkl",
        randomised(Generator(16, 3, 16, 16, 2, **sizes), 0),
        randomised(Discriminator(16, 3, **sizes), 1),
    )
    config = yaml.safe_load((ROOT / "configs" / "texture_gan_ffhq.yaml").read_text())
    init = config["model"]["init_args"]
    init["scene_fit"] = str(ROOT / "configs" / init["scene_fit"])  # a preset beside the config it leaves
    assert init["scene_detector"] == "auto"
    # auto's last resort on these faceless images would try to download face-alignment's weights
    init["scene_detector"] = "dlib"
    config["trainer"].update(
        accelerator="cpu", devices=1, strategy="auto", max_steps=4, val_check_interval=1, log_every_n_steps=1
    )
    config["trainer"].update(default_root_dir=str(tmp_path / "texture"), enable_progress_bar=False)
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "runs")
    config["model"]["init_args"].update(
        mofa={"checkpoint": str(tmp_path / "mofa" / "checkpoints" / "last.ckpt")},
        face_model=str(model),
        pretrained=str(ffhq),
        pose={"samples": 8},
        features="random",
        metric_samples=4,
        **{k: v for k, v in TINY_GAN.items() if k != "metric_samples"},
    )
    real = str(tmp_path / "val")  # FFHQ's stand-in: real crops in shards
    config["data"]["init_args"].update(train_seeds="0-7", val_seeds="100-103", batch_size=4, real=real)
    config["data"]["init_args"]["real_workers"] = 1
    path = tmp_path / "texture_gan_ffhq.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["fit", "--config", str(path)]) == 0
    assert list((tmp_path / "runs").rglob("last.ckpt"))  # written through the config's W&B logger folder


def test_composites_are_rendered_at_the_discriminators_resolution(mofa_checkpoint, face_stylegan_checkpoint):
    """D compares the 2D images at their own resolution with composites rendered there: no resize down to the
    MoFA's crop and back (the background of a composite is the 2D image's own pixels)."""
    from facegen.data.batch import SeedBatch
    from facegen.geometry.camera import intrinsics_from_fov

    checkpoint, _ = face_stylegan_checkpoint
    model = composite_model(mofa_checkpoint, checkpoint).eval()
    with torch.no_grad():
        condition = model.condition(SeedBatch(torch.arange(4)), repose=False)
        real, _ = model.real_inputs(condition)
        texture = torch.rand(4, 3, model.hparams.resolution, model.hparams.resolution)
        fake = model.fake_inputs(texture, condition, None)
    size = model.hparams.resolution
    assert condition.image.shape[-1] != size and condition.native.shape[-1] == size
    assert real.shape[-1] == fake.shape[-1] == size and torch.equal(real, condition.native * 2 - 1)
    K = intrinsics_from_fov(model.mofa.decoder.fov, (size, size)).expand(4, 3, 3)
    covered = model._native.rasterize(condition.decoded.vertices, model.mofa.decoder.model.faces, K).mask[
        :, None
    ]
    assert covered.any() and not covered.all()
    assert torch.equal(
        torch.where(covered, 0.0, fake), torch.where(covered, 0.0, real)
    )  # untouched background


def photos_in_order(root, split="train"):
    """The crops of the shards under ``root/split`` in order, in batches of 4, in [0, 1]."""
    from facegen.data.streams import ShardStream, expand_shards

    return [b["image"].float() / 255 for b in ShardStream(expand_shards(str(root / split)), 4)]


def test_the_discriminator_sees_real_photos_from_their_shards_never_the_composites_backgrounds(
    mofa_setup, mofa_checkpoint, face_stylegan_checkpoint, tmp_path
):
    """``SeedDataModule(real=...)``: each training batch of seeds comes with as many real face crops from shards,
    and they (at D's resolution), not the 2D generator's images, are D's real inputs; validation's KID compares
    the composites with them."""
    import lightning as L
    import torch.nn.functional as F

    from facegen.data import SeedDataModule
    from facegen.data.streams import ShardStream, expand_shards

    root, _ = mofa_setup
    checkpoint, _ = face_stylegan_checkpoint
    torch.manual_seed(0)
    model = composite_model(mofa_checkpoint, checkpoint)
    data = SeedDataModule(train_seeds="0-15", val_seeds="100-107", batch_size=4, real=str(root / "train"))
    shown, step = [], model.adversarial_step

    def recorded(real, fake, batch_size):
        shown.append(real.detach().clone())
        return step(real, fake, batch_size)

    model.adversarial_step = recorded
    trainer = cpu_trainer(limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(model, data)
    photos = (
        torch.cat([b["image"] for b in ShardStream(expand_shards(str(root / "train")), 16)]).float() / 255
    )
    photos = (
        F.interpolate(photos, size=(16, 16), mode="bilinear", antialias=True) * 2 - 1
    )  # at D's resolution
    assert shown and all(real.shape == (4, 3, 16, 16) for real in shown)
    for real in shown:  # every real input is one of the shards' photos, none a 2D-generator image
        distance = (real[:, None] - photos[None]).abs().amax((2, 3, 4))
        assert (distance.min(1).values < 1e-5).all()
    model.adversarial_step = step
    checker = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path)
    measured = []  # the images validation measures, real and fake in turn
    hook = model.features.register_forward_hook(lambda _, inputs, __: measured.append(inputs[0].clone()))
    checker.validate(model, data, verbose=False)
    hook.remove()
    assert torch.isfinite(checker.callback_metrics["val/kid_render"])
    validation_real = measured[0::2]
    assert len(validation_real) == 2  # the validation seeds' two batches, each beside the next real photos
    assert all(torch.equal(a, b) for a, b in zip(validation_real, photos_in_order(root), strict=False))
    # held-out real images for validation (data.val_real): KID against photos D never learnt from
    held_out = SeedDataModule(
        train_seeds="0-15",
        val_seeds="100-107",
        batch_size=4,
        real=str(root / "train"),
        val_real=str(root / "val"),
    )
    measured.clear()
    hook = model.features.register_forward_hook(lambda _, inputs, __: measured.append(inputs[0].clone()))
    checker.validate(model, held_out, verbose=False)
    hook.remove()
    validation_real = measured[0::2]
    assert validation_real and all(
        torch.equal(a, b) for a, b in zip(validation_real, photos_in_order(root, "val"), strict=False)
    )
    assert not torch.equal(validation_real[0], photos_in_order(root)[0])
    with pytest.raises(FileNotFoundError, match="data.real"):
        SeedDataModule(train_seeds="0-15", real=str(tmp_path / "missing-{000..001}.tar"))
