"""Where the state of a training run (``m3dgan.core.state.RunState``) is kept: checkpoints on
disk and an in-memory snapshot.

Everything a resumed run needs to continue exactly where an uninterrupted one would be: weights,
both optimizers (moments, step counts and learning rates), the noise generator and torch's global
RNG, the step, the divergence guard's state (how often it rolled back and by how much it has
lowered the learning rate, so a lowered rate survives ``--resume``), and the moving average of
the generator side with its update count (``train.ema_decay`` > 0).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from m3dgan import checkpoint as ckpt
from m3dgan.core.state import RunState
from m3dgan.errors import CheckpointError
from m3dgan.run_record import RunRecord


def save(run_dir: Path, state: RunState, record: RunRecord) -> Path:
    """A checkpoint of ``state`` in RUN_DIR/checkpoints/, its sidecar the run's ``record`` with
    the guard's state of now; keeps ``train.keep_checkpoints`` of them."""
    record.guard = state.guard_meta()
    record.ema = state.ema_meta()
    return ckpt.save_checkpoint(
        run_dir,
        state.step,
        state.model,
        optimizers=state.optimizers,
        rng=state.rng_states(),
        meta=record.to_dict(),
        keep=record.config.train.keep_checkpoints,
        ema=None if state.ema is None else state.ema.state_dict(),
    )


def restore(state: RunState, checkpoint: ckpt.Checkpoint, run: RunRecord | None = None) -> None:
    """Put ``checkpoint`` into ``state``: weights, optimizers, random streams, step, the
    guard's state (read through the checkpoint's :class:`RunRecord`) and the moving average.

    The moving average (``state.ema``, present when ``train.ema_decay`` > 0): the checkpoint's
    ``ema.*`` tensors and update count; a checkpoint without them (saved with the average off)
    starts it from the restored weights with a fresh warm-up (count 0). A checkpoint's average
    is ignored when ``state`` keeps none.

    ``run``: the record of the run being resumed, as its data set describes it now; the
    checkpoint's must describe the same sides, vocabularies and mel settings.

    Raises:
        CheckpointError: the sidecar lacks a field, the weights (or their moving average) are
            another model's, or the data set changed since the checkpoint (another vocabulary
            would train other token ids).
    """
    saved = RunRecord.from_dict(checkpoint.meta, str(getattr(checkpoint, "path", "checkpoint")))
    if run is not None:
        _check_same_data(saved, run)
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
    state.set_guard_meta(saved.guard)
    if state.ema is not None:
        _restore_ema(state, checkpoint, saved)


def _restore_ema(state: RunState, checkpoint: ckpt.Checkpoint, saved: RunRecord) -> None:
    tensors = checkpoint.ema_state()
    if not tensors:
        state.ema.reset(state.model)
        return
    try:
        state.ema.load_state_dict(tensors, int(saved.ema.get("updates", 0)))
    except ValueError as exc:
        raise CheckpointError(f"{saved.where}: {exc}") from exc


def _check_same_data(saved: RunRecord, run: RunRecord) -> None:
    changed = [
        name
        for name, a, b in (
            ("source side", saved.source, run.source),
            ("target side", saved.target, run.target),
            ("vocabularies", saved.vocab, run.vocab),
            ("mel settings", saved.audio or run.audio, run.audio),
        )
        if a != b
    ]
    if changed:
        raise CheckpointError(
            f"{saved.where}: the data set {run.dataset!r} changed since this checkpoint was "
            f"saved ({', '.join(changed)} differ); resume with the data set it was trained on, "
            "or start a new run"
        )


@dataclass
class Snapshot:
    """A copy of a run's state in memory: where the divergence guard rolls back to before the
    first checkpoint exists (a fresh run's initial weights and empty optimizers)."""

    step: int
    model: dict[str, torch.Tensor]
    optimizers: dict[str, dict[str, Any]]
    rng: dict[str, torch.Tensor]
    guard: dict[str, Any] = field(default_factory=dict)
    ema: dict[str, torch.Tensor] | None = None  # the moving average's tensors (None: off)
    ema_updates: int = 0

    @classmethod
    def take(cls, state: RunState) -> Snapshot:
        return cls(
            step=state.step,
            model={k: v.detach().clone() for k, v in state.model.state_dict().items()},
            # deepcopy keeps each moment's memory layout (fused Adam needs its parameter's)
            optimizers={k: copy.deepcopy(o.state_dict()) for k, o in state.optimizers.items()},
            rng={k: v.clone() for k, v in state.rng_states().items()},
            guard=state.guard_meta(),
            ema=None
            if state.ema is None
            else {k: v.detach().clone() for k, v in state.ema.state_dict().items()},
            ema_updates=0 if state.ema is None else state.ema.updates,
        )

    def restore_into(self, state: RunState) -> None:
        state.model.load_state_dict(self.model)
        for name, opt in state.optimizers.items():
            opt.load_state_dict(copy.deepcopy(self.optimizers[name]))
        state.noise.set_state(self.rng["noise"])
        torch.set_rng_state(self.rng["torch"])
        state.step = self.step
        state.set_guard_meta(self.guard)
        if state.ema is not None and self.ema is not None:
            state.ema.load_state_dict(self.ema, self.ema_updates)
