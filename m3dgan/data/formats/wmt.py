"""Reader for WMT'14 English->French: the paper's text->text (machine translation) task.

Published material:

- training text in the Moses "parallel plain text" layout: two files with the same stem,
  ``<corpus>.fr-en.en`` and ``<corpus>.fr-en.fr``, one sentence per line, line ``i`` of one the
  translation of line ``i`` of the other (Europarl v7: ``training/europarl-v7.fr-en.{en,fr}`` in
  ``training-parallel-europarl-v7.tgz``; news-commentary and Common Crawl use the same layout);
- the test set newstest2014 as SGML, ``newstest2014-fren-src.en.sgm`` (English source) and
  ``newstest2014-fren-ref.fr.sgm`` (French reference) in ``test-full.tgz``: ``<doc docid=...>``
  blocks of ``<seg id="N">sentence</seg>`` lines.

The data set ``wmt14-en-fr`` has text on both sides. Lines are split on ``\\n`` only: Europarl
holds Unicode line separators inside sentences, and ``str.splitlines`` would shift every later
pair. Pairs where either side is empty are dropped (Europarl marks untranslated speeches so) and
counted in the provenance. A SentencePiece model trained on the training sentences of both
languages (one joint vocabulary) is saved beside the data as ``spm.model``.
"""

from __future__ import annotations

import html
import io
import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import torch

from m3dgan.data import store
from m3dgan.errors import DataError
from m3dgan.extras import require

NAME = "wmt14-en-fr"
SOURCE_LANG, TARGET_LANG = "en", "fr"
PARALLEL_SUFFIX = f".{TARGET_LANG}-{SOURCE_LANG}"  # Moses names the pair fr-en for both files
TEST_SOURCE = "newstest2014-fren-src.en.sgm"
TEST_REFERENCE = "newstest2014-fren-ref.fr.sgm"
SPM_FILE = "spm.model"
DEFAULT_VOCAB_SIZE = 8000
SPM_MAX_SENTENCES = 2_000_000  # sentences sampled for training the subword model
_DOC = re.compile(r"<doc\b[^>]*\bdocid\s*=\s*\"([^\"]*)\"", re.IGNORECASE)
_SEG = re.compile(r"<seg\b[^>]*\bid\s*=\s*\"?([^\">\s]+)\"?[^>]*>(.*?)</seg>", re.IGNORECASE)


def _decode(line: bytes, path: Path, number: int) -> str:
    """One line as text with its spaces normalised; DataError naming the line if not UTF-8."""
    try:
        return " ".join(line.decode("utf-8").split())
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}, line {number}: not UTF-8 ({exc})") from exc


def _lines(path: Path) -> Iterator[bytes]:
    """The raw lines of a file, split on ``\\n`` only (binary files iterate that way)."""
    try:
        with open(path, "rb") as handle:
            yield from handle
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc


def read_parallel(
    source_path: Path, target_path: Path, *, limit: int | None = None, lowercase: bool = False
) -> tuple[list[str], list[str], int]:
    """Read a Moses parallel pair -> (sources, targets, dropped empty pairs).

    Keeps at most ``limit`` pairs but reads both files to the end: unequal line counts mean the
    files are not aligned, a DataError naming both."""
    kept_s: list[str] = []
    kept_t: list[str] = []
    dropped = counted_s = counted_t = 0
    for number, (s, t) in enumerate(
        itertools.zip_longest(_lines(source_path), _lines(target_path)), 1
    ):
        counted_s += s is not None
        counted_t += t is not None
        if s is None or t is None or (limit is not None and len(kept_s) >= limit):
            continue
        s, t = _decode(s, source_path, number), _decode(t, target_path, number)
        if not s or not t:
            dropped += 1
            continue
        kept_s.append(s.lower() if lowercase else s)
        kept_t.append(t.lower() if lowercase else t)
    if counted_s != counted_t:
        raise DataError(
            f"{source_path} has {counted_s} lines but {target_path} has {counted_t}: "
            "parallel files must have equal line counts"
        )
    return kept_s, kept_t, dropped


def parallel_pairs(folder: Path) -> list[tuple[Path, Path]]:
    """Every ``<stem>.fr-en.en`` file under ``folder`` with its ``.fr`` partner, sorted."""
    pairs = []
    for english in sorted(folder.rglob(f"*{PARALLEL_SUFFIX}.{SOURCE_LANG}")):
        french = english.with_name(english.name[: -len(SOURCE_LANG)] + TARGET_LANG)
        if not french.is_file():
            raise DataError(f"{english} has no French partner {french.name}")
        pairs.append((english, french))
    if not pairs:
        raise DataError(f"{folder}: no parallel text *{PARALLEL_SUFFIX}.en / .fr inside")
    return pairs


def read_sgm(path: Path) -> dict[tuple[str, str], str]:
    """Segments of a WMT SGML file -> {(docid, seg id): text}, in file order."""
    segments: dict[tuple[str, str], str] = {}
    doc = ""
    for number, raw in enumerate(_lines(path), 1):
        line = _decode(raw, path, number)
        if match := _DOC.search(line):
            doc = match.group(1)
        for seg_id, text in _SEG.findall(line):
            key = (doc, seg_id)
            if key in segments:
                raise DataError(f"{path}, line {number}: segment {seg_id} of doc {doc!r} twice")
            segments[key] = " ".join(html.unescape(text).split())
    if not segments:
        raise DataError(f"{path}: no <seg id=...>...</seg> lines (is this a WMT .sgm file?)")
    return segments


