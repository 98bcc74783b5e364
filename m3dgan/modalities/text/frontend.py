"""The TTS text front end: what a text-to-speech model reads instead of the raw sentence.

Two settings, chosen by ``model.text_cleaners`` and ``model.text_frontend`` and applied only to
the text *source* of a text → speech task (``tts``):

- **cleaners** (``none`` | ``basic`` | ``english``), as in Tacotron's and Coqui TTS's text
  cleaners. ``basic``: lower case, single spaces. ``english``: numbers, ordinals, decimals,
  years, currency and percentages spelled out as words, a table of common English abbreviations
  (``Mr.`` → mister, ``Dr.`` → doctor, ``St.`` → saint, …), ``&`` → and, then lower case and
  single spaces. ``none``: the text as the data set stores it (today's behaviour).
- **inputs** (``characters`` | ``phonemes``). ``phonemes``: the cleaned text as IPA from
  espeak-ng (US English, ``en-us``), with stress marks, punctuation kept (``, . ! ? ; :`` …) and
  one space between words, so word boundaries survive: ``"Hello world!"`` → ``"həlˈoʊ wˈɜːld!"``.

A :class:`TextFrontend` is part of the run's vocabulary (:mod:`m3dgan.modalities.text.vocab`):
the character list is built from the front end's output, the setting is saved with the
vocabulary in every checkpoint, and every encoding — the training and test splits at load
time, ``evaluate``, ``translate --text`` — goes through :meth:`TextFrontend.apply`, so training
and inference read the same form. A vocabulary saved without one (every run before this
module) reads as ``TextFrontend()``: no cleaners, characters.

**Libraries.** Numbers are spelled by ``num2words`` (PyPI, LGPL): cardinals, ordinals and
years (``to="year"``) in one well-kept library for many languages, where ``inflect``, which
Tacotron's ``numbers.py`` used, is English only and needs hand-made year rules; this module only
finds the numbers in the text. Phonemes come from the ``phonemizer`` package (PyPI, GPL-3.0-or-later, as
espeak-ng is) driving espeak-ng's shared library in-process: one call phonemizes a whole batch,
where one ``espeak-ng -q --ipa`` process per sentence would cost a process start each, and one
process for many lines splits its output at clause punctuation, so lines cannot be mapped back
to sentences. The built-in ``speech`` corpus (13,179 train and test texts, 11,532 distinct)
phonemizes in 4.0 s (4.2 s with the english cleaners), measured at ``nice 19`` on 2 cores busy
with two trainings; a process phonemizes each distinct text once (an in-memory cache), so no
cache on disk is kept. Both packages are in the ``speech`` extra; espeak-ng itself is the
Debian package ``espeak-ng`` (with its library, ``libespeak-ng1``).

Errors: :class:`~m3dgan.errors.ConfigError` for an unknown setting;
:class:`~m3dgan.extras.MissingExtraError` (exit 2 from the CLI) when num2words or phonemizer is
not installed or espeak-ng's library cannot be found, naming what to install.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from m3dgan.errors import ConfigError
from m3dgan.extras import MissingExtraError, require

CLEANERS = ("none", "basic", "english")
INPUTS = ("characters", "phonemes")
LANGUAGE = "en-us"  # espeak-ng's voice for phonemes (the built-in corpus is spoken in en-us)

# -- English cleaners ---------------------------------------------------------------------------

# Common English abbreviations (Tacotron's English cleaners' table, plus vs. and etc.), matched
# case-insensitively as a whole word followed by a full stop. "St." is read "saint" as there:
# telling it from "street" would need a tagger.
ABBREVIATIONS: dict[str, str] = {
    "mrs": "missus",
    "mr": "mister",
    "dr": "doctor",
    "drs": "doctors",
    "st": "saint",
    "co": "company",
    "jr": "junior",
    "sr": "senior",
    "maj": "major",
    "gen": "general",
    "rev": "reverend",
    "lt": "lieutenant",
    "hon": "honorable",
    "sgt": "sergeant",
    "capt": "captain",
    "esq": "esquire",
    "ltd": "limited",
    "col": "colonel",
    "ft": "fort",
    "vs": "versus",
    "etc": "et cetera",
}
_ABBREVIATION = re.compile(r"\b(" + "|".join(ABBREVIATIONS) + r")\.", re.IGNORECASE)

# currency symbol -> (one unit, many units, one hundredth, many hundredths)
CURRENCIES: dict[str, tuple[str, str, str, str]] = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", "sen", "sen"),
}
_NUMBER = r"\d+(?:,\d{3})*(?:\.\d+)?"  # 80, 1,000, 3.14
_CURRENCY = re.compile(r"([$£€¥])\s?(" + _NUMBER + r")")
_PERCENT = re.compile(r"(" + _NUMBER + r")\s?%")
_ORDINAL = re.compile(r"\b(\d+(?:,\d{3})*)(st|nd|rd|th)\b", re.IGNORECASE)
_PLAIN = re.compile(r"(?<!\d)(" + _NUMBER + r")")
_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\b")  # 3:30, 12:05
_MINUS = re.compile(r"(?<![\w.])-(?=\d)")  # -4 (not the hyphen of "covid-19")
_DIGIT_LETTER = re.compile(r"(\d)([a-zA-Z])")  # 221B, 3pm: spoken apart
_SPACES = re.compile(r"\s+")
MAX_DIGITS = 15  # longer digit strings (card and phone numbers) are read digit by digit


def _num2words():
    module = require("num2words", "number expansion for TTS text (model.text_cleaners=english)")
    return module.num2words


def _words(words: str) -> str:
    """num2words' output without its commas ("one thousand, five hundred"): no extra pauses."""
    return words.replace(",", "")


