"""The state of a training run at a step, and the two places it is kept: checkpoints on disk and
an in-memory snapshot.

Everything a resumed run needs to continue exactly where an uninterrupted one would be: weights,
both optimizers (moments, step counts and learning rates), the noise generator and torch's global
RNG, the step, and the divergence guard's state (how often it rolled back and by how much it has
lowered the learning rate, so a lowered rate survives ``--resume``).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from m3dgan import checkpoint as ckpt
from m3dgan.config import Config
from m3dgan.core.model import M3DGAN
from m3dgan.data.store import Manifest
from m3dgan.run_record import RunRecord


@dataclass
class RunState:
    model: M3DGAN
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    noise: torch.Generator
    step: int = 0
    lr_scale: float = 1.0  # product of the divergence guard's factors so far (1: never lowered)
    rollbacks: int = 0  # rollbacks so far in this run, counted against train.max_rollbacks

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"g": self.opt_g, "d": self.opt_d}

    def set_lr(self, base_lr: float) -> None:
        """Both optimizers at ``base_lr × lr_scale``."""
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = base_lr * self.lr_scale

    def rng_states(self) -> dict[str, torch.Tensor]:
        return {"noise": self.noise.get_state(), "torch": torch.get_rng_state()}

    def guard_meta(self) -> dict[str, Any]:
        return {"lr_scale": self.lr_scale, "rollbacks": self.rollbacks}

    def set_guard_meta(self, meta: dict[str, Any] | None) -> None:
        meta = meta or {}
        self.lr_scale = float(meta.get("lr_scale", 1.0))
        self.rollbacks = int(meta.get("rollbacks", 0))


def make_optimizers(model: M3DGAN, cfg: Config, device: torch.device):
    kw = {"lr": cfg.train.lr, "betas": (cfg.train.beta1, cfg.train.beta2)}
    fused = device.type in ("cuda", "cpu")  # one kernel per step instead of one per tensor
    opt_g = torch.optim.Adam(model.generator_parameters(), fused=fused, **kw)
    opt_d = torch.optim.Adam(model.discriminator_parameters(), fused=fused, **kw)
    return opt_g, opt_d


def save(
    run_dir: Path, state: RunState, cfg: Config, manifest: Manifest, vocabs: dict | None = None
) -> Path:
    record = RunRecord(
        config=cfg,
        source=state.model.source_spec,
        target=state.model.target_spec,
        dataset=manifest.name,
        domains=list(manifest.domains),
        classes_count=len(manifest.classes),
        vocab={side: v.to_dict() for side, v in (vocabs or {}).items()},
        # the mel settings the speech side was made with ({} without one): inference vocodes
        # and reads audio with them (m3dgan.infer.Translator.mel_config)
        audio=dict(manifest.audio),
        guard=state.guard_meta(),
    )
    return ckpt.save_checkpoint(
        run_dir,
        state.step,
        state.model,
        optimizers=state.optimizers,
        rng=state.rng_states(),
        meta=record.to_dict(),
        keep=cfg.train.keep_checkpoints,
    )


def restore(state: RunState, checkpoint: ckpt.Checkpoint) -> None:
    checkpoint.load_model(state.model)  # a checkpoint of another model: CheckpointError
    checkpoint.restore_optimizer("g", state.opt_g)
    checkpoint.restore_optimizer("d", state.opt_d)
    noise = checkpoint.rng_state("noise")
    if noise is not None and noise.numel() != state.noise.get_state().numel():
        # saved by a generator of another device type (a run resumed with --device on another
        # machine: CUDA's state is a seed and an offset, the CPU's a Mersenne Twister), so its
        # stream cannot go on here; a new one starts, seeded from the saved state (repeatable)
        digest = hashlib.sha256(noise.numpy().tobytes()).digest()
        state.noise.manual_seed(int.from_bytes(digest[:8], "little"))
    else:
        state.noise.set_state(noise)
    torch.set_rng_state(checkpoint.rng_state("torch"))
    state.step = checkpoint.step
    state.set_guard_meta(checkpoint.meta.get("guard"))


@dataclass
class Snapshot:
    """A copy of a run's state in memory: where the divergence guard rolls back to before the
    first checkpoint exists (a fresh run's initial weights and empty optimizers)."""

    step: int
    model: dict[str, torch.Tensor]
    optimizers: dict[str, dict[str, Any]]
    rng: dict[str, torch.Tensor]
    guard: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def take(cls, state: RunState) -> Snapshot:
        return cls(
            step=state.step,
            model={k: v.detach().clone() for k, v in state.model.state_dict().items()},
            # deepcopy keeps each moment's memory layout (fused Adam needs its parameter's)
            optimizers={k: copy.deepcopy(o.state_dict()) for k, o in state.optimizers.items()},
            rng={k: v.clone() for k, v in state.rng_states().items()},
            guard=state.guard_meta(),
        )

    def restore_into(self, state: RunState) -> None:
        state.model.load_state_dict(self.model)
        for name, opt in state.optimizers.items():
            opt.load_state_dict(copy.deepcopy(self.optimizers[name]))
        state.noise.set_state(self.rng["noise"])
        torch.set_rng_state(self.rng["torch"])
        state.step = self.step
        state.set_guard_meta(self.guard)
