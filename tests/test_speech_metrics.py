"""Speech metrics on real espeak-ng speech: WER/CER, the style judge, the CTC judge ASR,
pocketsphinx as the outside reference, the judges' caches, tts/asr scores and the listening page.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import torch

from m3dgan.audio import MelConfig, load_audio, save_wav, wave_to_mel
from m3dgan.audio.inputs import trim_silence
from m3dgan.data.frames import SpeechFrames
from m3dgan.data.store import Manifest, write_dataset
from m3dgan.errors import DataError, InputError
from m3dgan.metrics.judge_asr import (
    AsrRecipe,
    CharVocabulary,
    JudgeASR,
    ctc_loss_of,
    greedy_decode,
    judge_asr_path,
    load_or_train_judge_asr,
    train_judge_asr,
)
from m3dgan.metrics.speech_batches import vocoder_round_trip
from m3dgan.metrics.speech_scores import (
    SpeechJudges,
    asr_scores,
    pocketsphinx_transcribe,
    tts_scores,
    wer_cer,
)
from m3dgan.metrics.style_classifier import (
    StyleRecipe,
    frames_statistics,
    load_or_train_style_classifier,
    mel_statistics,
    style_accuracy,
    train_style_classifier,
)
from m3dgan.metrics.transcript import normalise_transcript
from m3dgan.report.audio_page import (
    AudioClip,
    GridSection,
    ListItem,
    ListSection,
    write_audio_page,
)

pytestmark = [
    pytest.mark.usefixtures("isolated_env"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng"),
]

SENTENCES = [
    "The cat sat on the mat.",
    "A dog ran in the park.",
    "We like green tea.",
    "Open the red door.",
    "She sells sea shells.",
    "Time flies like an arrow.",
    "My house is very old.",
    "Bring me a cup of milk.",
]
# Two clearly different speaking styles: high, fast and loud vs low, slow and quiet.
STYLES = {"high-fast": ["-p", "85", "-s", "220"], "low-slow": ["-p", "15", "-s", "120", "-a", "40"]}
TINY_ASR = dict(conv_channels=32, hidden=32, layers=1, dropout=0.0, batch_size=8, warmup=5)


def espeak_wave(text: str, args: list[str], folder: Path) -> np.ndarray:
    """Real espeak-ng speech (en-us+klatt5) at 16 kHz, trimmed of its silent ends."""
    path = folder / "clip.wav"
    subprocess.run(["espeak-ng", "-v", "en-us+klatt5", *args, "-w", str(path), text], check=True)
    return trim_silence(load_audio(path), MelConfig())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    """Every sentence in both styles: waves, mels, texts, style labels; 6 sentences to train,
    2 to test."""
    folder = tmp_path_factory.mktemp("espeak")
    out: dict = {"train": {}, "test": {}}
    for split, sents in (("train", SENTENCES[:6]), ("test", SENTENCES[6:])):
        rows = [(t, s) for t in sents for s in range(len(STYLES))]
        waves = [espeak_wave(t, list(STYLES.values())[s], folder) for t, s in rows]
        out[split] = {
            "waves": waves,
            "mels": SpeechFrames.from_list([wave_to_mel(w, MelConfig()) for w in waves]),
            "texts": [t for t, _ in rows],
            "styles": torch.tensor([s for _, s in rows]),
        }
    return out


@pytest.fixture(scope="module")
def dataset(corpus, tmp_path_factory) -> Path:
    """The corpus in the store format (text -> speech, domain = style), as the judges read it."""
    cfg = MelConfig()
    splits = {
        split: {
            "source": part["texts"],
            "target": part["mels"],
            "label": torch.arange(len(part["texts"])),
            "domain": part["styles"],
        }
        for split, part in corpus.items()
    }
    manifest = Manifest(
        name="tiny-speech",
        image_size=0,
        source_channels=0,
        target_channels=cfg.n_mels,
        source_kind="text",
        target_kind="speech",
        domains=list(STYLES),
        audio=cfg.to_dict(),
    )
    return write_dataset(tmp_path_factory.mktemp("data") / "tiny-speech", manifest, splits)


# --- transcripts and error rates ---------------------------------------------------------------


def test_normalise_transcript_keeps_words_and_apostrophes_only():
    assert normalise_transcript("Don't worry -- the WELL-known café!") == (
        "don't worry the well known cafe"
    )
    assert normalise_transcript("'Quoted,' he said; “fine”.") == "quoted he said fine"
    assert normalise_transcript("  ...  ") == ""


def test_wer_cer_on_known_strings():
    scores = wer_cer(["the cat sat"], ["The cat sat on the mat."])
    assert scores["wer"] == pytest.approx(3 / 6)  # three words deleted
    assert scores["cer"] == pytest.approx(11 / 22)  # " on the mat" deleted
    assert scores["deletions"] == 3 and scores["exact"] == 0.0
    scores = wer_cer(["a big dog", "hello world"], ["a dog", "Hello, world!"])
    assert scores["wer"] == pytest.approx(1 / 4)  # one insertion over four reference words
    assert scores["insertions"] == 1 and scores["exact"] == 0.5
    assert wer_cer([""], ["two words"])["wer"] == 1.0  # empty hypothesis: all deleted
    with pytest.raises(DataError, match="no words"):
        wer_cer(["x"], ["?!"])
    with pytest.raises(ValueError, match="2 hypotheses but 1"):
        wer_cer(["a", "b"], ["a"])


# --- the style judge ---------------------------------------------------------------------------


def test_mel_statistics_ignore_padding():
    mel = torch.rand(5, 80) * 2 - 1
    padded = torch.cat([mel, -torch.ones(7, 80)])[None]
    stats = mel_statistics(padded, [5])
    assert stats.shape == (1, 160)
    assert torch.allclose(stats[0, :80], mel.mean(0), atol=1e-6)
    assert torch.allclose(stats[0, 80:], mel.std(0, unbiased=False), atol=1e-5)
    with pytest.raises(DataError):
        mel_statistics(padded, [13])


def test_style_classifier_separates_two_real_styles(corpus):
    train, test = corpus["train"], corpus["test"]
    feats = frames_statistics(train["mels"], train["mels"].lengths)
    model = train_style_classifier(feats, train["styles"], 2, StyleRecipe(steps=200))
    assert style_accuracy(model, test["mels"], test["mels"].lengths, test["styles"]) == 1.0
    # wrong labels score 0: the judge really tells the styles apart
    assert style_accuracy(model, test["mels"], test["mels"].lengths, 1 - test["styles"]) == 0.0
    logistic = train_style_classifier(feats, train["styles"], 2, StyleRecipe(hidden=0, steps=200))
    assert style_accuracy(logistic, test["mels"], test["mels"].lengths, test["styles"]) == 1.0


# --- the judge ASR -----------------------------------------------------------------------------


def test_vocabulary_and_greedy_ctc_decoding():
    vocab = CharVocabulary.from_texts(["Ab ba!"])
    assert vocab.chars == [" ", "a", "b"] and vocab.size == 4
    assert vocab.decode(vocab.encode("AB, a")) == "ab a"
    # path a a _ a b b _ (blank = 0) -> "aab"; only the first 6 steps of row 2 count
    path = torch.tensor([[2, 2, 0, 2, 3, 3, 0], [3, 0, 3, 1, 2, 2, 3]])
    log_probs = torch.log(torch.nn.functional.one_hot(path, 4).float() + 1e-6)
    assert greedy_decode(log_probs, torch.tensor([7, 6])) == [[2, 2, 3], [3, 3, 1, 2]]


def test_judge_asr_shapes_and_batch_independence():
    torch.manual_seed(0)
    judge = JudgeASR(list(" abc"), conv_channels=16, hidden=16, layers=2).eval()
    mels = torch.rand(3, 41, 80) * 2 - 1
    lengths = torch.tensor([41, 17, 8])
    log_probs, steps = judge(mels, lengths)
    assert log_probs.shape == (3, 22, 5)  # ceil(41 / 4) GRU steps x 2 outputs, 4 chars + blank
    assert steps.tolist() == [22, 10, 4]
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(3, 22), atol=1e-5)
    alone, _ = judge(mels[1:2, :17], lengths[1:2])  # the same row without the batch's padding
    assert torch.allclose(alone[0], log_probs[1, :10], atol=1e-5)


def test_a_few_training_steps_lower_the_ctc_loss(corpus):
    train = corpus["train"]
    recipe = AsrRecipe(steps=1, lr=3e-3, **TINY_ASR)
    judge = train_judge_asr(train["mels"], train["mels"].lengths, train["texts"], recipe)
    before = ctc_loss_of(judge, train["mels"], train["mels"].lengths, train["texts"])
    recipe = AsrRecipe(steps=40, lr=3e-3, **TINY_ASR)
    judge = train_judge_asr(
        train["mels"], train["mels"].lengths, train["texts"], recipe, model=judge
    )
    after = ctc_loss_of(judge, train["mels"], train["mels"].lengths, train["texts"])
    assert after < 0.8 * before, (before, after)
    assert judge.info["steps"] == 40 and judge.info["skipped"] == 0
    assert len(judge.transcribe(train["mels"], train["mels"].lengths)) == len(train["texts"])


def test_judges_are_trained_once_then_loaded_from_the_cache(dataset):
    recipe = AsrRecipe(steps=4, **TINY_ASR)
    judge = load_or_train_judge_asr(dataset, recipe=recipe)
    info = judge.info
    assert judge_asr_path("tiny-speech").is_file()
    assert info["arch"]["chars"] == judge.vocab.chars and info["train"]["steps"] == 4
    for key in ("test", "round_trip"):  # real test speech, as stored and after Griffin-Lim
        assert info[key]["cer"] >= 0.0 and info[key]["sentences"] == 4
    again = load_or_train_judge_asr(dataset, recipe=recipe)
    assert again.info == info
    assert all(
        torch.equal(a, b) for a, b in zip(judge.parameters(), again.parameters(), strict=True)
    )

    style = load_or_train_style_classifier(
        dataset, recipe=StyleRecipe(steps=200, round_trip_train=4)
    )
    assert style.info["styles"] == list(STYLES)
    assert style.info["test_accuracy"] == 1.0
    assert style.info["round_trip_accuracy"] >= 0.75  # 4 test clips after Griffin-Lim
    assert load_or_train_style_classifier(
        dataset, recipe=StyleRecipe(steps=200, round_trip_train=4)
    ).info == (style.info)


def test_tts_scores_on_real_speech_as_if_generated(corpus, dataset):
    judges = SpeechJudges(
        asr=load_or_train_judge_asr(dataset, recipe=AsrRecipe(steps=4, **TINY_ASR)),
        style=load_or_train_style_classifier(
            dataset, recipe=StyleRecipe(steps=200, round_trip_train=4)
        ),
    )
    test = corpus["test"]
    padded = test["mels"][torch.arange(len(test["texts"]))].float()
    scores = tts_scores(
        padded,
        test["mels"].lengths,
        test["texts"],
        test["styles"],
        judges,
        cfg=MelConfig(),
        style_names=list(STYLES),
        iterations=8,
    )
    assert len(scores["hypotheses"]) == 4 and scores["wer"] >= 0.0
    assert scores["style_accuracy_mel"] == 1.0
    assert set(scores["style_per_style"]) == set(STYLES)
    assert judges.ceiling()["style_real"] == 1.0
    with pytest.raises(ValueError, match="4 generated utterances but 3 texts"):
        tts_scores(padded, test["mels"].lengths, test["texts"][:3], None, judges, cfg=MelConfig())


def test_vocoder_round_trip_keeps_order_and_lengths(corpus):
    test = corpus["test"]
    mels, lengths = vocoder_round_trip(test["mels"], test["mels"].lengths, MelConfig(), iterations=4)
    assert torch.equal(lengths, test["mels"].lengths)
    for i in range(len(lengths)):
        real, heard = test["mels"][i].float(), mels[i, : lengths[i]]
        assert (real - heard).abs().mean() < 0.15  # the same utterance, smeared a little
        assert (mels[i, lengths[i] :] == -1).all()


# --- pocketsphinx, the outside reference -------------------------------------------------------


def test_pocketsphinx_recognises_a_simple_espeak_sentence(tmp_path):
    # pocketsphinx is weak on espeak-ng speech in general (WER ~0.5 over fortunes sentences),
    # but gets common phrases of its language model right with the klatt5 voice
    texts = ["this is a test of the speech recognition system", "the weather is nice today"]
    waves = [espeak_wave(t, [], tmp_path) for t in texts]
    heard = pocketsphinx_transcribe(waves)
    assert all(heard)
    assert wer_cer(heard, texts)["wer"] < 0.5, heard
    scores = asr_scores(["this is a test", "the weather"], texts, waves_16k=waves)
    assert scores["model"]["wer"] == pytest.approx(8 / 14)
    assert scores["pocketsphinx"]["wer"] < 0.5
    assert pocketsphinx_transcribe([np.zeros(0, np.float32)]) == [""]
    with pytest.raises(InputError, match="wave 0"):
        pocketsphinx_transcribe([np.full(100, np.nan, np.float32)])


# --- the listening page ------------------------------------------------------------------------


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "audio":
            self.sources.append(dict(attrs)["src"])


def test_audio_page_links_every_clip_and_escapes_text(corpus, tmp_path):
    test = corpus["test"]
    page_dir = tmp_path / "page"
    clips = [
        AudioClip(save_wav(page_dir / "wav" / f"out {i}.wav", w), caption=f"<style {i}>")
        for i, w in enumerate(test["waves"])
    ]
    grid = GridSection(
        title="Content x style <swap>",
        row_labels=["<b>first</b> & co", test["texts"][2]],
        column_labels=list(STYLES),
        cells=[clips[0:2], [clips[2], None]],
        note="rows: sentences; columns: reference styles",
    )
    listing = ListSection(
        title="references vs outputs",
        items=[
            ListItem(text=t, reference=clips[i], output=AudioClip(f"wav/out {3 - i}.wav"))
            for i, t in enumerate(test["texts"][:2])
        ],
    )
    page = write_audio_page(page_dir / "index.html", "tts <run>", [grid, listing])
    html = page.read_text(encoding="utf-8")
    parser = _Links()
    parser.feed(html)
    parser.close()
    assert len(parser.sources) == 3 + 4
    assert all((page_dir / unquote(src)).is_file() for src in parser.sources)
    assert all(not src.startswith("/") for src in parser.sources)  # relative links
    assert "b" not in parser.tags and "swap" not in parser.tags  # text stayed text
    assert "&lt;b&gt;first&lt;/b&gt; &amp; co" in html and "tts &lt;run&gt;" in html

    with pytest.raises(DataError, match="does not exist"):
        write_audio_page(
            page_dir / "x.html", "t", [ListSection("l", [ListItem("a", AudioClip("no.wav"))])]
        )
    outside = save_wav(tmp_path / "elsewhere.wav", test["waves"][0])
    with pytest.raises(DataError, match="outside the page's folder"):
        write_audio_page(
            page_dir / "x.html", "t", [ListSection("l", [ListItem("a", AudioClip(outside))])]
        )
    with pytest.raises(ValueError, match="2 rows x 2 columns"):
        write_audio_page(
            page_dir / "x.html", "t", [GridSection("g", ["a", "b"], ["x", "y"], [[None, None]])]
        )