def read_test(source_path: Path, reference_path: Path) -> tuple[list[str], list[str]]:
    """Align a source and a reference SGML file by (docid, seg id)."""
    source, reference = read_sgm(source_path), read_sgm(reference_path)
    if source.keys() != reference.keys():
        missing = min(source.keys() ^ reference.keys())
        raise DataError(
            f"{source_path} and {reference_path} hold different segments "
            f"({len(source)} vs {len(reference)}; e.g. doc {missing[0]!r} seg {missing[1]})"
        )
    return list(source.values()), [reference[key] for key in source]


def find_file(folder: Path, name: str) -> Path:
    found = sorted(folder.rglob(name))
    if not found:
        raise DataError(f"{folder}: no {name} inside (wrong archive?)")
    return found[0]


def train_sentencepiece(
    sentences: list[str], vocab_size: int = DEFAULT_VOCAB_SIZE, seed: int = 0
) -> tuple[bytes, dict]:
    """Train a unigram SentencePiece model on ``sentences``; return (model bytes, facts).

    The vocabulary size is a soft limit, so a small corpus gets a smaller vocabulary instead of
    an error; all characters are covered (French accents must never become unknown)."""
    spm = require("sentencepiece", "subword vocabularies")  # the text extra, imported when used

    if vocab_size < 8:
        raise DataError(f"vocab_size must be at least 8, got {vocab_size}")
    spm.set_random_generator_seed(seed)  # the sentence sampling of a large corpus
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=model,
            vocab_size=vocab_size,
            model_type="unigram",
            character_coverage=1.0,
            hard_vocab_limit=False,
            input_sentence_size=SPM_MAX_SENTENCES,
            shuffle_input_sentence=True,
            minloglevel=2,
        )
    except RuntimeError as exc:
        raise DataError(f"cannot train the SentencePiece model ({exc})") from exc
    processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
    facts = {
        "type": "sentencepiece unigram, joint en+fr vocabulary",
        "vocab_size": processor.get_piece_size(),
        "trained_on": f"train split, both languages (at most {SPM_MAX_SENTENCES} sentences)",
    }
    return model.getvalue(), facts


def read_wmt(
    train_folder: Path,
    test_folder: Path,
    *,
    limit: int | None = None,
    lowercase: bool = False,
) -> tuple[dict[str, dict[str, object]], dict]:
    """Read the unpacked training and test archives -> ({split: rows}, provenance facts).

    ``limit`` caps the training pairs (the first ones of the sorted corpora); the test split is
    always the whole of newstest2014."""
    if limit is not None and limit < 1:
        raise DataError(f"limit must be a positive number of pairs, got {limit}")
    sources: list[str] = []
    targets: list[str] = []
    dropped, corpora = 0, []
    for english, french in parallel_pairs(Path(train_folder)):
        left = None if limit is None else limit - len(sources)
        if left == 0:
            break
        s, t, d = read_parallel(english, french, limit=left, lowercase=lowercase)
        sources += s
        targets += t
        dropped += d
        corpora.append(english.name.removesuffix(f".{SOURCE_LANG}"))
    if not sources:
        raise DataError(f"{train_folder}: the parallel text holds no non-empty pair")
    test_s, test_t = read_test(
        find_file(Path(test_folder), TEST_SOURCE), find_file(Path(test_folder), TEST_REFERENCE)
    )
    if lowercase:
        test_s, test_t = [s.lower() for s in test_s], [t.lower() for t in test_t]
    splits = {
        split: {
            "source": s,
            "target": t,
            "references": [[x] for x in t],
            "label": torch.full((len(s),), -1, dtype=torch.int64),
            "domain": torch.full((len(s),), -1, dtype=torch.int64),
        }
        for split, s, t in (("train", sources, targets), ("test", test_s, test_t))
    }
    facts = {"train_corpora": corpora, "dropped_empty_pairs": dropped, "lowercase": lowercase}
    return splits, facts


def convert(
    inputs: dict[str, Path],
    out: Path,
    *,
    name: str = NAME,
    provenance: dict | None = None,
    progress: bool = True,
    limit: int | None = None,
    lowercase: bool = False,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    seed: int = 0,
) -> Path:
    """Convert the unpacked ``inputs["train"]`` and ``inputs["test"]`` archives into a store
    data set at ``out`` (English text source, French text target) with its ``spm.model``."""
    splits, facts = read_wmt(inputs["train"], inputs["test"], limit=limit, lowercase=lowercase)
    train = splits["train"]
    model, tokenizer = train_sentencepiece(
        [*train["source"], *train["target"]], vocab_size=vocab_size, seed=seed
    )
    manifest = store.Manifest(
        name=name,
        image_size=0,
        source_channels=0,
        target_channels=0,
        source_kind=store.TEXT,
        target_kind=store.TEXT,
        tokenizer=SPM_FILE,
        provenance={
            "format": "Moses parallel text (train) + newstest2014 SGML (test), en -> fr",
            "split_origin": {"train": facts["train_corpora"], "test": "newstest2014"},
            "limit": limit,
            "dropped_empty_pairs": facts["dropped_empty_pairs"],
            "lowercase": lowercase,
            "tokenizer": tokenizer,
            "terms": "see https://www.statmt.org/wmt14/translation-task.html",
            **(provenance or {}),
        },
    )
    return store.write_dataset(Path(out), manifest, splits, {SPM_FILE: model})
