"""Sentencepiece unigram models trained on a data set's own text (Kudo, 2018).

One trainer for the two places that learn a subword vocabulary: the ``en2fr`` builder (a joint
English + French model saved with the data set) and ``model.subwords`` (a model of one text
side's training split, trained when a run starts and saved in its checkpoint's sidecar).
"""

from __future__ import annotations

import io

from m3dgan.errors import DataError
from m3dgan.extras import require

BYTE_PIECES = 256  # byte fallback's pieces, one per byte value
META_PIECES = 1 + BYTE_PIECES  # <unk> and the bytes


def min_pieces(texts: list[str]) -> int:
    """The smallest vocabulary sentencepiece trains on ``texts`` with full character coverage
    and byte fallback: one piece per distinct character (a space counts, as "▁") + <unk> + the
    256 bytes."""
    chars = {("▁" if c.isspace() else c) for text in texts for c in text}
    return len(chars) + META_PIECES


def train_unigram(texts: list[str], vocab_size: int, what: str = "the subword model") -> bytes:
    """A serialised sentencepiece unigram model of ``texts`` with about ``vocab_size`` pieces.

    Deterministic for equal input (one thread, no sampling). ``vocab_size`` is a soft limit: a
    small text gets the vocabulary it has instead of an error. Every character is covered and a
    character unseen in training becomes UTF-8 byte pieces, not <unk>. ``what`` names the user
    in errors. Raises DataError when sentencepiece cannot train (e.g. no text), ValueError for a
    ``vocab_size`` under :func:`min_pieces` of ``texts``, MissingExtraError without the ``text``
    extra."""
    need = min_pieces(texts)
    if vocab_size < need:
        raise ValueError(
            f"{what}: {vocab_size} pieces are too few for this text; it needs at least {need} "
            f"(one per distinct character, <unk> and {BYTE_PIECES} byte pieces)"
        )
    spm = require("sentencepiece", what)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=model,
            model_type="unigram",
            vocab_size=vocab_size,
            hard_vocab_limit=False,  # small (limited) builds get the vocabulary their text has
            character_coverage=1.0,
            byte_fallback=True,  # a character unseen in training becomes UTF-8 byte pieces
            num_threads=1,
            shuffle_input_sentence=False,
            input_sentence_size=0,
            unk_id=0,
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            minloglevel=2,
        )
    except RuntimeError as exc:
        raise DataError(f"sentencepiece could not train on {len(texts)} strings ({exc})") from exc
    return model.getvalue()
