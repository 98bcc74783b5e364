"""Samples written during training: the same fixed test inputs at every sampling step.

Columns per test input: ground truth, G(S, z from the ground truth as reference), G(S, z from
each of 3 fixed references), G(S, e_k) for 3 fixed random codes. Image targets become a PNG grid
(with the source image first when the source is an image); text targets a text file with one
block per input (and the same in TensorBoard); speech targets a PNG of the mel spectrograms (one
row per input, low frequencies at the bottom) plus WAVs of the first input's columns (Griffin-Lim).
"""

from __future__ import annotations

from pathlib import Path

import torch

from m3dgan.atomic import write_text
from m3dgan.audio.config import MelConfig
from m3dgan.core.model import M3DGAN
from m3dgan.data.tensors import batch_to_model
from m3dgan.modalities.text_vocab import Vocabulary
from m3dgan.report.grid import make_grid, save_image


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
    writer=None,
    vocabs: dict[str, Vocabulary] | None = None,
    mel_config: MelConfig | None = None,
) -> Path:
    """Write this step's samples under RUN_DIR/samples/ (PNG grid or text) and to TensorBoard.

    ``mel_config``: the data set's mel settings, required for a speech target (its samples are
    vocoded with them); ValueError without them."""
    columns = sample_columns(model, fixed)
    vocabs = vocabs or {}
    src = fixed["source"]
    if model.target_spec.kind == "image":
        if model.source_spec.kind == "image":
            columns.insert(0, ("source", src))
        rows = [[col[i] for _, col in columns] for i in range(len(src))]
        grid = make_grid(rows)
        path = Path(run_dir) / "samples" / f"step_{step:08d}.png"
        save_image(grid, path)
        if writer is not None:
            writer.add_image("samples", grid, step)
        return path
    if model.target_spec.kind == "speech":
        if mel_config is None:
            raise ValueError("speech samples need the data set's mel settings (mel_config)")
        return _write_speech(model, columns, run_dir, step, writer, mel_config)
    target_vocab = vocabs["target"]
    lines = []
    for i in range(len(src)):
        if "source" in vocabs:
            lines.append(f"source: {vocabs['source'].decode(src[i].tolist())}")
        else:
            lines.append(f"source: [{model.source_spec.kind} #{i}]")
        for name, col in columns:
            lines.append(f"  {name:>9}: {target_vocab.decode(col[i].tolist())}")
        lines.append("")
    text = "\n".join(lines)
    path = Path(run_dir) / "samples" / f"step_{step:08d}.txt"
    write_text(path, text)
    if writer is not None:
        writer.add_text("samples", "```\n" + text + "\n```", step)
    return path


def mel_image(mel: torch.Tensor, n_mels: int) -> torch.Tensor:
    """Mel [T, ≥ n_mels] in [-1, 1] → an image [1, n_mels, T] with low frequencies at the bottom."""
    return mel[:, :n_mels].T.flip(0)[None]


def _write_speech(model, columns, run_dir: Path, step: int, writer, cfg: MelConfig) -> Path:
    from m3dgan.audio import mel_to_wave, save_wav
    from m3dgan.audio.inputs import pad_mels

    n_mels = model.target_spec.channels
    rows = [[mel_image(col[i], n_mels) for _, col in columns] for i in range(len(columns[0][1]))]
    grid = make_grid(rows)
    folder = Path(run_dir) / "samples"
    path = folder / f"step_{step:08d}.png"
    save_image(grid, path)
    waves = mel_to_wave(pad_mels([col[0, :, :n_mels].float().cpu() for _, col in columns]), cfg)
    audio_dir = folder / f"step_{step:08d}"
    for (name, _), wave in zip(columns, waves, strict=True):
        save_wav(audio_dir / f"{name}.wav", wave, cfg.sample_rate)
        if writer is not None:
            writer.add_audio(f"samples/{name}", wave[None], step, sample_rate=cfg.sample_rate)
    if writer is not None:
        writer.add_image("samples", grid, step)
    return path
