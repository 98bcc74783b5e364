"""Text ↔ token ids: characters (the paper's choice) or sentencepiece subwords.

Every vocabulary shares four special ids — 0 padding, 1 start, 2 end, 3 unknown — so the model
code never needs to know which kind it was given. A vocabulary serialises to a small JSON-able
dict (a character list, or the sentencepiece model as base64) that travels in the checkpoint's
sidecar: a trained run translates without its data set.

Input policy (documented in docs/inputs.md): empty text is an error; text longer than the model's
limit is an error naming both lengths; characters (or pieces) the vocabulary lacks become the
unknown token — a fallback, reported by :meth:`Vocabulary.unknown` so callers can warn.

A character vocabulary may carry a TTS text front end
(:class:`~m3dgan.modalities.text.frontend.TextFrontend`: cleaners, phonemes). Every encoding
applies it after the normal form, a batch at a time, so the ids of training text and of typed
text are made by the same function; it is saved with the characters (``"frontend"``, absent
when the front end changes nothing, as in every vocabulary saved before it existed).
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterable, Sequence

import torch

from m3dgan.data.textnorm import normalise_text
from m3dgan.errors import ConfigError, InputError
from m3dgan.extras import require
from m3dgan.modalities.text.frontend import TextFrontend

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


def normalize(text: str) -> str:
    """The data sets' normalisation (NFKC, straight quotes, single spaces), so typed input maps
    to the ids the model was trained on."""
    return " ".join(normalise_text(text).split())


class Vocabulary:
    kind = ""
    # what a character :meth:`unknown` names becomes (for the caller's warning)
    unknown_becomes = "<unk>"
    frontend = TextFrontend()  # what the text becomes before its ids (default: unchanged)

    @property
    def size(self) -> int:
        raise NotImplementedError

    def pieces(self, text: str) -> list[int]:
        """Ids of ``text`` without the end mark (unknowns → UNK)."""
        raise NotImplementedError

    def unknown(self, text: str) -> list[str]:
        """Characters of ``text`` the vocabulary cannot represent (they become <unk>)."""
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict:
        raise NotImplementedError

    def prepare(self, texts: Sequence[str]) -> list[str]:
        """Texts → what the vocabulary splits into ids: the normal form, then the front end
        (one batch). InputError for a text that is not a string or is empty."""
        normal = []
        for text in texts:
            if not isinstance(text, str):
                raise InputError(f"text must be a string, got {type(text).__name__}")
            text = normalize(text)
            if not text:
                raise InputError("empty text: nothing to translate")
            normal.append(text)
        prepared = self.frontend.apply(normal)
        for before, after in zip(normal, prepared, strict=True):
            if not after:
                raise InputError(f"nothing left of {before!r} after the text front end")
        return prepared

    def _ids(self, prepared: str, max_len: int | None) -> list[int]:
        ids = self.pieces(prepared) + [EOS]
        if max_len is not None and len(ids) > max_len:
            raise InputError(
                f"text is too long: {len(ids)} tokens (end mark included), this model reads at "
                f"most {max_len}; shorten it or split it into sentences"
            )
        return ids

    def encode(self, text: str, max_len: int | None = None) -> list[int]:
        """Ids of ``text`` followed by the end mark; raises InputError on empty / over-long."""
        return self._ids(self.prepare([text])[0], max_len)

    def encode_batch(self, texts: Sequence[str], max_len: int | None = None) -> torch.Tensor:
        """Padded int64 ids [N, L] (L = longest row); the front end runs once for the batch."""
        rows = [self._ids(t, max_len) for t in self.prepare(list(texts))]
        width = max((len(r) for r in rows), default=1)
        out = torch.full((len(rows), width), PAD, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return out

    def decode_batch(self, ids: torch.Tensor) -> list[str]:
        return [self.decode(row.tolist()) for row in ids]


class CharVocabulary(Vocabulary):
    """One id per character seen in the training text (plus the specials); with a front end,
    per character of the training text as the front end makes it (IPA symbols for phonemes)."""

    kind = "char"

    def __init__(self, chars: Sequence[str], frontend: TextFrontend | None = None) -> None:
        self.chars = list(chars)
        self.index = {c: i + len(SPECIALS) for i, c in enumerate(self.chars)}
        self.frontend = frontend or TextFrontend()

    @classmethod
    def build(
        cls, texts: Iterable[str], min_count: int = 1, frontend: TextFrontend | None = None
    ) -> CharVocabulary:
        frontend = frontend or TextFrontend()
        prepared = frontend.apply([normalize(t) for t in texts])
        counts = Counter(c for t in prepared for c in t)
        return cls(sorted(c for c, n in counts.items() if n >= min_count), frontend)

    @property
    def size(self) -> int:
        return len(SPECIALS) + len(self.chars)

    def pieces(self, text: str) -> list[int]:
        return [self.index.get(c, UNK) for c in text]

    def unknown(self, text: str) -> list[str]:
        text = normalize(text)
        shown = self.frontend.apply([text])[0] if text else text
        return sorted({c for c in shown if c not in self.index})

    def decode(self, ids: Iterable[int]) -> str:
        out = []
        for i in ids:
            if i == EOS:
                break
            if i >= len(SPECIALS):
                out.append(self.chars[i - len(SPECIALS)])
            elif i == UNK:
                out.append("\ufffd")
        return "".join(out)

    def to_dict(self) -> dict:
        if self.frontend.plain:
            return {"kind": self.kind, "chars": self.chars}
        return {"kind": self.kind, "chars": self.chars, "frontend": self.frontend.to_dict()}


class SubwordVocabulary(Vocabulary):
    """A sentencepiece model; its piece i has id i + 4 here (its own unknown maps to <unk>)."""

    kind = "sentencepiece"
    unknown_becomes = "UTF-8 byte pieces (or <unk>): the subword model has no piece for them"

    def __init__(self, model_proto: bytes) -> None:
        # the text extra, imported when used (m3dgan.extras)
        spm = require("sentencepiece", "subword vocabularies")

        self.proto = bytes(model_proto)
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.LoadFromSerializedProto(self.proto)
        except (RuntimeError, OSError) as exc:
            raise InputError(f"not a sentencepiece model ({exc})") from exc

    @classmethod
    def from_file(cls, path) -> SubwordVocabulary:
        with open(path, "rb") as handle:
            return cls(handle.read())

    @property
    def size(self) -> int:
        return len(SPECIALS) + self.sp.GetPieceSize()

    def pieces(self, text: str) -> list[int]:
        unk = self.sp.unk_id()
        return [UNK if i == unk else i + len(SPECIALS) for i in self.sp.EncodeAsIds(text)]

    def unknown(self, text: str) -> list[str]:
        """Characters the subword model has no piece for (with ``character_coverage=1``, as
        :func:`m3dgan.data.subwords.train_unigram` trains: those absent from its training text).
        With byte fallback (ours) they become UTF-8 byte pieces; without it, <unk>."""
        unk = self.sp.unk_id()
        return sorted(
            c
            for c in set(normalize(text)) - {" "}
            if any(i == unk or self.sp.IsByte(i) for i in self.sp.EncodeAsIds(c))
        )

    def decode(self, ids: Iterable[int]) -> str:
        kept = []
        for i in ids:
            if i == EOS:
                break
            if i >= len(SPECIALS):
                kept.append(i - len(SPECIALS))
            elif i == UNK:
                kept.append(self.sp.unk_id())
        return self.sp.DecodeIds(kept)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "model": base64.b64encode(self.proto).decode("ascii")}


def vocabulary_from_dict(data: dict) -> Vocabulary:
    kind = data.get("kind")
    if kind == CharVocabulary.kind:
        try:
            frontend = TextFrontend.from_dict(data.get("frontend"))
        except ConfigError as exc:
            raise InputError(f"damaged text front end ({exc})") from exc
        return CharVocabulary(data["chars"], frontend)
    if kind == SubwordVocabulary.kind:
        return SubwordVocabulary(base64.b64decode(data["model"]))
    raise InputError(f"unknown vocabulary kind {kind!r}")
