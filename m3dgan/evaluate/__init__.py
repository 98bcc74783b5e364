"""``m3dgan evaluate``: a trained run's metrics on its task's test split, as one JSON-ready dict.

Each task names its metrics (``Task.metrics`` in :mod:`m3dgan.tasks.registry`); :data:`METRICS`
maps each name to the function that computes it, one module per family:

- :mod:`m3dgan.evaluate.image`: realism, diversity, reference (paper Table 2a, Table 3);
- :mod:`m3dgan.evaluate.text`: translation, captioning, text2image (Table 2b–c, Table 4);
- :mod:`m3dgan.evaluate.speech`: tts, asr (Table 2d–e).

A metric is a function of the :class:`~m3dgan.evaluate.context.Evaluation` (the run, its test
split, the options) that returns its JSON entries. It makes the model's outputs through
``ev.outputs`` (:mod:`m3dgan.evaluate.generate`), the one place that batches test sources, draws
random codes and references and decodes text, all seeded. Adding a metric is one function in
its family's module and one line in :data:`METRICS`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from m3dgan.data.build import task_dataset_root
from m3dgan.data.tensors import encode_split
from m3dgan.data.views import open_dataset
from m3dgan.errors import ConfigError
from m3dgan.evaluate import image, speech, text
from m3dgan.evaluate.context import Evaluation, Metric
from m3dgan.evaluate.generate import Outputs
from m3dgan.evaluate.page import write_output_page
from m3dgan.infer import Translator
from m3dgan.tasks import get_task

__all__ = ["METRICS", "Evaluation", "evaluate", "metric_functions"]

METRICS: dict[str, Metric] = {
    "realism": image.realism,
    "diversity": image.diversity,
    "reference": image.reference,
    "translation": text.text_output,
    "captioning": text.text_output,
    "text2image": text.text_to_image,
    "tts": speech.tts,
    "asr": speech.asr,
}


def metric_functions(names: Iterable[str]) -> list[Metric]:
    """The functions of these metric names, in order; a ConfigError names any unknown one."""
    names = list(names)
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise ConfigError(
            f"unknown metric {', '.join(map(repr, unknown))} (m3dgan.evaluate.METRICS knows "
            f"{', '.join(METRICS)})"
        )
    return [METRICS[name] for name in names]


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
    page_dir: Path | None = None,
    use_ema: bool = True,
) -> dict:
    """The metrics of the run at ``checkpoint`` (a run folder or a checkpoint file) on its
    task's test split (the built-in data set, or the one at ``data_root``).

    The dict starts with ``task``, ``objective``, ``step``, ``checkpoint``, ``weights`` (``"ema"``:
    the checkpoint's moving average of the generator side, ``"live"``: its trained weights; see
    ``use_ema`` and :meth:`Translator.from_checkpoint`) and ``test_size``,
    then holds the entries of each metric the task names, in the task's order. ``inputs`` and
    ``samples`` override each metric's defaults; ``seed`` seeds every random draw (the same seed
    gives the same numbers; the global RNG is left alone); ``beam`` is the beam size of text
    decoding (1: greedy); ``audio_dir`` receives the tts listening page; ``page_dir`` receives,
    for an image target, a page of the metrics and outputs to look at (``evaluate.page``; its
    path is the result's ``page``); ``judge_steps`` overrides the training steps of a judge
    trained on first use (tests).
    """
    tr = Translator.from_checkpoint(checkpoint, device=device, use_ema=use_ema)
    task = get_task(tr.cfg.task)
    metrics = metric_functions(task.metrics)
    outputs = Outputs(tr, seed=seed, beam=beam)
    root = Path(data_root) if data_root else task_dataset_root(task.name)
    manifest, splits = open_dataset(root, ("test",), swap=task.swap_sides)
    test = encode_split(splits["test"], tr.vocabs)
    ev = Evaluation(
        outputs,
        task,
        root,
        manifest,
        test,
        inputs=inputs,
        samples=samples,
        progress=progress,
        audio_dir=audio_dir,
        judge_steps=judge_steps,
    )
    out: dict = {
        "task": task.name,
        "objective": tr.cfg.objective,
        "step": tr.step,
        "checkpoint": str(checkpoint),
        "weights": tr.weights,
        "test_size": len(test["label"]),
    }
    for metric in metrics:
        out.update(metric(ev))
    if page_dir is not None:
        page = write_output_page(ev, out, page_dir)  # after the metrics: it draws its own codes
        if page is not None:
            out["page"] = str(page)
    return out
