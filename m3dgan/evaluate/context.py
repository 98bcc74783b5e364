"""What every metric of ``m3dgan evaluate`` is given: one :class:`Evaluation`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from m3dgan.data.store import Manifest
from m3dgan.evaluate.generate import Outputs
from m3dgan.infer import Translator
from m3dgan.tasks import Task


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of a trained run.

    ``outputs`` makes the model's outputs (:mod:`m3dgan.evaluate.generate`; it holds the
    translator, the seed and the beam size). ``test`` is the test split as the task reads it
    (sides swapped for asr), text sides as the model's ids with the strings kept under
    ``<side>_text`` (:func:`m3dgan.data.tensors.encode_split`); ``manifest`` describes it and
    ``root`` is its folder (the judges are trained on and cached for it). ``inputs`` and
    ``samples`` are the user's, None where each metric takes its own default; ``audio_dir``
    receives the tts listening page; ``judge_steps`` overrides the training steps of a judge
    trained on first use (tests).
    """

    outputs: Outputs
    task: Task
    root: Path
    manifest: Manifest
    test: dict
    inputs: int | None = None
    samples: int | None = None
    progress: bool = True
    audio_dir: Path | None = None
    judge_steps: int | None = None

    @property
    def tr(self) -> Translator:
        return self.outputs.tr


# A metric: computes its JSON entries (name → value) for one evaluation.
Metric = Callable[[Evaluation], dict]
