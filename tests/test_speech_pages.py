"""Seeing and hearing what a tts model does: the attention alignment and colour mels in
TensorBoard (and samples/), translate's listening page (the reference playable, the run, step,
seed and objective stated) and evaluate's page (per output: scores, the judge's transcript, the
ground truth, mel thumbnails). One 2-step tiny run on 4 espeak-ng sentences in 2 styles."""

from __future__ import annotations

import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import TINY_SPEECH_OVERRIDES, set_args, train_tiny_run
from PIL import Image

from m3dgan.audio import MelConfig
from m3dgan.cli import main
from m3dgan.report.colormap import VIRIDIS, colorize
from m3dgan.report.spectrogram import alignment_picture, mel_picture

pytestmark = [
    pytest.mark.usefixtures("isolated_env"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng"),
]

FIGURES = ("alignment", "mel_teacher_forced", "mel_ground_truth", "mel_prediction")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from speech_fixtures import tiny_tts_dataset

    return tiny_tts_dataset(tmp_path_factory.mktemp("speech"), MelConfig())


@pytest.fixture(scope="module")
def run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 steps, samples (and TensorBoard images) at step 2."""
    overrides = [*TINY_SPEECH_OVERRIDES, "train.sample_every=2"]
    return train_tiny_run(
        data, tmp_path_factory, 2, ["--task", "tts", "--no-progress", *set_args(overrides)]
    )


class _Page(HTMLParser):
    """The audio and image sources of a page, and its visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.audio: list[str] = []
        self.images: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "audio":
            self.audio.append(unquote(dict(attrs)["src"]))
        elif tag == "img":
            self.images.append(unquote(dict(attrs)["src"]))

    def handle_data(self, data) -> None:
        self.text.append(data)


def parse(page: Path) -> _Page:
    parser = _Page()
    parser.feed(page.read_text(encoding="utf-8"))
    parser.close()
    return parser


def rows_of(page: Path) -> list[str]:
    """Each table row's HTML (crude, enough for our own pages)."""
    return page.read_text(encoding="utf-8").split("<tr>")[1:]


# -- pictures ---------------------------------------------------------------------------------


def test_colour_map_runs_dark_to_bright_and_pictures_put_low_frequencies_at_the_bottom():
    assert colorize(np.array([[0.0, 1.0]])).tolist() == [
        [VIRIDIS[0].tolist(), VIRIDIS[-1].tolist()]
    ]
    # viridis: brightness rises along the map
    luma = VIRIDIS @ np.array([0.299, 0.587, 0.114])
    assert np.all(np.diff(luma) > -1.0) and luma[-1] > 3 * luma[0]
    mel = torch.full((5, 4), -1.0)
    mel[:, 0] = 1.0  # loud in the lowest bin only
    picture = mel_picture(mel)
    assert picture.shape == (4, 5, 3) and picture.dtype == np.uint8
    assert (picture[-1] == VIRIDIS[-1]).all() and (picture[0] == VIRIDIS[0]).all()
    # an alignment: decoder steps left to right, source position 0 at the bottom, own scale
    weights = torch.tensor([[0.2, 0.0, 0.0], [0.0, 0.2, 0.0]])  # 2 steps over 3 positions
    picture = alignment_picture(weights)
    assert picture.shape == (3, 2, 3)
    assert (picture[2, 0] == VIRIDIS[-1]).all() and (picture[1, 1] == VIRIDIS[-1]).all()
    assert (picture[0] == VIRIDIS[0]).all()


# -- training ---------------------------------------------------------------------------------


def test_training_logs_the_alignment_and_colour_mels_to_tensorboard(run: Path):
    from tensorboard.backend.event_processing.event_accumulator import (
        IMAGES,
        EventAccumulator,
    )

    events = EventAccumulator(str(run / "tb"), size_guidance={IMAGES: 0})
    events.Reload()
    tags = set(events.Tags()["images"])
    assert {f"samples/{name}" for name in FIGURES} <= tags
    for name in FIGURES:
        (image,) = events.Images(f"samples/{name}")
        assert image.step == 2 and image.height >= 160
        with Image.open(run / "samples" / "step_00000002" / f"{name}.png") as png:
            assert png.mode == "RGB"
            pixels = np.asarray(png)
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1  # not one flat colour
    with Image.open(run / "samples" / "step_00000002" / "mel_ground_truth.png") as truth:
        assert truth.height == MelConfig().n_mels  # one pixel per mel bin


# -- translate --------------------------------------------------------------------------------


def test_translate_page_plays_the_reference_and_states_the_run(run: Path, tmp_path: Path, capsys):
    from speech_fixtures import espeak

    samples, rate = espeak("Hello there.", pitch=80, speed=220)
    reference = tmp_path / "elsewhere" / "my voice.wav"
    reference.parent.mkdir()
    sf.write(str(reference), samples, rate)
    out = tmp_path / "out"
    argv = ["translate", "--checkpoint", str(run), "--text", "The cat sat.", "--out", str(out)]
    assert main([*argv, "--reference", str(reference), "--seed", "7"]) == 0
    page = out / "index.html"
    assert f"page: {page}" in capsys.readouterr().out
    seen = parse(page)
    assert seen.audio == ["reference0.wav", "text0_ref0.wav"]  # the column's head, the output
    assert (out / "reference0.wav").read_bytes() == reference.read_bytes()  # as given
    text = " ".join(seen.text)
    for name, value in (("run", str(run)), ("step", "2"), ("seed", "7"), ("objective", "full")):
        assert f"{name} {value}" in " ".join(text.split()), name
    assert "reference: my voice.wav" in text

    # random codes: no reference to play, and the seed says it was a fresh draw
    assert main([*argv[:-1], str(tmp_path / "z"), "--samples", "2"]) == 0
    seen = parse(tmp_path / "z" / "index.html")
    assert seen.audio == ["text0_z0.wav", "text0_z1.wav"]
    assert "a fresh random draw" in " ".join(seen.text)


# -- evaluate ---------------------------------------------------------------------------------


def test_evaluate_page_lists_every_output_with_transcript_truth_and_thumbnails(
    run: Path, data: Path, tmp_path: Path
):
    from m3dgan.evaluate import evaluate

    folder = tmp_path / "audio"
    metrics = evaluate(run, data_root=data, audio_dir=folder, judge_steps=5, progress=False)
    page = Path(metrics["listening_page"])
    assert page == folder / "index.html"
    seen = parse(page)
    text = " ".join(" ".join(seen.text).split())
    # the run and the metrics at the top
    assert f"step {metrics['step']}" in text and "objective full" in text and "seed 0" in text
    assert f"wer_tts_ref {metrics['wer_tts_ref']:.4g}" in text
    # every linked file is there
    assert all((folder / src).is_file() for src in seen.audio + seen.images)
    assert all(src.startswith("mel/") and src.endswith(".png") for src in seen.images)
    # one row per output: 2 test sentences × 2 reference styles, then 2 from random codes
    outputs = [r for r in rows_of(page) if 'src="grid_' in r or 'src="z_' in r]
    outputs = [r for r in outputs if "truth_" in r]  # the table's rows, not the swap grid's
    assert len(outputs) == 2 * 2 + 2
    said = {e["text"]: e["heard"] for e in metrics["examples"]}
    for row in outputs:
        row_page = tmp_path / "row.html"
        row_page.write_text(f"<table><tr>{row}</table>", encoding="utf-8")
        cells = parse(row_page)
        name = next(a for a in cells.audio if a.startswith(("grid_", "z_"))).removesuffix(".wav")
        truth = next(a for a in cells.audio if a.startswith("truth_"))
        assert f"mel/{name}.png" in cells.images  # the output's thumbnail
        assert f"mel/{truth.removesuffix('.wav')}.png" in cells.images  # the truth's
        sentence = cells.text[0]
        assert truth.startswith("truth_0_" if sentence == "We like tea." else "truth_1_")
        row_text = " ".join(cells.text)
        assert "WER:" in row_text and "style judge:" in row_text
        if name.startswith("grid_"):
            assert any(a.startswith("reference_") for a in cells.audio)
    # the transcripts are the ones the metrics counted
    shown = " ".join(seen.text)
    for heard in said.values():
        assert (heard or "(nothing)") in shown
    with Image.open(folder / "mel" / "truth_0_low.png") as thumb:
        assert thumb.height == MelConfig().n_mels
