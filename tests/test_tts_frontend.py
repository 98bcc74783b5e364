"""The TTS text front end (issue 13): numbers and abbreviations spoken as words, phonemes from
espeak-ng, the vocabulary made of what the front end outputs, and training and ``translate
--text`` reading text through the same function (``m3dgan.modalities.text.frontend``)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import torch
from conftest import TINY_SPEECH_OVERRIDES, set_args

from m3dgan.config import config_from_dict, layered_config
from m3dgan.data.tensors import text_frontends
from m3dgan.errors import ConfigError, InputError
from m3dgan.modalities.text import frontend as fe
from m3dgan.modalities.text.frontend import TextFrontend, english_cleaners, phonemize
from m3dgan.modalities.text.vocab import CharVocabulary, vocabulary_from_dict

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
PHONEMES = TextFrontend("english", "phonemes")


# -- cleaners -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("80 percent", "eighty percent"),
        ("80% of 64", "eighty percent of sixty-four"),
        ("It rose 12.5 %.", "it rose twelve point five percent."),
        ("The 21st of May", "the twenty-first of may"),
        ("1st, 2nd, 3rd and 4th", "first, second, third and fourth"),
        ("$5", "five dollars"),
        ("$1 each", "one dollar each"),
        ("$5.50", "five dollars and fifty cents"),
        ("$0.01", "one cent"),
        ("£3 or €1,000", "three pounds or one thousand euros"),
        ("Mr. Smith and Mrs. Jones", "mister smith and missus jones"),
        ("Dr. Who, St. Louis", "doctor who, saint louis"),
        ("Capt. Hook & Co.", "captain hook and company"),
        ("In 1999 and 2010", "in nineteen ninety-nine and twenty ten"),
        ("pi is 3.14", "pi is three point one four"),
        ("1,500 people", "one thousand five hundred people"),
        ("Agent 007", "agent zero zero seven"),
        ("The address.", "the address."),  # "dr." inside a word is no abbreviation
        ("Mrs without a stop", "mrs without a stop"),
        ("at 3:30 or 3:05, not 3:00", "at three thirty or three oh five, not three o'clock"),
        ("It was -4 degrees", "it was minus four degrees"),
        ("covid-19", "covid-nineteen"),  # a hyphen in a word is no sign
        ("221B Baker St.", "two hundred and twenty-one b baker saint"),
    ],
)
def test_english_cleaners_speak_numbers_and_abbreviations(text, spoken):
    assert english_cleaners(text) == spoken


def test_cleaned_text_has_no_digits_left():
    text = "On 3/4 at 10:30, 2 of 250 men paid $1,000.99 for 7th-row seats; 99.9% agreed."
    cleaned = english_cleaners(text)
    assert not re.search(r"\d", cleaned), cleaned
    assert "one thousand dollars and ninety-nine cents" in cleaned
    assert "ninety-nine point nine percent" in cleaned and "seventh-row" in cleaned


def test_basic_cleaners_and_none():
    assert TextFrontend("basic").apply(["Hello   World 80"]) == ["hello world 80"]
    assert TextFrontend().apply(["Hello   World 80"]) == ["Hello   World 80"]
    assert TextFrontend().plain and not TextFrontend("basic").plain


# -- phonemes -----------------------------------------------------------------------------------


def espeak_ipa(text: str) -> str:
    done = subprocess.run(
        ["espeak-ng", "-q", "--ipa", "-v", fe.LANGUAGE, text],
        check=True,
        capture_output=True,
        text=True,
    )
    return " ".join(done.stdout.split())


@needs_espeak
@pytest.mark.parametrize("text", ["hello world", "the quick brown fox", "eighty percent"])
def test_phonemes_match_espeak_ng(text):
    assert phonemize([text]) == [espeak_ipa(text)]


@needs_espeak
def test_phonemes_keep_words_punctuation_and_order():
    texts = ["Hello world!", "", "hello world", "Hello world!"]
    out = phonemize(texts)
    assert out[0] == "həlˈoʊ wˈɜːld!" and out[1] == "" and out[2] == "həlˈoʊ wˈɜːld"
    assert out[3] == out[0]
    assert PHONEMES.apply(["80 percent"]) == [espeak_ipa("eighty percent")]


@needs_espeak
def test_phoneme_vocabulary_holds_ipa_and_no_digits():
    texts = ["I paid $80 for 3 books.", "Mr. Jones came 21st.", "She sells sea shells."]
    for frontend in (PHONEMES, TextFrontend("none", "phonemes")):
        vocab = CharVocabulary.build(texts, frontend=frontend)
        assert {"ˈ", "ɪ", "ɛ", "ʃ", " "} <= set(vocab.chars)
        assert not any(c.isdigit() for c in vocab.chars) and "$" not in vocab.chars
        # every character of the training text is known: no <unk> where training had none
        assert all(vocab.unknown(t) == [] for t in texts)
    words = CharVocabulary.build(texts, frontend=TextFrontend("english"))
    assert not any(c.isdigit() or c.isupper() for c in words.chars)


@needs_espeak
def test_vocabulary_saves_its_front_end_and_old_ones_load_plain():
    vocab = CharVocabulary.build(["I paid $80."], frontend=PHONEMES)
    saved = vocab.to_dict()
    assert saved["frontend"] == {"cleaners": "english", "inputs": "phonemes", "language": "en-us"}
    again = vocabulary_from_dict(saved)
    assert again.frontend == PHONEMES and again.encode("I paid $80.") == vocab.encode("I paid $80.")
    assert vocab.decode(vocab.encode("I paid $80.")) == espeak_ipa("i paid eighty dollars") + "."
    # a vocabulary saved before the front end existed: characters, no cleaners, same dict out
    old = {"kind": "char", "chars": list(" .08Iadip$")}
    assert vocabulary_from_dict(old).frontend == TextFrontend()
    assert vocabulary_from_dict(old).to_dict() == old
    assert vocabulary_from_dict(old).encode("I paid $80.")[-4:-2] == [4 + 3, 4 + 2]  # "8", "0"
    with pytest.raises(InputError, match="front end"):
        vocabulary_from_dict({**saved, "frontend": {"inputs": "graphemes"}})


# -- config -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override",
    ["model.text_frontend=graphemes", "model.text_cleaners=french", "model.text_frontend=null"],
)
def test_unknown_front_end_value_is_a_config_error(override):
    with pytest.raises(ConfigError, match=r"model\.text_(frontend|cleaners)"):
        layered_config(task="tts", overrides=[override])


def test_front_end_outside_text_to_speech_is_a_config_error():
    with pytest.raises(ConfigError, match="text → speech"):
        layered_config(task="asr", overrides=["model.text_frontend=phonemes"])
    with pytest.raises(ConfigError, match="text → speech"):
        layered_config(task="en2fr", overrides=["model.text_cleaners=english"])


def test_defaults_and_old_configs_change_nothing():
    old = config_from_dict({"task": "tts", "model": {"nz": 8}})  # a config saved before the keys
    assert (old.model.text_cleaners, old.model.text_frontend) == ("none", "characters")
    assert text_frontends(old) == {}
    cfg = layered_config(task="tts", overrides=["model.text_frontend=phonemes"])
    assert text_frontends(cfg) == {"source": TextFrontend("none", "phonemes")}


def test_missing_phonemizer_library_names_what_to_install(monkeypatch):
    monkeypatch.setattr(fe, "_BACKENDS", {})
    monkeypatch.setattr(fe, "_CACHE", {})
    monkeypatch.setenv("PHONEMIZER_ESPEAK_LIBRARY", "/nonexistent/libespeak-ng.so.1")
    with pytest.raises(fe.MissingExtraError, match="apt-get install espeak-ng"):
        phonemize(["hello"])


# -- a tiny tts run: training and translate --text read text the same way --------------------

TRAIN = ["It costs $5.", "Mr. Smith won 80 percent."]
TEST = ["The 21st day.", "Hi."]
FRONT_END_ARGS = set_args(["model.text_cleaners=english", "model.text_frontend=phonemes"])


class Spy:
    """Records every TextFrontend.apply call (front end, texts) and the encoded splits."""

    def __init__(self, mp: pytest.MonkeyPatch) -> None:
        import m3dgan.train

        self.calls: list[tuple[TextFrontend, list[str]]] = []
        self.splits: list[dict] = []
        apply, encode_split = TextFrontend.apply, m3dgan.train.encode_split

        def spy_apply(frontend, texts):
            self.calls.append((frontend, list(texts)))
            return apply(frontend, texts)

        def spy_encode(split, vocabs):
            out = encode_split(split, vocabs)
            self.splits.append(out)
            return out

        mp.setattr(TextFrontend, "apply", spy_apply)
        mp.setattr(m3dgan.train, "encode_split", spy_encode)


@pytest.fixture(scope="module")
def phoneme_run(tmp_path_factory: pytest.TempPathFactory):
    """A 2-step tts run with english cleaners and phonemes on 4 espeak-ng sentences."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs espeak-ng")
    from speech_fixtures import tiny_tts_dataset

    from m3dgan.audio import MelConfig
    from m3dgan.cli import main

    sentences = {"train": TRAIN, "test": TEST}
    data = tiny_tts_dataset(tmp_path_factory.mktemp("speech"), MelConfig(), sentences=sentences)
    out = tmp_path_factory.mktemp("runs") / "tts"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("M3DGAN_HOME", str(tmp_path_factory.mktemp("home")))
        spy = Spy(mp)
        args = ["train", "--task", "tts", "--data", str(data), "--out", str(out), "--steps", "2"]
        code = main([*args, "--no-progress", *set_args(TINY_SPEECH_OVERRIDES), *FRONT_END_ARGS])
    torch.set_num_threads(threads)
    assert code == 0
    return out, spy


