"""Corpus BLEU and chrF with sacreBLEU, against any number of references per hypothesis.

The paper reports BLEU-1 and BLEU-4 for image captioning (MS-COCO) and tokenized corpus BLEU for
translation (WMT'14 En-Fr). BLEU-n here is sacreBLEU's corpus BLEU with ``max_ngram_order=n``:
the geometric mean of the clipped 1..n-gram precisions times the brevity penalty, on the 0-100
scale sacreBLEU prints. BLEU-4 is sacreBLEU's default BLEU; BLEU-1 is the same computation with
unigrams only (sacreBLEU's signature does not record the order, so the signature returned here is
the same for both).

References may be ragged (an emoji has as many captions as its sources give it). sacreBLEU takes
references as *streams* (stream k holds the k-th reference of every hypothesis) and accepts
``None`` in a stream for "no k-th reference here", so short lists are padded with ``None``.

chrF (Popović 2015) is sacreBLEU's ``CHRF`` with its defaults (chrF2: character n-grams up to
6, β = 2, whitespace ignored), on the 0-100 scale; it needs no tokenizer and gives partial
credit inside words, so it is the more telling score for short phrases.

Tokenizers (sacreBLEU's ``tokenize``): ``"13a"`` (default) is the mteval-v13a tokenizer that
WMT results use: it splits punctuation off words. ``"char"`` scores characters instead of words,
for character-level tasks or very short outputs where word n-grams are too sparse. Other
sacreBLEU tokenizers (``"intl"``, ``"none"``, ...) are accepted too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from m3dgan.errors import ConfigError, DataError
from m3dgan.extras import require  # sacrebleu: the text extra, imported when used

DEFAULT_TOKENIZER = "13a"


@dataclass(frozen=True)
class BleuScores:
    """BLEU-1 and BLEU-4 of one corpus (0-100), with what is needed to reproduce them."""

    bleu1: float
    bleu4: float
    signature: str  # sacreBLEU's signature (tokenizer, case, smoothing, references, version)
    brevity_penalty: float  # of BLEU-4 (BLEU-1's is the same)
    precisions: tuple[float, ...]  # clipped 1..4-gram precisions (0-100)
    sentences: int

    def as_dict(self) -> dict:
        """JSON-ready fields, for evaluation reports."""
        return {**asdict(self), "precisions": list(self.precisions)}


def reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Per-hypothesis reference lists -> sacreBLEU's reference streams, padded with ``None``."""
    for i, refs in enumerate(references):
        if isinstance(refs, str):
            raise ValueError(f"references[{i}] is a string; give a list of reference strings")
        if not refs:
            raise DataError(f"hypothesis {i} has no reference to score it against")
        if not all(isinstance(r, str) for r in refs):
            raise ValueError(f"references[{i}] must hold only strings")
    depth = max(len(refs) for refs in references)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(depth)]


def _check_inputs(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], metric: str
) -> None:
    """ValueError unless ``hypotheses`` is a list of strings with one reference list each;
    DataError when it is empty."""
    if isinstance(hypotheses, str) or not all(isinstance(h, str) for h in hypotheses):
        raise ValueError("hypotheses must be a list of strings")
    if len(hypotheses) == 0:
        raise DataError(f"no hypotheses to score with {metric}")
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} hypotheses but {len(references)} reference lists; "
            "give one list of references per hypothesis"
        )


def corpus_bleu(
    hypotheses: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    tokenize: str = DEFAULT_TOKENIZER,
    lowercase: bool = False,
) -> BleuScores:
    """Corpus BLEU-1 and BLEU-4 of ``hypotheses[i]`` against all of ``references[i]``.

    Raises DataError when there is nothing to score (no hypotheses, or a hypothesis without
    references), ValueError when the lists do not line up, ConfigError for an unknown tokenizer.
    """
    _check_inputs(hypotheses, references, "BLEU")
    BLEU = require("sacrebleu.metrics", "BLEU").BLEU  # sacreBLEU's class
    if tokenize not in BLEU.TOKENIZERS:
        raise ConfigError(
            f"unknown BLEU tokenizer {tokenize!r}; choose from {list(BLEU.TOKENIZERS)}"
        )
    streams = reference_streams(references)
    hyps = list(hypotheses)
    scores = {}
    for order in (1, 4):
        bleu = BLEU(tokenize=tokenize, lowercase=lowercase, max_ngram_order=order)
        scores[order] = bleu.corpus_score(hyps, streams)
    four = scores[4]
    return BleuScores(
        bleu1=float(scores[1].score),
        bleu4=float(four.score),
        signature=str(bleu.get_signature()),
        brevity_penalty=float(four.bp),
        precisions=tuple(float(p) for p in four.precisions),
        sentences=len(hyps),
    )


def corpus_chrf(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus chrF2 (sacreBLEU ``CHRF()``, 0-100) of ``hypotheses[i]`` against all of
    ``references[i]``. Raises as :func:`corpus_bleu` for empty or misaligned input."""
    _check_inputs(hypotheses, references, "chrF")
    CHRF = require("sacrebleu.metrics", "CHRF").CHRF
    return float(CHRF().corpus_score(list(hypotheses), reference_streams(references)).score)
