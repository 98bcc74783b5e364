"""Divergence guard: a NaN or Inf loss rolls the run back instead of killing it or poisoning it.

A GAN that diverges usually does so for good — once a weight is NaN every later step is NaN —
and a run that days of compute went into should neither die on it nor keep training garbage.
:class:`~m3dgan.core.step.NonFiniteLossError` is raised before the update the bad loss would
feed; the guard then

1. restores the last good state: the newest readable checkpoint (model, optimizers, RNG, step),
   or, before the first checkpoint exists, the snapshot of the run's initial state;
2. multiplies the learning rate by ``train.rollback_lr_factor`` (cumulative over rollbacks);
3. counts the rollback, and once ``train.max_rollbacks`` are spent, stops the run with
   :class:`TrainingDiverged` (the CLI prints it and exits with status 2).

The RNG comes back too, so the replayed steps see the same batches and codes: what differs is
the learning rate. A fault that strikes once (a bad kernel, a flipped bit, an overflow on a rare
batch at a high rate) is survived; a run that diverges at every rate stops after a bounded
number of tries. The caller writes the rolled-back state as a checkpoint again so the lowered
rate and the count survive a later ``--resume``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from m3dgan import checkpoint as ckpt
from m3dgan.core.state import RunState
from m3dgan.errors import M3DGANError
from m3dgan.run_state import Snapshot, restore


class TrainingDiverged(M3DGANError):
    """Losses stayed non-finite after ``train.max_rollbacks`` rollbacks."""


class LossSpike(M3DGANError):
    """The reconstruction loss jumped far above its running average (``train.spike_factor``)."""


SPIKE_WARMUP = 200  # steps before the detector may fire: early losses fall too fast to judge
SPIKE_FAST_DECAY = 0.8  # the recent average: about the last 5 steps
SPIKE_SLOW_DECAY = 0.99  # the reference average: about the last 100 steps


@dataclass
class SpikeDetector:
    """A loss spike that stays finite (``train.spike_factor``; 0 = off).

    A GAN can jump out of a good basin without a NaN: a tts run in bf16 went from a
    reconstruction loss of 0.77 to 4.59 within 25 steps at step 3,760 and ended its budget
    speaking nothing (docs/benchmarks.md, "tts at 60 minutes"). Fed each step's
    reconstruction loss (``rec``, ≥ 0), :meth:`spiked` is True when the recent average (a
    moving average over about 5 steps) exceeds ``factor`` × the reference average (about 100
    steps) after :data:`SPIKE_WARMUP` steps; a spiking value is kept out of the reference. The
    trainer then rolls back as for a non-finite loss (:class:`DivergenceGuard`: the last
    checkpoint, a lower learning rate, at most ``train.max_rollbacks`` times), and calls
    :meth:`reset`. Per-step noise of a training loss stays well under 3× its average."""

    factor: float
    fast: float | None = None
    slow: float | None = None
    seen: int = 0

    def spiked(self, value: float) -> bool:
        if self.factor <= 0 or not math.isfinite(value):
            return False
        self.seen += 1
        if self.slow is None or self.fast is None:
            self.fast = self.slow = value
            return False
        self.fast = SPIKE_FAST_DECAY * self.fast + (1 - SPIKE_FAST_DECAY) * value
        if self.seen > SPIKE_WARMUP and self.fast > self.factor * self.slow:
            return True
        self.slow = SPIKE_SLOW_DECAY * self.slow + (1 - SPIKE_SLOW_DECAY) * value
        return False

    def describe(self) -> str:
        return (
            f"the reconstruction loss jumped to {self.fast:.3g} (average of the last steps) "
            f"against {self.slow:.3g} before (train.spike_factor = {self.factor:g})"
        )

    def reset(self) -> None:
        """After a rollback: the recent average restarts from the reference one."""
        self.fast = self.slow


@dataclass
class Rollback:
    """What one rollback did, for the log and the warning line."""

    failed_step: int
    reason: str
    to_step: int
    source: str  # the checkpoint restored, or "initial state"
    lr_before: float
    lr_after: float
    count: int
    limit: int

    def record(self) -> dict[str, Any]:
        return {
            "step": self.failed_step,
            "event": "rollback",
            "reason": self.reason,
            "to_step": self.to_step,
            "restored": self.source,
            "lr": self.lr_after,
            "lr_before": self.lr_before,
            "rollbacks": self.count,
            "max_rollbacks": self.limit,
        }

    def message(self) -> str:
        return (
            f"warning: step {self.failed_step}: {self.reason}; rolled back to step {self.to_step} "
            f"({self.source}), learning rate {self.lr_before:.3g} -> {self.lr_after:.3g} "
            f"(rollback {self.count} of {self.limit})"
        )


@dataclass
class DivergenceGuard:
    run_dir: Path
    base_lr: float
    factor: float
    max_rollbacks: int
    initial: Snapshot | None = None  # where to go before the first checkpoint exists

    def roll_back(self, state: RunState, error: Exception) -> Rollback:
        """Restore the last good state with a lowered learning rate, or raise
        :class:`TrainingDiverged` when the rollbacks are spent."""
        failed = state.step + 1
        count, scale = state.rollbacks, state.lr_scale
        if count >= self.max_rollbacks:
            raise TrainingDiverged(
                f"training diverged: {error} at step {failed}, after {count} rollback(s) "
                f"(train.max_rollbacks = {self.max_rollbacks}; learning rate now "
                f"{self.base_lr * scale:.3g}). The last good checkpoint is kept in "
                f"{ckpt.checkpoint_dir(self.run_dir)}. Check the data for NaN/Inf values; to go "
                f"on, lower train.lr or raise train.max_rollbacks in {self.run_dir / 'config.yaml'} "
                "and run again with --resume."
            )
        source = self._restore(state)
        state.rollbacks, state.lr_scale = count + 1, scale * self.factor
        state.set_lr(self.base_lr)
        return Rollback(
            failed_step=failed,
            reason=str(error),
            to_step=state.step,
            source=source,
            lr_before=self.base_lr * scale,
            lr_after=self.base_lr * state.lr_scale,
            count=state.rollbacks,
            limit=self.max_rollbacks,
        )

    def _restore(self, state: RunState) -> str:
        if ckpt.list_checkpoints(ckpt.checkpoint_dir(self.run_dir)):
            checkpoint = ckpt.load_latest(self.run_dir)
            restore(state, checkpoint)
            return str(checkpoint.path)
        if self.initial is None:
            raise TrainingDiverged(
                f"training diverged at step {state.step + 1} and there is no state to roll back to"
            )
        self.initial.restore_into(state)
        return "initial state"