def spell_integer(digits: str, year: bool = False) -> str:
    """``"80"`` → ``"eighty"``; digit strings with a leading zero or more than ``MAX_DIGITS``
    digits are read digit by digit (``"007"`` → ``"zero zero seven"``); ``year`` reads
    1000–2999 as a year (``"1999"`` → ``"nineteen ninety-nine"``)."""
    n2w = _num2words()
    if (len(digits) > 1 and digits.startswith("0")) or len(digits) > MAX_DIGITS:
        return " ".join(n2w(int(d)) for d in digits)
    value = int(digits)
    if year and 1000 <= value < 3000:
        return _words(n2w(value, to="year"))
    return _words(n2w(value))


def spell_number(text: str) -> str:
    """A number as written (``"1,000"``, ``"3.14"``, ``"2021"``) → words. Four-digit numbers
    without a comma in 1000–2999 read as years (Tacotron's rule); a decimal part is read digit
    by digit after "point"."""
    whole, _, fraction = text.partition(".")
    year = "," not in whole and len(whole) == 4 and not fraction
    spoken = spell_integer(whole.replace(",", ""), year=year)
    if fraction:
        n2w = _num2words()
        spoken += " point " + " ".join(n2w(int(d)) for d in fraction)
    return spoken


def _currency(match: re.Match) -> str:
    one, many, cent, cents = CURRENCIES[match.group(1)]
    whole, _, fraction = match.group(2).replace(",", "").partition(".")
    units = int(whole)
    hundredths = int((fraction + "00")[:2]) if fraction else 0
    if fraction and len(fraction) > 2:  # $1.005: not money as spoken; read the number
        return f"{spell_number(match.group(2))} {many}"
    parts = []
    if units or not hundredths:
        parts.append(f"{spell_integer(whole)} {one if units == 1 else many}")
    if hundredths:
        parts.append(f"{spell_integer(str(hundredths))} {cent if hundredths == 1 else cents}")
    return " and ".join(parts)


def _ordinal(match: re.Match) -> str:
    digits = match.group(1).replace(",", "")
    if len(digits) > MAX_DIGITS:
        return spell_integer(digits) + " " + match.group(2)
    return _words(_num2words()(int(digits), to="ordinal"))


def expand_numbers(text: str) -> str:
    """Numbers in English text → words: currency (``"$5.50"`` → ``"five dollars and fifty
    cents"``), percentages (``"80%"`` → ``"eighty percent"``), ordinals (``"21st"`` →
    ``"twenty-first"``), decimals (``"3.14"`` → ``"three point one four"``), years
    (``"1999"`` → ``"nineteen ninety-nine"``), times (``"3:30"`` → ``"three thirty"``), signs
    (``"-4"`` → ``"minus four"``), digits run into letters (``"221B"`` → ``"two hundred and
    twenty-one B"``) and other cardinals (``"80"`` → ``"eighty"``, ``"1,000"`` → ``"one
    thousand"``)."""
    text = _CURRENCY.sub(_currency, text)
    text = _PERCENT.sub(lambda m: f"{spell_number(m.group(1))} percent", text)
    text = _ORDINAL.sub(_ordinal, text)
    text = _TIME.sub(_time, text)
    text = _MINUS.sub("minus ", text)
    text = _DIGIT_LETTER.sub(r"\1 \2", text)
    return _PLAIN.sub(lambda m: spell_number(m.group(1)), text)


def _time(match: re.Match) -> str:
    """``"3:30"`` → ``"three thirty"``, ``"3:05"`` → ``"three oh five"``, ``"3:00"`` →
    ``"three o'clock"``."""
    hours, minutes = match.group(1), int(match.group(2))
    if minutes == 0:
        return f"{spell_integer(hours)} o'clock"
    spoken = spell_integer(str(minutes))
    return f"{spell_integer(hours)} {'oh ' if minutes < 10 else ''}{spoken}"


def expand_abbreviations(text: str) -> str:
    """``"Mr. Smith"`` → ``"mister Smith"`` (the table :data:`ABBREVIATIONS`)."""
    return _ABBREVIATION.sub(lambda m: ABBREVIATIONS[m.group(1).lower()], text)


def basic_cleaners(text: str) -> str:
    """Lower case, single spaces, no leading or trailing space."""
    return _SPACES.sub(" ", text.lower()).strip()


