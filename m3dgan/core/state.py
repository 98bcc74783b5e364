"""The nets, optimizers and random streams of a training run: one object owns them.

:class:`RunState` holds the model (prenets, E_att, G and the discriminators), the generator-side
and discriminator optimizers, the noise generator that draws e_s and the reparameterisation
noise, the step, the divergence guard's learning-rate scale, and the moving average of the
generator side's weights when ``train.ema_decay`` > 0 (``core.ema``). The training step
(``core.step.TrainStep``) updates it; ``m3dgan.run_state`` saves and restores it; the divergence
guard (``m3dgan.guard``) rolls it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from m3dgan.config import Config
from m3dgan.core.ema import GeneratorEMA
from m3dgan.core.model import M3DGAN


@dataclass
class RunState:
    """Everything a training step changes. ``noise``: the generator of e_s and the
    reparameterisation noise (seeded alike in every process of a multi-process run). ``ema``:
    the moving average of the generator side (None when ``train.ema_decay`` is 0)."""

    model: M3DGAN
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    noise: torch.Generator
    step: int = 0
    lr_scale: float = 1.0  # product of the divergence guard's factors so far (1: never lowered)
    rollbacks: int = 0  # rollbacks so far in this run, counted against train.max_rollbacks
    train_seconds: float = 0.0  # wall-clock seconds of training so far, all sessions of the run
    ema: GeneratorEMA | None = None

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"g": self.opt_g, "d": self.opt_d}

    def set_lr(self, base_lr: float) -> None:
        """Both optimizers at ``base_lr × lr_scale``."""
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = base_lr * self.lr_scale

    @classmethod
    def create(cls, model: M3DGAN, cfg: Config, device: torch.device) -> RunState:
        """A fresh state for ``model`` (already on ``device``): Adam for each side
        (:func:`make_optimizers`), the noise generator seeded from ``train.seed``, and, when
        ``train.ema_decay`` > 0, an EMA of the generator side starting from its weights now."""
        opt_g, opt_d = make_optimizers(model, cfg, device)
        noise = torch.Generator(device=device).manual_seed(cfg.train.seed + 1)
        decay = cfg.train.ema_decay
        ema = GeneratorEMA(model, decay) if decay > 0 else None
        return cls(model, opt_g, opt_d, noise, ema=ema)

    def rng_states(self) -> dict[str, torch.Tensor]:
        return {"noise": self.noise.get_state(), "torch": torch.get_rng_state()}

    def ema_meta(self) -> dict[str, Any]:
        """What the sidecar records of the EMA besides its tensors: ``{"updates": k}``, or ``{}``
        when it is off."""
        return {} if self.ema is None else {"updates": self.ema.updates}

    def guard_meta(self) -> dict[str, Any]:
        """The run's counters saved beside a checkpoint: the divergence guard's state and the
        training time so far (``train.max_minutes`` counts it over every session)."""
        return {
            "lr_scale": self.lr_scale,
            "rollbacks": self.rollbacks,
            "train_seconds": round(self.train_seconds, 3),
        }

    def set_guard_meta(self, meta: dict[str, Any] | None) -> None:
        meta = meta or {}
        self.lr_scale = float(meta.get("lr_scale", 1.0))
        self.rollbacks = int(meta.get("rollbacks", 0))
        self.train_seconds = float(meta.get("train_seconds", 0.0))


def make_optimizers(model: M3DGAN, cfg: Config, device: torch.device):
    kw = {"lr": cfg.train.lr, "betas": (cfg.train.beta1, cfg.train.beta2)}
    fused = device.type in ("cuda", "cpu")  # one kernel per step instead of one per tensor
    opt_g = torch.optim.Adam(model.generator_parameters(), fused=fused, **kw)
    opt_d = torch.optim.Adam(model.discriminator_parameters(), fused=fused, **kw)
    return opt_g, opt_d


