"""MoFA: code layout from the face model, initial code, losses and gradients, bad input, metrics, and the
`facegen fit` CLI (in-process, exact resume from a mid-epoch checkpoint, and DDP over two CPU processes)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from facegen.cli import main
from facegen.data.batch import FaceBatch
from facegen.decoder import CodeLayout, FaceCode
from facegen.errors import ConfigError
from facegen.evaluation import vertex_error
from facegen.fitting import FitSchedule, PhotometricStage, fit
from facegen.geometry import ambient_sh, euler_to_matrix
from facegen.tasks import LossWeights, MoFA
from tests.conftest import ROOT
from tests.data_helpers import cpu_config, face_batch

SIZE = 48


def tiny_mofa(**kwargs) -> MoFA:
    return MoFA(image_size=SIZE, depths=(1, 1), width=8, **kwargs)


def random_batch(batch: int = 3) -> FaceBatch:
    return face_batch(torch.rand(batch, 3, SIZE, SIZE), torch.rand(batch, 68, 2) * (SIZE - 1))


def test_code_layout_follows_the_face_model(ict_facegen_npz):
    assert tiny_mofa().layout == CodeLayout(shape=80, expression=16, albedo=80)
    ict = tiny_mofa(face_model=str(ict_facegen_npz), albedo_rank=6)
    assert ict.layout == CodeLayout(shape=80, expression=53, albedo=6)  # no albedo basis: a learned one
    learned = tiny_mofa(reflectance="learned", albedo_rank=5)  # a learned basis on a model that has its own
    assert learned.layout.albedo == 5 and learned.decoder(learned(random_batch(2).image)).albedo.shape[0] == 2
    with pytest.raises(ValueError, match="has no albedo basis.*reflectance: learned"):
        tiny_mofa(face_model=str(ict_facegen_npz), reflectance="model")


def test_untrained_encoder_outputs_the_mean_face_frontal_and_ambient_light():
    model = tiny_mofa()
    code = model(torch.rand(2, 3, SIZE, SIZE))
    assert torch.equal(code.shape, torch.zeros_like(code.shape)) and torch.equal(
        code.rotation, torch.zeros(2, 3)
    )
    assert torch.allclose(code.light, ambient_sh(2))
    landmarks = model.decoder(code).landmarks
    assert landmarks[..., 0].min() > 0.15 * SIZE and landmarks[..., 0].max() < 0.85 * SIZE  # face in frame


@pytest.mark.parametrize("photometric", ["points", "raster"])
def test_every_loss_term_is_finite_and_reaches_the_encoder(photometric):
    model = tiny_mofa(photometric=photometric)
    batch = random_batch()
    terms = model.loss_terms(model.targets(batch), model(batch.image))
    assert {"photometric", "landmark", "shape", "expression", "albedo", "light"} <= set(terms)
    head = model.encoder.head
    for name in ("photometric", "landmark"):
        model.zero_grad()
        (grad,) = torch.autograd.grad(terms[name], head.bias, retain_graph=True)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_learned_albedo_is_regularised_for_models_without_one(ict_facegen_npz):
    model = tiny_mofa(face_model=str(ict_facegen_npz), albedo_rank=4)
    batch = random_batch(2)
    terms = model.loss_terms(model.targets(batch), model(batch.image))
    assert terms["albedo_smoothness"] > 0
    grad = torch.autograd.grad(terms["albedo_smoothness"], model.decoder.albedo.basis)[0]
    assert grad.abs().sum() > 0


def photometric(**settings) -> FitSchedule:
    """A fitting schedule with only the photometric stage."""
    return FitSchedule(photometric=PhotometricStage(**settings))


def test_landmarks_count_by_the_detector_confidence():
    model, batch = tiny_mofa(), random_batch(2)
    code = model(batch.image)
    wrong = batch.landmarks.clone()
    wrong[:, 40] += 30.0  # one landmark far off, with zero confidence
    doubt = torch.ones(2, 68).index_fill(1, torch.tensor([40]), 0.0)

    def landmark_term(landmarks, confidence) -> float:
        face = dataclasses.replace(batch, landmarks=landmarks, confidence=confidence)
        return model.loss_terms(model.targets(face), code)["landmark"].item()

    assert landmark_term(wrong, doubt) == pytest.approx(landmark_term(batch.landmarks, doubt))
    assert landmark_term(wrong, torch.ones(2, 68)) > landmark_term(batch.landmarks, torch.ones(2, 68))
    assert model.point_weights(dataclasses.replace(batch, confidence=doubt))[:, 40].eq(0).all()


def test_refinement_uses_its_own_loss_weights_when_given():
    model, batch = tiny_mofa(), random_batch()
    code = model(batch.image)
    weights = LossWeights(landmark=2e-2, shape=1e-4, expression=1e-4, albedo=1e-4)
    history = model.fitted(batch, code, photometric(steps=1, weights=weights)).history
    default = model.fitted(batch, code, photometric(steps=1)).history
    targets = model.targets(batch)
    assert history[0] == pytest.approx(model.weighted_loss(targets, code, weights).item())
    assert default[0] == pytest.approx(model.weighted_loss(targets, code).item()) != history[0]
    model.fit_schedule = photometric(steps=1, weights=weights)  # the model's fitting weights are the fallback
    fallback = model.fitted(batch, code, photometric(steps=1)).history
    assert fallback[0] == pytest.approx(history[0])
    raster = tiny_mofa(
        photometric="raster"
    )  # optional terms follow the weights in use, not the training ones
    assert "ssim" in raster.loss_terms(targets, code, weights=LossWeights(ssim=0.5))
    assert "ssim" not in raster.loss_terms(targets, code)
    with pytest.raises(ValueError, match="validate_fitted is a number of validation batches"):
        tiny_mofa(validate_fitted=-1)


@pytest.mark.parametrize("mode", ["points", "raster"])
def test_a_stage_on_reflectance_and_light_decodes_the_geometry_once_with_the_same_fit(mode):
    model, batch = tiny_mofa(photometric=mode), random_batch()
    with torch.no_grad():
        code = model(batch.image)
    code = code._replace(shape=torch.randn_like(code.shape) * 0.5, rotation=code.rotation + 0.1)
    options = photometric(steps=4, parts=("albedo", "light"))
    targets = model.targets(batch)
    fitted = model.fitted(batch, code, options)  # the geometry decoded once
    # the same stage with every part listed (decoded at every step) and only reflectance and light moving
    everything = model.fit_problem(options)._replace(
        objective=lambda t, c, decoded: model.weighted_loss(t, c._replace(**frozen(code)), None)
    )
    generic = fit(everything, targets, code, FitSchedule(photometric=PhotometricStage(4, lr=0.02)))
    assert fitted.history == pytest.approx(generic.history, rel=1e-5)
    assert torch.allclose(fitted.code.light, generic.code.light, atol=1e-5)
    assert torch.equal(fitted.code.shape, code.shape)


def frozen(code) -> dict:
    """The geometry parts of ``code``, detached: put into a moving code, they keep it from moving them."""
    return {part: getattr(code, part).detach() for part in ("rotation", "translation", "shape", "expression")}


def test_a_nan_loss_stops_with_the_step_and_term_or_skips_the_batch():
    batch = random_batch()
    batch.landmarks[0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="step 0: loss term 'landmark' is nan"):
        tiny_mofa().training_step(batch, 0)
    assert tiny_mofa(on_nonfinite="skip").training_step(batch, 0) is None


def test_vertex_error_ignores_rigid_motion():
    vertices = torch.randn(2, 50, 3)
    rotation = euler_to_matrix(torch.tensor([[0.3, -0.5, 0.2], [1.0, 0.1, -0.4]]))
    moved = vertices @ rotation.transpose(1, 2) + torch.tensor([[1.0, 2.0, 3.0]]).unsqueeze(1)
    assert vertex_error(moved, vertices).max() < 1e-5
    assert vertex_error(moved * 1.1, vertices).min() > 0.01
    assert vertex_error(moved * 1.1, vertices, scale=True).max() < 1e-5


# ----------------------------------------------------------------------------- the CLI
def tiny_config(folder: Path, shards: Path, **trainer) -> Path:
    config = cpu_config(ROOT / "configs" / "mofa.yaml", folder, **{"max_steps": 4, **trainer})
    config["trainer"]["callbacks"][0]["init_args"]["dirpath"] = str(folder / "checkpoints")
    config["trainer"]["callbacks"][1]["init_args"]["every_n_steps"] = 2
    config["model"]["init_args"].update(image_size=SIZE, depths=[1, 1], width=8)
    config["model"]["init_args"]["fit"]["photometric"]["steps"] = 40
    data = config["data"]["init_args"]
    data.update(
        train=str(shards / "train"),
        val=str(shards / "val"),
        synthetic=None,
        batch_size=4,
        num_workers=0,
        image_size=SIZE,
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mofa.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


#: Loss terms every MoFA training run logs.
TRAINING_TERMS = {"train/photometric", "train/landmark", "train/shape", "train/light"}


def metrics(folder: Path, name: str = "mofa") -> list[dict]:
    (path,) = folder.glob(f"runs/{name}/version_*/metrics.csv")
    return [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(path.open())]


def test_fit_on_synthetic_shards_logs_losses_metrics_images_and_checkpoints(
    tmp_path, tiny_shards, monkeypatch
):
    refinements = []
    fitted = MoFA.fitted
    monkeypatch.setattr(MoFA, "fitted", lambda self, *args: refinements.append(1) or fitted(self, *args))
    main(["fit", "--config", str(tiny_config(tmp_path, tiny_shards))])
    assert len(refinements) == 2  # the first batch of each of the two validations, none in the sanity check
    rows = metrics(tmp_path)
    logged = set().union(*rows)
    assert {
        *TRAINING_TERMS,
        "val/vertex_error_mm",
        "val/vertex_error_mean_face",
        "val/landmark_nme",
        "val/photometric_error",
    } <= logged
    assert all(math.isfinite(v) for row in rows for v in row.values())
    validations = [r for r in rows if "val/fitted_landmark_error_px" in r]
    assert len(validations) == 2  # encoder + refinement on the first validation batch, beside the encoder
    assert all(r["val/fitted_landmark_error_px"] < r["val/landmark_error_px"] for r in validations)
    # the README's quickstart numbers come from benchmarks/quickstart.py, which reads these rows
    from benchmarks.quickstart import newest_metrics, quickstart_numbers

    quoted = quickstart_numbers(newest_metrics(tmp_path / "runs" / "mofa"))
    for which, row in (("first", validations[0]), ("last", validations[-1])):
        assert quoted[which]["step"] == row["step"]
        assert quoted[which]["fitted"]["landmark_error_px"] == round(row["val/fitted_landmark_error_px"], 4)
        assert quoted[which]["encoder"]["vertex_error_ratio"] == round(row["val/vertex_error_ratio"], 4)
    (images,) = tmp_path.glob("runs/mofa/version_*/images")
    assert len(list(images.glob("reconstruction-*.png"))) == 2
    assert list(tmp_path.rglob("last.ckpt"))


@pytest.mark.parametrize(
    "name", ["mofa.yaml", "mofa_ict.yaml", "mofa_bfm.yaml", "mofa_paper.yaml", "mofa_long.yaml"]
)
def test_mofa_configs_parse_with_their_defaults(capsys, name):
    with pytest.raises(SystemExit) as raised:
        main(["fit", "--config", str(ROOT / "configs" / name), "--print_config"])
    assert raised.value.code == 0 and "facegen.tasks.MoFA" in capsys.readouterr().out


def test_fit_mixes_new_synthetic_faces_into_the_photo_shards_from_the_config(
    tmp_path, tiny_shards, monkeypatch
):
    """data.train shards (here standing in for photos) with data.synthetic {stream: true, mix: 0.5}: facegen fit
    trains on batches half of which are faces rendered on the fly."""
    from facegen.data.synth import SynthJob

    rendered = []
    render_batch = SynthJob.render_batch
    monkeypatch.setattr(
        SynthJob, "render_batch", lambda self, *args: rendered.append(args[2]) or render_batch(self, *args)
    )
    synthetic = {"root": str(tmp_path / "synth"), "val": 0, "stream": True, "mix": 0.5}
    config = tiny_config(tmp_path, tiny_shards, max_steps=3)
    main(["fit", "--config", str(config), "--data.init_args.synthetic", json.dumps(synthetic)])
    assert sum(rendered) >= 6  # 2 new faces in each of the 3 batches of 4 (rendered in chunks of 4)
    losses = [row["train/loss"] for row in metrics(tmp_path) if "train/loss" in row]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
    assert not (tmp_path / "synth" / "train").exists()  # nothing written for the new faces


def test_the_paper_config_trains_a_few_steps_with_its_objective(tmp_path, tiny_shards):
    """configs/mofa_paper.yaml on the built-in model and the tiny shards: every loss term is logged, each image
    is averaged on its own, nothing is fitted after the encoder, and its objective prefers the true face."""
    config = cpu_config(ROOT / "configs" / "mofa_paper.yaml", tmp_path, max_steps=3, devices=1)
    config["trainer"].update(strategy="auto", sync_batchnorm=False, precision="32-true")
    config["trainer"]["logger"] = {
        "class_path": "lightning.pytorch.loggers.CSVLogger",
        "init_args": {"save_dir": str(tmp_path / "runs"), "name": "mofa_paper"},
    }
    config["trainer"]["callbacks"] = config["trainer"]["callbacks"][:1]
    config["trainer"]["callbacks"][0]["init_args"]["dirpath"] = str(tmp_path / "checkpoints")
    config["model"]["init_args"].update(face_model="builtin", image_size=SIZE, depths=[1], width=8)
    data = config["data"]["init_args"]
    data.update(train=str(tiny_shards / "train"), val=str(tiny_shards / "val"), batch_size=4, num_workers=0)
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(path)])
    logged = set().union(*metrics(tmp_path, "mofa_paper"))
    assert {*TRAINING_TERMS, "val/vertex_error_mm"} <= logged
    assert not any(key.startswith("val/fitted_") for key in logged)
    model = MoFA.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu")
    assert model.hparams.photometric_average == "image" and not model.fit_schedule.active
    weights = model.weights
    assert weights.landmark == 1e-2 and weights.shape == weights.expression == weights.albedo == 1e-4


def test_ict_config_trains_with_a_learned_reflectance(tmp_path, ict_facegen_npz):
    """configs/mofa_ict.yaml with the shared ICT model: synthetic ICT shards are rendered, then it trains."""
    config = cpu_config(ROOT / "configs" / "mofa_ict.yaml", tmp_path, max_steps=2)
    config["trainer"]["callbacks"] = config["trainer"]["callbacks"][:1]
    config["model"]["init_args"].update(face_model=str(ict_facegen_npz), image_size=SIZE, depths=[1], width=8)
    data = config["data"]["init_args"]
    data["synthetic"].update(root=str(tmp_path / "synth"), train=8, val=4)  # model and size follow the model
    data.update(batch_size=4, num_workers=0)
    path = tmp_path / "ict.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(path)])
    (metrics_file,) = tmp_path.glob("runs/mofa_ict/version_*/metrics.csv")
    rows = [{k: float(v) for k, v in r.items() if v} for r in csv.DictReader(metrics_file.open())]
    assert any("train/albedo_smoothness" in r for r in rows)
    assert any(math.isfinite(r.get("val/vertex_error_mm", math.nan)) for r in rows)


def test_resumed_run_reproduces_the_uninterrupted_losses_exactly(tmp_path, tiny_shards):
    checkpoint = {
        "class_path": "facegen.callbacks.ModelCheckpoint",
        "init_args": {"every_n_train_steps": 3, "save_top_k": -1, "filename": "{step}"},
    }

    def config(folder: Path) -> Path:
        path = tiny_config(folder, tiny_shards, max_steps=6)
        spec = yaml.safe_load(path.read_text())
        spec["trainer"]["callbacks"] = [checkpoint]
        path.write_text(yaml.safe_dump(spec))
        return path

    def losses(folder: Path) -> dict[int, float]:
        return {int(r["step"]): r["train/loss"] for r in metrics(folder) if "train/loss" in r}

    main(["fit", "--config", str(config(tmp_path / "full"))])
    (middle,) = (tmp_path / "full").rglob("step=3.ckpt")
    main(["fit", "--config", str(config(tmp_path / "resumed")), "--ckpt_path", str(middle)])
    after = {step: loss for step, loss in losses(tmp_path / "full").items() if step >= 3}
    assert len(after) == 3 and losses(tmp_path / "resumed") == after


def test_same_config_trains_with_ddp_on_two_cpu_processes(tmp_path, tiny_shards):
    """Both ranks step in lockstep (gloo): rank-0-only work such as image logging must not issue collectives."""
    path = tiny_config(tmp_path, tiny_shards, strategy="ddp", devices=2)
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "facegen.cli", "fit", "--config", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = metrics(tmp_path)
    steps = {int(r["step"]) for r in rows if "train/loss" in r}
    assert steps == {0, 1, 2, 3}
    assert all(math.isfinite(r["val/vertex_error"]) for r in rows if "val/vertex_error" in r)
    (images,) = tmp_path.glob("runs/mofa/version_*/images")
    assert len(list(images.glob("reconstruction-*.png"))) == 2
    (checkpoint,) = tmp_path.rglob("last.ckpt")
    assert torch.load(checkpoint, weights_only=False)["global_step"] == 4


def test_geometry_and_losses_stay_float32_under_bf16_autocast():
    """Mixed precision speeds up the encoder only: projected landmarks, renders and losses are computed in
    float32 inside autocast (in bf16 the pixel coordinates of a 224² image would be off by up to a pixel)."""
    model = MoFA(image_size=224, depths=(1,), width=8)
    code = model.layout.zeros(2)._replace(rotation=torch.tensor([[0.1, 0.4, 0.05], [-0.2, -0.3, 0.0]]))
    code = code._replace(translation=torch.tensor([[0.3, -0.2, 0.5], [-0.1, 0.4, -0.3]]))
    batch = face_batch(torch.rand(2, 3, 224, 224), torch.rand(2, 68, 2) * 223)
    exact = model.decoder(code)
    exact_terms = model.loss_terms(model.targets(batch), code)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model.decoder(code)
        rendered = model.decoder.render(mixed, code.light)
        terms = model.loss_terms(model.targets(batch), FaceCode(*(part.bfloat16() for part in code)))
        encoded = model(batch.image)
    assert (mixed.landmarks - exact.landmarks).abs().max() < 1e-3 and mixed.landmarks.dtype == torch.float32
    assert rendered.image.dtype == torch.float32
    assert all(value.dtype == torch.float32 for value in terms.values())
    assert torch.allclose(terms["landmark"], exact_terms["landmark"], rtol=1e-2)
    assert encoded.rotation.dtype == torch.bfloat16  # the encoder does run in reduced precision


def test_photometric_term_averages_over_the_batch_or_per_image():
    from facegen.losses import masked_mean

    values = torch.tensor([[1.0, 1.0, 1.0, 1.0], [5.0, 5.0, 5.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    assert masked_mean(values, mask) == pytest.approx(9 / 5)  # every visible value counts the same
    assert masked_mean(values, mask, average="image") == pytest.approx(3.0)  # every face counts the same
    model = tiny_mofa(photometric_average="image")
    batch = random_batch(3)
    batch.mask[0, :, : SIZE // 2] = 0  # one face half hidden: fewer visible points than the others
    code = model(batch.image)
    per_face = [
        model.loss_terms(model.targets(batch.take([i])), model(batch.image[i : i + 1]))["photometric"]
        for i in range(3)
    ]
    assert torch.allclose(
        model.loss_terms(model.targets(batch), code)["photometric"], torch.stack(per_face).mean(), rtol=1e-5
    )


def test_the_former_name_refine_is_accepted_with_a_warning_for_one_release(tmp_path):
    schedule = FitSchedule(photometric=PhotometricStage(steps=2))
    with pytest.warns(FutureWarning, match="model.refine is renamed model.fit"):
        model = tiny_mofa(refine=schedule, validate_refined=1)
    assert model.fit_schedule == schedule and model.validate_fitted == 1
    with pytest.warns(FutureWarning):
        assert not tiny_mofa(refine=None).fit_schedule.active  # refine: null still means no fit
    with pytest.raises(
        ConfigError, match="model.refine is the former name of model.fit: give only model.fit"
    ):
        tiny_mofa(refine=schedule, fit=schedule)
    assert "refine" not in tiny_mofa(fit=schedule).hparams and "fit" not in tiny_mofa(fit=schedule).hparams


@pytest.mark.parametrize("mode", ["points", "raster"])
def test_each_faces_own_objective_comes_in_one_pass_as_it_would_alone(mode):
    model, batch = tiny_mofa(photometric=mode, photometric_average="batch"), random_batch(3)
    with torch.no_grad():
        code = model(batch.image)
    model.fit_schedule = photometric(steps=1, weights=LossWeights(landmark=0.02, ssim=0.3))
    targets, weights = model.targets(batch), model.fit_problem().weights
    together = model.face_losses(targets, code)
    alone = [
        model.weighted_loss(targets.take([i]), FaceCode(*(part[i : i + 1] for part in code)), weights)
        for i in range(3)
    ]
    assert together.shape == (3,) and together.tolist() == pytest.approx([a.item() for a in alone], rel=1e-5)


def test_the_objective_benchmark_finds_where_the_true_faces_score_best(tmp_path):
    """benchmarks/objective.py on a few faces of the quickstart's data: under the default loss weights (those of
    configs/mofa.yaml) the objective prefers shrunken shapes over the true ones; with the landmark term at 1e-2
    and the priors at 1e-4 (the weights of configs/mofa_paper.yaml, mofa_long.yaml and mofa_bfm.yaml) the truth
    scores best, better than the mean face and than its shape and expression shrunk or grown."""
    from benchmarks.objective import build_model, curve, faces

    model = build_model(yaml.safe_load((ROOT / "configs" / "mofa.yaml").read_text()), 64)
    batch, truth = faces(model, 16, tmp_path / "faces")
    assert curve(model, batch, truth, model.weights)["best_scale"] < 0.75
    balanced = LossWeights(landmark=1e-2, shape=1e-4, expression=1e-4, albedo=1e-4)
    result = curve(model, batch, truth, balanced)
    assert result["truth_beats_mean_face"] and result["best_scale"] in (0.9, 1.0, 1.1), result["objective"]
    # the objectives of the configs that train long (their weights, each image averaged alone) on the same faces
    for name in ("mofa_paper.yaml", "mofa_long.yaml", "mofa_bfm.yaml"):
        config = yaml.safe_load((ROOT / "configs" / name).read_text())
        config["model"]["init_args"].update(face_model="builtin", depths=[1], width=8)
        long_model = build_model(config, 64)
        assert long_model.hparams.photometric_average == "image"
        result = curve(long_model, batch, truth, long_model.weights)
        assert result["truth_beats_mean_face"] and result["best_scale"] in (0.9, 1.0, 1.1), (name, result)


def test_the_objective_with_a_learned_reflectance_holds_it_at_the_faces_own(tmp_path, builtin):
    """A face model without an albedo basis (the built-in one with its basis removed, as ICT-FaceKit has none):
    the benchmark holds the learned reflectance at the generator's skin albedo with the faces' true coefficients,
    so under configs/mofa_long.yaml's weights the true face scores best, and under configs/mofa_ict.yaml's (the
    quickstart's) a shrunken one."""
    from benchmarks.objective import build_model, curve, faces
    from facegen.data.synth import RandomSkinAlbedo
    from facegen.morphable.model import MorphableModel

    arrays = {k: v for k, v in builtin.to_arrays().items() if not k.startswith("albedo")}
    path = tmp_path / "no_albedo.npz"
    MorphableModel.from_arrays(arrays).save(path)
    learned = {"face_model": str(path), "reflectance": "learned", "depths": [1], "width": 8}
    results = {}
    for name in ("mofa_long.yaml", "mofa_ict.yaml"):
        config = yaml.safe_load((ROOT / "configs" / name).read_text())
        config["model"]["init_args"].update(learned)
        model = build_model(config, 64)
        assert isinstance(model.decoder.albedo, RandomSkinAlbedo)
        batch, truth = faces(model, 12, tmp_path / name)
        assert truth.albedo.shape == (12, RandomSkinAlbedo.rank)
        results[name] = curve(model, batch, truth, model.weights)
    assert results["mofa_long.yaml"]["best_scale"] in (0.9, 1.0, 1.1), results["mofa_long.yaml"]["objective"]
    assert results["mofa_ict.yaml"]["best_scale"] < 0.75, results["mofa_ict.yaml"]["objective"]


def test_the_learning_curve_reports_each_budget_and_draws_the_runs(
    tmp_path, tiny_shards, capsys, monkeypatch
):
    """benchmarks/learning_curve.py on the tiny shards: a self-supervised and a supervised run validated after 2
    and 4 steps, one JSON line per budget, and the plot of both."""
    import numpy as np
    from PIL import Image

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import learning_curve
    from learning_curve import fit_arguments
    from learning_curve import main as curve

    config = tiny_config(tmp_path / "tiny", tiny_shards)
    out = tmp_path / "curve"
    modes = ("self", "supervised", "supervised-vertices")
    for mode in modes:
        argv = ["--config", str(config), "--steps", "2", "4", "--mode", mode, "--out", str(out)]
        assert curve(argv) == 0
    rows = [json.loads(line) for line in (out / "curve.jsonl").read_text().splitlines()]
    assert [(r["mode"], r["steps"]) for r in rows] == [(mode, steps) for mode in modes for steps in (2, 4)]
    # the supervised bounds learn from the code's parts, or from the neutral vertices for shape and expression
    for mode, terms in (("supervised", {"shape", "expression"}), ("supervised-vertices", {"vertices"})):
        with next(
            (out / f"{mode}-{config.stem}-config-config-config").glob("version_*/metrics.csv")
        ).open() as handle:
            logged = {
                name.split("supervised_")[-1] for name in next(csv.reader(handle)) if "supervised_" in name
            }
        assert terms <= logged and not ({"shape", "expression", "vertices"} - terms) & logged, (mode, logged)
    assert all(math.isfinite(r["vertex_error_ratio"]) and r["vertex_error_ratio"] > 0 for r in rows)
    # each run is named by its mode and configs (runs of different configs are never drawn as one)
    assert [r["run"] for r in rows] == [f"{r['mode']}-{config.stem}-config-config-config" for r in rows]
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"run"')]
    assert printed == rows
    # a run is resumed from its last state when run again: a second sitting, longer (8 steps), stopped by SIGTERM
    # after step 7 reports the budgets reached (those of the first sitting unchanged) and names the rest ...
    run = out / rows[0]["run"]
    assert (run / "checkpoints" / "last.ckpt").is_file()
    argv = ["--config", str(config), "--steps", "2", "4", "6", "8", "--out", str(out)]
    signal_at = {"class_path": "tests.hostile.test_signals_and_links.SignalAt", "init_args": {"index": 7}}
    with monkeypatch.context() as patch:
        patch.setattr(
            learning_curve,
            "fit_arguments",
            lambda args: fit_arguments(args) + ["--trainer.callbacks+", json.dumps(signal_at)],
        )
        with pytest.raises(
            SystemExit, match=r"stopped by SIGTERM before the budgets \[8\]; the same command goes on"
        ):
            curve(argv)
    lines = (out / "curve.jsonl").read_text().splitlines()
    again = [json.loads(line) for line in lines[6:]]
    assert [(r["steps"], r["max_steps"]) for r in again] == [(2, 8), (4, 8), (6, 8)]
    assert [r["vertex_error_ratio"] for r in again[:2]] == [r["vertex_error_ratio"] for r in rows[:2]]
    # ... and the third goes on from step 7 to the last budget
    assert curve(argv) == 0
    last = [json.loads(line) for line in (out / "curve.jsonl").read_text().splitlines()][9:]
    assert [r["steps"] for r in last] == [2, 4, 6, 8] and last[:3] == again
    with (run / "version_1" / "metrics.csv").open() as handle:
        trained = [int(row["step"]) for row in csv.DictReader(handle) if row.get("train/loss")]
    assert trained and min(trained) >= 4, trained
    with (run / "version_2" / "metrics.csv").open() as handle:
        trained = [int(row["step"]) for row in csv.DictReader(handle) if row.get("train/loss")]
    assert trained and min(trained) >= 7, trained
    figure = tmp_path / "curve.png"
    assert curve(["--plot", str(out / "curve.jsonl"), "--figure", str(figure)]) == 0
    picture = np.asarray(Image.open(figure).convert("RGB"))
    assert picture.shape == (400, 640, 3)
    # each run and length drawn in its colour (self 4 and 8 steps, the two bounds; lines may overlap: legend)
    for colour in ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189)):
        assert (np.abs(picture.astype(int) - colour).max(-1) < 40).sum() > 20, colour