def english_cleaners(text: str) -> str:
    """Abbreviations and numbers spelled out, ``&`` → and, then :func:`basic_cleaners`."""
    text = expand_abbreviations(text)
    text = expand_numbers(text)
    return basic_cleaners(text.replace("&", " and "))


_CLEANER_FUNCTIONS = {"none": None, "basic": basic_cleaners, "english": english_cleaners}

# -- phonemes -----------------------------------------------------------------------------------

_BACKENDS: dict[str, Any] = {}  # language -> phonemizer's EspeakBackend (loads libespeak-ng once)
# (language, text) -> phonemes, so a run phonemizes its training text once (building the
# vocabulary and encoding the split both need it); emptied when it grows past CACHE_SIZE
_CACHE: dict[tuple[str, str], str] = {}
CACHE_SIZE = 200_000


def _backend(language: str):
    if language not in _BACKENDS:
        require("phonemizer", "phoneme inputs for TTS (model.text_frontend=phonemes)")
        from phonemizer.backend import EspeakBackend

        try:
            _BACKENDS[language] = EspeakBackend(
                language,
                preserve_punctuation=True,
                with_stress=True,
                language_switch="remove-flags",  # no "(fr)" marks inside the phonemes
            )
        except RuntimeError as exc:
            raise MissingExtraError(
                f"phoneme inputs (model.text_frontend=phonemes) need espeak-ng's library, "
                f"which phonemizer could not load ({exc}); install espeak-ng: "
                f"`sudo apt-get install espeak-ng` (scripts/setup.sh does)"
            ) from exc
    return _BACKENDS[language]


def phonemize(texts: Sequence[str], language: str = LANGUAGE) -> list[str]:
    """IPA of each text from espeak-ng, in one batch: stress marks, punctuation kept, words
    separated by one space. Each distinct text is phonemized once per process (a cache);
    empty texts stay empty.

    Raises MissingExtraError when phonemizer or espeak-ng's library is missing."""
    backend = _backend(language)  # first: names the missing package or library
    from phonemizer.separator import Separator

    known = {t: _CACHE[language, t] for t in set(texts) if (language, t) in _CACHE}
    todo = sorted({t for t in texts if t.strip() and t not in known})
    if todo:
        out = backend.phonemize(todo, separator=Separator(phone="", word=" "), strip=True)
        if len(out) != len(todo):  # phonemizer drops lines it reads as empty
            raise RuntimeError(f"phonemizer returned {len(out)} lines for {len(todo)} texts")
        new = {t: _SPACES.sub(" ", p).strip() for t, p in zip(todo, out, strict=True)}
        if len(_CACHE) + len(new) > CACHE_SIZE:
            _CACHE.clear()
        _CACHE.update(((language, t), p) for t, p in new.items())
        known.update(new)
    return [known.get(t, "") for t in texts]


# -- the front end ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextFrontend:
    """What a text side's model reads: ``cleaners`` (:data:`CLEANERS`), then ``inputs``
    (:data:`INPUTS`) in ``language`` (espeak-ng's voice name, for phonemes).

    The default, ``TextFrontend()``, leaves text as it is (characters, no cleaners)."""

    cleaners: str = "none"
    inputs: str = "characters"
    language: str = LANGUAGE

    def __post_init__(self) -> None:
        if self.cleaners not in CLEANERS:
            raise ConfigError(
                f"unknown text cleaners {self.cleaners!r}; choose from {list(CLEANERS)}"
            )
        if self.inputs not in INPUTS:
            raise ConfigError(f"unknown text front end {self.inputs!r}; choose from {list(INPUTS)}")
        if not isinstance(self.language, str) or not self.language:
            raise ConfigError(f"text front end language must be a name, got {self.language!r}")

    @property
    def plain(self) -> bool:
        """True when the front end changes nothing (today's character inputs)."""
        return self.cleaners == "none" and self.inputs == "characters"

    def clean(self, text: str) -> str:
        function = _CLEANER_FUNCTIONS[self.cleaners]
        return text if function is None else function(text)

    def apply(self, texts: Sequence[str]) -> list[str]:
        """Texts (already in the data sets' normal form) → what the model reads, in one batch:
        cleaned, then phonemized when ``inputs == "phonemes"``."""
        if self.plain:
            return list(texts)
        cleaned = [self.clean(t) for t in texts]
        if self.inputs == "phonemes":
            return phonemize(cleaned, self.language)
        return cleaned

    def to_dict(self) -> dict[str, str]:
        return {"cleaners": self.cleaners, "inputs": self.inputs, "language": self.language}

    @classmethod
    def from_dict(cls, data: dict | None) -> TextFrontend:
        """The saved form back (None or {}: the default). ConfigError for unknown values."""
        if not data:
            return cls()
        if not isinstance(data, dict) or set(data) - {"cleaners", "inputs", "language"}:
            raise ConfigError(f"not a text front end: {data!r}")
        return cls(**data)
