"""The page ``m3dgan evaluate`` writes for a tts run: the metrics, the swap grid and every
output shown with what it is measured against.

``<out>_audio/index.html`` (``report.audio_page``), beside its WAVs and mel thumbnails:

- the run (checkpoint, step, objective, weights, seed) and the tts metrics, as a table;
- the content–style swap grid: the first sentences (rows) × a reference of each style (columns);
- one row per output of those sentences (one per style's reference, then one from a random
  code): the sentence, the reference it was made with (playable), the output (playable, with its
  mel), the ground truth — the real recording of the same sentence in the wanted style
  (playable, with its mel) —, what the judge recognizer heard (after the same vocoder round trip
  the metrics use) and the output's own scores: WER/CER, the style the style judge names,
  its length against the ground truth's, whether it stopped by itself.

The outputs are the metrics' own (``evaluate.speech.tts``): the transcripts are the ones the
WER counts. Thumbnails (``mel/*.png``) draw one pixel per frame and mel bin on the same colour
scale (``report.spectrogram``), so an output and its ground truth compare in length and level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from m3dgan.audio import save_wav
from m3dgan.report.audio_page import (
    AudioClip,
    GridSection,
    Picture,
    TableSection,
    write_audio_page,
)
from m3dgan.report.spectrogram import mel_picture, save_png

PAGE_SENTENCES = 4  # sentences shown (rows of the swap grid)


@dataclass
class Spoken:
    """One output as the page lists it. ``name``: the stem of its files; ``made_with``: how its
    domain code was made (a reference's style, or a random code); ``truth``: the real
    utterance of the same sentence (of style ``truth_style``), its files named ``truth_name``;
    ``heard``: the judge's transcript; ``scores``: label → value lines of its own
    measurements; ``reference``: the reference utterance (files ``reference_name``), if any."""

    name: str
    text: str
    made_with: str
    mel: torch.Tensor
    truth: torch.Tensor
    truth_name: str
    truth_style: str
    heard: str
    scores: dict[str, object] = field(default_factory=dict)
    reference: torch.Tensor | None = None
    reference_name: str = ""
    reference_text: str = ""


def flat_notes(metrics: dict, prefix: str = "") -> dict[str, object]:
    """Metrics as name → value lines: nested dicts flattened (``a.b``), lists of words joined,
    lists of records (the examples) left out."""
    notes: dict[str, object] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            notes.update(flat_notes(value, f"{name}."))
        elif isinstance(value, list):
            if all(isinstance(v, str) for v in value):
                notes[name] = ", ".join(value)
        elif value is None or isinstance(value, (int, float, str)):
            notes[name] = "n/a" if value is None else value
    return notes


def write_tts_page(
    tr,
    folder: Path,
    title: str,
    notes: dict[str, object],
    sentences: list[str],
    styles: list[str],
    by_reference: list[Spoken],
    by_code: list[Spoken],
) -> Path:
    """Write the WAVs, thumbnails and index.html into ``folder``; returns the page.

    ``by_reference[k * len(styles) + j]``: sentence k (of ``sentences``) with a reference of
    style j; ``by_code[k]``: sentence k from a random code."""
    folder = Path(folder)
    rate = tr.mel_config.sample_rate
    written: dict[str, list] = {}  # file stem → its player and thumbnail (each written once)

    def files(name: str, mel: torch.Tensor, caption: str = "") -> list:
        if name not in written:
            wave = tr.to_waves(mel[None].float())[0]
            clip = AudioClip(save_wav(folder / f"{name}.wav", wave, rate).name, caption)
            save_png(mel_picture(mel), folder / "mel" / f"{name}.png")
            written[name] = [
                clip,
                Picture(f"mel/{name}.png", f"{len(mel)} frame{'s' if len(mel) != 1 else ''}"),
            ]
        return written[name]

    rows = []
    for spoken in [*by_reference, *by_code]:
        made_with: list = [spoken.made_with]
        if spoken.reference is not None:
            says = f"says: {spoken.reference_text}"
            made_with += files(spoken.reference_name, spoken.reference, says)
        output = files(spoken.name, spoken.mel)
        truth = files(spoken.truth_name, spoken.truth, f"{spoken.truth_style} style")
        scores = [f"{label}: {_show(value)}" for label, value in spoken.scores.items()]
        rows.append([spoken.text, made_with, output, truth, spoken.heard or "(nothing)", scores])
    per = len(styles)
    grid = GridSection(
        "Content–style swap grid",
        list(sentences),
        list(styles),
        [
            [written[by_reference[k * per + j].name][0] for j in range(per)]
            for k in range(len(sentences))
        ],
        note="Each row says one test sentence; each column takes its style from a reference "
        "utterance of another sentence (listed below). Audio: mel → Griffin-Lim.",
    )
    table = TableSection(
        "Every output of these sentences",
        ["sentence", "made with", "output", "ground truth", "judge heard", "scores"],
        rows,
        note="One row per output: with a reference of each style, then from a random code. "
        "Ground truth: the real recording of the same sentence in the wanted style. The judge "
        "recognizer hears each output through the same vocoder round trip as the metrics "
        "(mel → Griffin-Lim → mel). Thumbnails: one pixel per frame, low frequencies at the "
        "bottom, the same colour scale for every mel.",
    )
    return write_audio_page(folder / "index.html", title, [grid, table], notes)


def _show(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
