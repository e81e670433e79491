"""What facegen's StyleGAN2 tasks share: the networks (a generator, its exponential moving average, a
discriminator, adaptive augmentation), starting them from a pretrained StyleGAN2 file, and one training iteration
with manual optimisation: a discriminator step, lazy R1 every ``r1_interval`` iterations, a generator step
(optional lazy path-length regularisation) and the EMA update. ``trainer.max_steps`` counts optimizer steps (two
per iteration, plus R1/path steps), as Lightning does for manual optimisation.

Subclasses say what the discriminator sees: the real inputs of a batch and how a generator output is presented
(:meth:`AdversarialTask.adversarial_step`)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor

from facegen.evaluation.distribution import frechet_distance, kernel_inception_distance
from facegen.losses.adversarial import discriminator_loss, generator_loss, path_length_penalty, r1_penalty
from facegen.nets.ada import AdaptiveAugment
from facegen.nets.gan_import import GANWeights, transfer
from facegen.nets.stylegan import Discriminator, Generator, to_unit
from facegen.tasks.base import FaceTask


@dataclass
class Regularization:
    """R1 weight gamma and interval; path-length weight (0: off) and interval; ADA target and speed; the
    probability of style mixing in generator samples (StyleGAN2: 0.9; 0: off)."""

    r1_gamma: float = 1.0
    r1_interval: int = 16
    path_length: float = 0.0
    path_interval: int = 4
    ada_target: float = 0.6
    ada_speed_images: int = 100_000
    ada: bool = True
    style_mixing: float = 0.9


class AdversarialTask(FaceTask):
    """Base of the StyleGAN2 tasks; subclasses call :meth:`build_networks` in ``__init__`` (after
    ``save_hyperparameters``, which must hold ``lr``, ``betas``, ``z_dim`` and ``ema_half_life_images``) and
    :meth:`adversarial_step` in ``training_step``."""

    def build_networks(
        self, generator: Generator, discriminator: Discriminator, regularization: Regularization
    ) -> None:
        """Set the networks, the EMA copy of ``generator``, adaptive augmentation and the iteration counters."""
        self.regularization = regularization
        self.automatic_optimization = False
        self.generator = generator
        self.generator_ema = copy.deepcopy(generator).eval().requires_grad_(False)
        self.discriminator = discriminator
        self.augment = AdaptiveAugment(
            regularization.ada_target, regularization.ada_speed_images, adaptive=regularization.ada
        )
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
        self.register_buffer("mean_path_length", torch.zeros(()))

    def start_from(self, gan: GANWeights, setting: str = "model.pretrained") -> None:
        """Copy the networks of ``gan`` wherever names and shapes match; one line reports how many tensors each
        network took and which it left at their initialisation."""
        generator = gan.states.get("G") or gan.states.get("G_ema") or {}
        reports = []
        for name, module, state in (
            ("G", self.generator, generator),
            ("G_ema", self.generator_ema, gan.states.get("G_ema") or generator),
            ("D", self.discriminator, gan.states.get("D") or {}),
        ):
            copied, left = transfer(module, state)
            shown = (
                f" (kept {len(left)}: {', '.join(left[:4])}{', ...' if len(left) > 4 else ''})"
                if left
                else ""
            )
            reports.append(f"{name} {copied}/{copied + len(left)} tensors{shown}")
        rank_zero_info(f"{setting} {gan.source}: " + "; ".join(reports))

    def generate(self, z: Tensor, ema: bool = False, truncation: float = 1.0) -> Tensor:
        """z (B, z_dim) -> generator outputs (B, C, R, R) in [0, 1]: the training generator with random noise and
        style mixing, or (``ema``) the EMA generator with its constant noise and ``truncation``."""
        if ema:
            return to_unit(self.generator_ema(z, truncation, noise_mode="const"))
        ws = self.generator.mixed_ws(z, self.regularization.style_mixing)
        return to_unit(self.generator.synthesis(ws, noise_mode="random"))

    def latents(self, batch_size: int) -> Tensor:
        return torch.randn(batch_size, self.hparams.z_dim, device=self.device)

    def adversarial_step(
        self, real: Tensor, present: Callable[[Tensor], Tensor], batch_size: int
    ) -> dict[str, Tensor]:
        """One iteration: ``real`` (B, C, H, W) discriminator inputs in [-1, 1] against generator outputs shown
        through ``present`` (generator output in [0, 1] -> discriminator input); returns the logged values."""
        g_optimizer, d_optimizer = self.optimizers()
        regularization, step = self.regularization, int(self.iteration)
        with torch.no_grad():
            fake = present(self.generate(self.latents(batch_size)))
        real_logits = self.discriminator(self.augment(real))
        fake_logits = self.discriminator(self.augment(fake))
        d_loss = discriminator_loss(real_logits, fake_logits)
        self._check_finite(d_loss=d_loss)
        d_optimizer.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        d_optimizer.step()
        self.augment.update(real_logits.detach())
        logs = {
            "d_loss": d_loss.detach(),
            "real_logit": real_logits.detach().mean(),
            "fake_logit": fake_logits.detach().mean(),
            "ada_p": self.augment.p,
        }

        if regularization.r1_gamma > 0 and step % regularization.r1_interval == 0:
            real_r1 = real.detach().requires_grad_(True)
            penalty = r1_penalty(self.discriminator(self.augment(real_r1)), real_r1)
            d_optimizer.zero_grad(set_to_none=True)
            self.manual_backward(penalty * regularization.r1_gamma / 2 * regularization.r1_interval)
            d_optimizer.step()
            logs["r1"] = penalty.detach()

        generated = self.generate(self.latents(batch_size))
        g_loss = generator_loss(self.discriminator(self.augment(present(generated))))
        self._check_finite(g_loss=g_loss)
        g_optimizer.zero_grad(set_to_none=True)
        self.manual_backward(g_loss)
        g_optimizer.step()
        logs.update(g_loss=g_loss.detach(), fake_std=generated.detach().std(0).mean())
        if logs["fake_std"] < 1e-3:
            rank_zero_warn(
                f"step {step}: generated samples hardly differ (std {logs['fake_std']:.2e}): mode collapse"
            )

        if regularization.path_length > 0 and step % regularization.path_interval == 0:
            ws = self.generator.ws(self.latents(max(1, batch_size // 2))).detach().requires_grad_(True)
            penalty, lengths = path_length_penalty(self.generator.synthesis(ws), ws, self.mean_path_length)
            g_optimizer.zero_grad(set_to_none=True)
            self.manual_backward(penalty * regularization.path_length * regularization.path_interval)
            g_optimizer.step()
            self.mean_path_length.lerp_(lengths, 0.01)
            logs["path_length"] = penalty.detach()

        self.update_ema(batch_size)
        self.iteration += 1
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, prog_bar=False, batch_size=batch_size)
        self.log("train/g_loss_bar", g_loss.detach(), prog_bar=True, batch_size=batch_size, logger=False)
        return logs

    @torch.no_grad()
    def update_ema(self, batch_size: int) -> None:
        beta = 0.5 ** (batch_size / max(1, self.hparams.ema_half_life_images))
        for ema, live in zip(self.generator_ema.parameters(), self.generator.parameters(), strict=True):
            ema.lerp_(live, 1 - beta)
        for ema, live in zip(self.generator_ema.buffers(), self.generator.buffers(), strict=True):
            ema.copy_(live)

    def _check_finite(self, **losses: Tensor) -> None:
        message = self.nonfinite(losses)
        if message is not None:
            raise FloatingPointError(
                f"{message} (G/D diverged; lower model.lr or raise regularization.r1_gamma)"
            )

    def configure_optimizers(self):
        """Adam for G and D with StyleGAN2's lazy-regularisation correction of lr and betas."""

        def adam(parameters, interval: int) -> torch.optim.Adam:
            ratio = interval / (interval + 1) if interval else 1.0
            betas = tuple(b**ratio for b in self.hparams.betas)
            return torch.optim.Adam(parameters, lr=self.hparams.lr * ratio, betas=betas)

        regularization = self.regularization
        g_interval = regularization.path_interval if regularization.path_length > 0 else 0
        d_interval = regularization.r1_interval if regularization.r1_gamma > 0 else 0
        return adam(self.generator.parameters(), g_interval), adam(
            self.discriminator.parameters(), d_interval
        )

    def distribution_metrics(
        self, features: dict[str, list[Tensor]], spaces: tuple[str, ...]
    ) -> dict[str, Tensor]:
        """``val/kid_<space>`` (and its std; ``val/fid_<space>`` when there are more samples than features) from
        the per-batch features ``<space>_real`` and ``<space>_fake`` gathered over all ranks."""
        gathered = {k: self.all_gather(torch.cat(v)).reshape(-1, v[0].shape[-1]) for k, v in features.items()}
        metrics = {}
        for space in spaces:
            real, fake = gathered[f"{space}_real"], gathered[f"{space}_fake"]
            metrics[f"val/kid_{space}"], metrics[f"val/kid_{space}_std"] = kernel_inception_distance(
                real, fake
            )
            if min(real.shape[0], fake.shape[0]) > real.shape[1]:
                metrics[f"val/fid_{space}"] = frechet_distance(real, fake)
        return metrics
