"""``m3dgan evaluate``: a trained run's metrics on its task's test split, as one JSON-ready dict.

One module per family of metrics:

- :mod:`m3dgan.evaluate.image`: realism, diversity, reference (paper Table 2a, Table 3);
- :mod:`m3dgan.evaluate.text`: translation, captioning, text2image (Table 2b–c, Table 4);
- :mod:`m3dgan.evaluate.speech`: tts, asr (Table 2d–e).
"""

from __future__ import annotations

from pathlib import Path

import torch

from m3dgan.data.build import task_dataset_root
from m3dgan.data.store import load_split, read_manifest
from m3dgan.evaluate import image
from m3dgan.evaluate.generate import Outputs
from m3dgan.infer import Translator
from m3dgan.tasks import get_task


@torch.no_grad()
def evaluate(
    checkpoint: Path,
    *,
    inputs: int | None = None,
    samples: int | None = None,
    device: str = "auto",
    data_root: Path | None = None,
    seed: int = 0,
    progress: bool = True,
    beam: int = 1,
    audio_dir: Path | None = None,
    judge_steps: int | None = None,
) -> dict:
    """``judge_steps`` overrides the training steps of a judge trained on first use (tests)."""
    tr = Translator.from_checkpoint(checkpoint, device=device)
    task = get_task(tr.cfg.task)
    root = Path(data_root) if data_root else task_dataset_root(task.name)
    outputs = Outputs(tr, seed=seed, beam=beam)
    if "speech" in (task.source, task.target):
        return _evaluate_speech_task(
            outputs, task, root, checkpoint, inputs, progress, audio_dir, judge_steps
        )
    if task.source == "text" or task.target == "text":
        test = load_split(root, "test")
        classes = read_manifest(root).classes or None
        return _evaluate_text_task(
            outputs, task, test, checkpoint, inputs, samples or 4, progress, classes
        )
    return image.evaluate_image_task(outputs, task, root, checkpoint, inputs, samples, progress)


def _evaluate_speech_task(
    outputs, task, root, checkpoint, inputs, progress, audio_dir, judge_steps=None
) -> dict:
    from m3dgan.data.tensors import encode_split
    from m3dgan.data.views import open_dataset
    from m3dgan.evaluate import speech

    tr = outputs.tr
    manifest, splits = open_dataset(root, ("test",), swap=task.swap_sides)
    test = encode_split(splits["test"], tr.vocabs)
    test["domain_names"] = manifest.domains
    out: dict = {
        "task": task.name,
        "objective": tr.cfg.objective,
        "step": tr.step,
        "checkpoint": str(checkpoint),
        "test_size": len(test["label"]),
    }
    if task.target == "speech":
        out.update(
            speech.evaluate_tts(
                outputs,
                root,
                test,
                inputs=inputs,
                progress=progress,
                audio_dir=audio_dir,
                judge_steps=judge_steps,
            )
        )
    else:
        out.update(speech.evaluate_asr(outputs, test, inputs=inputs, root=root, progress=progress))
    return out


def _evaluate_text_task(
    outputs, task, test, checkpoint, inputs, samples, progress, classes
) -> dict:
    from m3dgan.data.tensors import encode_split
    from m3dgan.evaluate import text

    tr = outputs.tr
    test = encode_split(test, tr.vocabs)
    out: dict = {
        "task": task.name,
        "objective": tr.cfg.objective,
        "step": tr.step,
        "checkpoint": str(checkpoint),
        "test_size": len(test["label"]),
    }
    if task.target == "text":
        out.update(text.evaluate_text_output(outputs, test, inputs=inputs))
    if "text2image" in task.metrics:
        out.update(
            text.evaluate_text_to_image(
                outputs,
                test,
                inputs=inputs,
                samples=samples,
                progress=progress,
                class_names=classes,
            )
        )
    return out