def test_training_and_translate_encode_text_alike(phoneme_run, tmp_path, monkeypatch, capsys):
    from m3dgan.cli import main
    from m3dgan.infer import Translator

    run, train_spy = phoneme_run
    # training: the vocabulary and both splits came through the configured front end
    assert any(f == PHONEMES and set(TRAIN) <= set(texts) for f, texts in train_spy.calls)
    train_split = train_spy.splits[0]
    row = train_split["source_text"].index("It costs $5.")
    trained_ids = train_split["source"][row]
    trained_ids = trained_ids[trained_ids != 0].tolist()

    translator = Translator.from_checkpoint(run, device="cpu")
    vocab = translator.vocabs["source"]
    assert vocab.frontend == PHONEMES  # saved in the checkpoint with the run's symbols
    assert not any(c.isdigit() for c in vocab.chars) and "ˈ" in vocab.chars
    assert translator.encode_text("It costs $5.")[0].tolist() == trained_ids
    assert vocab.decode(trained_ids) == espeak_ipa("it costs five dollars") + "."

    # translate --text goes through the same function with the same front end
    spy = Spy(monkeypatch)
    out = tmp_path / "out"
    args = ["translate", "--checkpoint", str(run), "--text", "It costs $5.", "--out", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    assert (PHONEMES, ["It costs $5."]) in spy.calls
    assert (out / "text0_z0.wav").is_file()


def test_translate_without_espeak_is_exit_2_naming_it(phoneme_run, tmp_path, monkeypatch, capsys):
    from m3dgan.cli import main

    run, _ = phoneme_run
    monkeypatch.setattr(fe, "_BACKENDS", {})
    monkeypatch.setattr(fe, "_CACHE", {})
    monkeypatch.setenv("PHONEMIZER_ESPEAK_LIBRARY", "/nonexistent/libespeak-ng.so.1")
    args = ["translate", "--checkpoint", str(run), "--text", "Hello there.", "--out"]
    code = main([*args, str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "espeak-ng" in err and "apt-get install espeak-ng" in err
    assert "Traceback" not in err


def test_cli_rejects_an_unknown_front_end(tmp_path, capsys):
    from m3dgan.cli import main

    args = ["train", "--task", "tts", "--out", str(tmp_path / "run"), "--steps", "1"]
    code = main([*args, "--set", "model.text_frontend=graphemes"])
    err = capsys.readouterr().err
    assert code == 2 and "model.text_frontend" in err and "Traceback" not in err
