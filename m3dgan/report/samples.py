"""Samples written during training: the same fixed test inputs at every sampling step.

Columns per test input: ground truth, G(S, z from the ground truth as reference), G(S, z from
each of 3 fixed references), G(S, e_k) for 3 fixed random codes. The target modality draws them
(``Modality.write_sample_panel``): image targets a PNG grid with a labelled header (the source
image first when the source is an image; each ``ref<k>`` column headed by its reference); text targets a text file with one block per input (and the same in
TensorBoard); speech targets a PNG of the mel spectrograms (one row per input, low frequencies at
the bottom) plus WAVs of the first input's columns (Griffin-Lim).

Beside the panel, the target modality's figures of what the generator does inside
(``Modality.training_figures``; speech: the attention alignment and colour mels of the first
input, as TTS recipes log them) go to ``samples/step_<N>/<name>.png`` and TensorBoard
``samples/<name>``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from m3dgan.core.model import M3DGAN
from m3dgan.data.tensors import batch_to_model
from m3dgan.modalities import Modality
from m3dgan.report.spectrogram import enlarge, save_png

FIGURE_HEIGHT = 160  # TensorBoard shows images at their own size: small ones are enlarged


def fixed_samples(split: dict, device: torch.device, n: int = 6) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1234)
    idx = torch.randperm(len(split["label"]), generator=gen)[:n]
    refs = torch.randperm(len(split["label"]), generator=gen)[:3]
    return {
        "source": batch_to_model(split["source"][idx], device),
        "target": batch_to_model(split["target"][idx], device),
        "references": batch_to_model(split["target"][refs], device),
    }


@torch.no_grad()
def sample_columns(model: M3DGAN, fixed: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    model.eval()
    src, tgt = fixed["source"], fixed["target"]
    columns = [("truth", tgt)]
    if model.attention is None:
        columns.append(("output", model.translate(src)))
    else:
        columns.append(("ref=truth", model.translate(src, reference=tgt)))
        for k, ref in enumerate(fixed["references"]):
            columns.append((f"ref{k}", model.translate(src, reference=ref[None])))
        # the same three codes at every sampling step, so samples over time are comparable
        e = torch.randn(3, model.cfg.nz, generator=torch.Generator().manual_seed(4321))
        for k in range(len(e)):
            columns.append((f"z{k}", model.translate(src, e=e[k : k + 1].to(src.device))))
    return columns


def write_samples(
    model: M3DGAN,
    fixed: dict[str, torch.Tensor],
    run_dir: Path,
    step: int,
    source: Modality,
    target: Modality,
    writer=None,
) -> Path:
    """Write this step's samples under RUN_DIR/samples/ and to TensorBoard (``writer``).

    ``source``, ``target``: the run's modalities with their codecs (a text side decodes with its
    vocabulary, a speech target is vocoded with the data set's mel settings); the target
    modality draws the panel (``Modality.write_sample_panel``)."""
    columns = sample_columns(model, fixed)
    # the reference each ``ref<k>`` column was made with, for panels that show it at the head
    headers = [
        fixed["references"][int(name[3:])] if re.fullmatch(r"ref\d+", name) else None
        for name, _ in columns
    ]
    folder, name = Path(run_dir) / "samples", f"step_{step:08d}"
    panel = target.write_sample_panel(
        columns, source, fixed["source"], folder, name, writer, step, headers=headers
    )
    write_figures(
        target.training_figures(model, fixed, columns[1][1][:1]), folder / name, writer, step
    )
    return panel


def write_figures(figures: dict[str, np.ndarray], folder: Path, writer=None, step: int = 0) -> None:
    """Each picture (name → uint8 RGB [H, W, 3]) as ``folder/<name>.png`` and as TensorBoard
    image ``samples/<name>``, there enlarged (whole pixels) to at least ``FIGURE_HEIGHT``."""
    for name, picture in figures.items():
        save_png(picture, folder / f"{name}.png")
        if writer is not None:
            shown = enlarge(picture, FIGURE_HEIGHT)
            writer.add_image(f"samples/{name}", shown, step, dataformats="HWC")
