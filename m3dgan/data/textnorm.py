"""One normal form for every text a built-in data set stores (and that user input should get).

Text comes from several sources (npm JSON, CLDR via babel, gettext catalogs) that spell the same
thing differently: compatibility characters (``…``, ligatures, no-break spaces before French
punctuation), curly versus straight quotes, runs of whitespace. Models see characters or subword
pieces, so two spellings of one string would be two different targets. Normalising at build time
(and applying the same function to text a user types) keeps one spelling per string.
"""

from __future__ import annotations

import unicodedata

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def normalise_text(text: str) -> str:
    """NFKC, straight quotes, single spaces, no leading/trailing space."""
    return " ".join(unicodedata.normalize("NFKC", text).translate(_QUOTES).split())
