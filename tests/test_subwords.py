"""``model.subwords=N``: a text side whose data set reads it as characters gets a sentencepiece
unigram model of about N pieces, trained on that side's distinct training texts when the run
starts. It is deterministic (every rank and every resume build the same one), travels in the
checkpoint so ``translate`` reads typed text with it, and is refused where it cannot apply."""

from __future__ import annotations

import pytest
from conftest import TINY_OVERRIDES, set_args
from text_fixtures import TEXT_MODEL_OVERRIDES, write_image_text, write_text2text

from m3dgan.cli import main
from m3dgan.config import config_from_dict
from m3dgan.data import store
from m3dgan.data.tensors import build_vocabularies
from m3dgan.errors import ConfigError
from m3dgan.modalities.text.vocab import CharVocabulary, SubwordVocabulary

ARGS = set_args(TINY_OVERRIDES + TEXT_MODEL_OVERRIDES)


def _train_split(root):
    return store.load_split(root, "train")


def test_subwords_replace_characters_and_are_deterministic(tmp_path):
    root = write_image_text(tmp_path / "d", text_source=True)
    manifest, train = store.read_manifest(root), _train_split(root)
    chars = build_vocabularies(root, manifest, train)["source"]
    assert isinstance(chars, CharVocabulary)
    vocab = build_vocabularies(root, manifest, train, subwords=300)["source"]
    assert isinstance(vocab, SubwordVocabulary) and vocab.size > 4
    with pytest.raises(ConfigError, match="needs at least 267"):  # 10 characters + 257
        build_vocabularies(root, manifest, train, subwords=260)
    # the same texts in another order give the same model (ranks, resume)
    shuffled = dict(train, source=list(reversed(train["source"])))
    again = build_vocabularies(root, manifest, shuffled, subwords=300)["source"]
    assert again.proto == vocab.proto
    text = train["source"][0]
    assert len(vocab.pieces(text)) < len(chars.pieces(text))  # pieces, not characters
    assert vocab.decode(vocab.encode(text)) == text
    # a character the training text lacks becomes byte pieces: named, so translate warns
    assert vocab.unknown(text) == []
    assert vocab.unknown(text + " \u2603") == ["\u2603"]
    assert vocab.decode(vocab.encode("\u2603")) == "\u2603"


def test_subwords_refused_where_they_cannot_apply(tmp_path):
    plain = write_text2text(tmp_path / "plain")
    manifest = store.read_manifest(plain)
    manifest = store.Manifest(**(vars(manifest) | {"tokenizer": "tok.model", "files": {}}))
    splits = {s: store.load_split(plain, s) for s in ("train", "test")}
    # a data set with its own subword model (the bytes are never read: refused before)
    root = store.write_dataset(tmp_path / "d", manifest, splits, extra_files={"tok.model": b"m"})
    manifest = store.read_manifest(root)
    with pytest.raises(ConfigError, match="has its own subword model"):
        build_vocabularies(root, manifest, _train_split(root), subwords=50)
    with pytest.raises(ConfigError, match="model.subwords"):
        config_from_dict({"task": "text2emoji", "model": {"subwords": 200}})
    with pytest.raises(ConfigError, match="model.subwords"):
        config_from_dict({"task": "text2emoji", "model": {"subwords": -1}})


def test_cli_trains_with_subwords_and_translate_reads_typed_text_with_them(tmp_path, capsys):
    data = write_image_text(tmp_path / "data", text_source=True)
    run = tmp_path / "run"
    args = ["train", "--task", "text2emoji", "--data", str(data), "--out", str(run)]
    extra = ["--set", "model.subwords=300", "--set", "model.text_encoder=bag"]
    assert main(args + ARGS + extra + ["--set", "train.steps=2", "--no-progress"]) == 0
    assert "the source text reads as" in capsys.readouterr().out  # the run says what it built
    from m3dgan.infer import Translator

    tr = Translator.from_checkpoint(run)
    assert tr.cfg.model.subwords == 300
    vocab = tr.source.codec
    assert isinstance(vocab, SubwordVocabulary)
    out = tmp_path / "out"
    cmd = ["translate", "--checkpoint", str(run), "--text", "red square", "--out", str(out)]
    assert main(cmd + ["--samples", "1"]) == 0
    assert (out / "text0_z0.png").is_file()
    # a task without a text side refuses the switch before reading any data
    code = main(
        ["train", "--task", "digits", "--set", "model.subwords=500", "--out", str(tmp_path / "x")]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "model.subwords=500" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_a_run_refused_when_its_data_is_read_leaves_no_config_behind(tmp_path, capsys):
    data = write_image_text(tmp_path / "data", text_source=True)
    run = tmp_path / "runs" / "t2e"
    args = ["train", "--task", "text2emoji", "--data", str(data), "--out", str(run), "--no-progress"]
    args += [*ARGS, "--set", "train.steps=1", "--set", "model.text_encoder=bag"]
    # too few pieces for this data set's characters: known only once its texts are read
    assert main([*args, "--set", "model.subwords=260"]) == 2
    assert "needs at least" in capsys.readouterr().err
    assert not run.exists()  # no config.yaml that a --resume would trip over again
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    assert main([*args, "--set", "model.subwords=260"]) == 2
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]  # a user's folder stays
    assert main([*args, "--set", "model.subwords=300"]) == 0  # the fixed command starts there
