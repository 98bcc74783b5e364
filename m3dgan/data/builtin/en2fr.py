"""Builder for ``en2fr``: English -> French short texts, the offline stand-in for WMT'14 En-Fr.

No parallel corpus ships with Debian, PyPI or npm, but three kinds of professionally translated
English/French string pairs do, and this builder collects them:

- ``emojibase``: npm ``emojibase-data`` English and French CLDR emoji labels (base emoji and skin
  tone variants, aligned by code point sequence) and its group / subgroup / skin tone names;
- ``cldr``: PyPI ``babel``'s CLDR display names, ``Locale('en')`` against ``Locale('fr')``:
  languages, territories, scripts, currencies, variants, measurement systems, metazone names,
  months, weekdays, quarters and units;
- ``gettext``: msgid -> msgstr of every French ``.mo`` catalogue under the system's locale folder
  (``/usr/share/locale/fr/LC_MESSAGES``, or ``$M3DGAN_LOCALE_DIR/fr/LC_MESSAGES``), read with
  ``polib``: plural forms skipped, accelerators (``_File``, ``&Open``) stripped, strings with
  format specifiers, markup, paths, command-line options or line breaks
  dropped, 1-``MAX_WORDS`` words kept.

Every string is normalised (:func:`m3dgan.data.textnorm.normalise_text`); pairs whose two sides
are equal (ignoring case) are dropped; pairs are deduplicated (the first material that has a pair
keeps it, in the order above). The split is **by English source**: sources are grouped by a
case- and final-punctuation-insensitive key, ``TEST_FRACTION`` of the groups (at most
``MAX_TEST_SOURCES``) go to test, so no test phrase (nor a trivial variant) is seen in training.
``references`` = every French translation of the row's source in its split. ``domain`` = which
material the pair came from (``manifest.domains``); ``label`` = -1.

A joint English+French sentencepiece unigram model (``VOCAB_SIZE`` pieces, a soft limit for
small builds) is trained on the *train* split only, single-threaded and unshuffled so it is a
deterministic function of the data, and stored as ``spm.model`` (``manifest.tokenizer``). It has
an unknown piece (id 0) and no BOS/EOS/PAD pieces (the model code adds its own specials), and byte
fallback: a character never seen in training is encoded as its UTF-8 bytes, so every text
round-trips and nothing a user types becomes "unknown".
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from m3dgan.data.store import TEXT, Manifest
from m3dgan.data.subwords import train_unigram
from m3dgan.data.textnorm import normalise_text
from m3dgan.errors import DataError
from m3dgan.extras import require

NAME = "en2fr"
EMOJIBASE = "emojibase-data"
NPM_PACKAGES = (EMOJIBASE,)
MATERIALS = ("emojibase", "cldr", "gettext")  # domain names, in dedup priority order
TOKENIZER = "spm.model"
VOCAB_SIZE = 3000
TEST_FRACTION = 0.075
MAX_TEST_SOURCES = 1000
MAX_WORDS = 20
MAX_CHARS = 160
LOCALE_ENV = "M3DGAN_LOCALE_DIR"
DEFAULT_LOCALE_DIR = "/usr/share/locale"

Pair = tuple[str, str]

# gettext strings that are not plain translatable phrases
_FORMAT = re.compile(r"%(\(\w+\))?[-#0 +']*\d*(\.\d+)?[hlLqjzt]*[a-zA-Z%]|%\d+\$|\$\w|\{\w*\}")
_MARKUP = re.compile(r"<[^>]*>|&[#\w]+;")
# paths, code, options, line breaks; "_" is only legal as an accelerator (stripped before this)
_BAD = re.compile(r"[/\\`|\[\]{}<>=*#@$^~\t\n\r\x00_]|://|(^|[\s(])--?\w")
_LETTER = re.compile(r"[^\W\d_]")
_ACCEL = re.compile(r"\s?\([_&]\w\)|(?<![\w&_])[_&](?=\w)")  # "(_F)", "_File", "&Open"


def _require(module: str) -> object:
    """Import a module of the text extra (babel, polib, sentencepiece) when it is used, or
    a clear error naming the extra (``m3dgan[text]``) to install."""
    return require(module, f"the {NAME} builder")


def locale_dir() -> Path:
    """Folder holding ``fr/LC_MESSAGES/*.mo`` (``$M3DGAN_LOCALE_DIR`` or /usr/share/locale)."""
    return Path(os.environ.get(LOCALE_ENV, DEFAULT_LOCALE_DIR)).expanduser()


def _pair(en: str | None, fr: str | None) -> Pair | None:
    """Normalised pair, or None when a side is empty or both sides say the same thing."""
    if not en or not fr:
        return None
    en, fr = normalise_text(en), normalise_text(fr)
    if not en or not fr or en.casefold() == fr.casefold():
        return None
    if len(en) > MAX_CHARS or len(fr) > MAX_CHARS:
        return None
    return en, fr


# --- material: emojibase -------------------------------------------------------------------------


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc}); rerun scripts/setup.sh") from exc


def emojibase_pairs(package: Path) -> Iterator[Pair]:
    """Emoji labels (with skin tone variants) and message names, aligned across en and fr."""
    labels: dict[str, dict[str, str]] = {}
    for lang in ("en", "fr"):
        entries = _read_json(package / lang / "data.json")
        if not isinstance(entries, list):
            raise DataError(f"{package / lang / 'data.json'}: expected a JSON list of emoji")
        table = labels.setdefault(lang, {})
        for entry in entries:
            for item in [entry, *(entry.get("skins") or [])]:
                if item.get("hexcode") and item.get("label"):
                    table[item["hexcode"]] = item["label"]
    for hexcode, en in labels["en"].items():
        if (pair := _pair(en, labels["fr"].get(hexcode))) is not None:
            yield pair
    messages = {lang: _read_json(package / lang / "messages.json") for lang in ("en", "fr")}
    for kind in ("groups", "subgroups", "skinTones"):
        fr = {m["key"]: m["message"] for m in messages["fr"].get(kind, [])}
        for m in messages["en"].get(kind, []):
            if (pair := _pair(m.get("message"), fr.get(m.get("key")))) is not None:
                yield pair


# --- material: CLDR via babel --------------------------------------------------------------------


def _aligned(en: object, fr: object) -> Iterator[Pair]:
    """Pairs from two code -> name mappings; nested mappings (metazones) are walked."""
    for code, name in en.items():
        other = fr.get(code) if hasattr(fr, "get") else None
        if isinstance(name, str):
            if isinstance(other, str) and (pair := _pair(name, other)) is not None:
                yield pair
        elif hasattr(name, "items") and other is not None and hasattr(other, "items"):
            yield from _aligned(name, other)


def cldr_pairs() -> Iterator[Pair]:
    """Display names that CLDR translates, through babel's public Locale properties."""
    babel = _require("babel")
    units = _require("babel.units")
    en, fr = babel.Locale("en"), babel.Locale("fr")
    for attr in (
        "languages",
        "territories",
        "scripts",
        "currencies",
        "variants",
        "measurement_systems",
        "meta_zones",
    ):
        yield from _aligned(getattr(en, attr), getattr(fr, attr))
    for attr in ("months", "days", "quarters"):
        yield from _aligned(
            getattr(en, attr)["format"]["wide"], getattr(fr, attr)["format"]["wide"]
        )
    for unit in sorted(en._data["unit_display_names"]):
        for length in ("long", "short"):
            pair = _pair(
                units.get_unit_name(unit, length=length, locale=en),
                units.get_unit_name(unit, length=length, locale=fr),
            )
            if pair is not None:
                yield pair


# --- material: gettext catalogues ----------------------------------------------------------------


def catalogues(root: Path | None = None) -> list[Path]:
    """The French ``.mo`` catalogues, sorted by name; DataError when there are none."""
    folder = (root or locale_dir()) / "fr" / "LC_MESSAGES"
    found = sorted(folder.glob("*.mo")) if folder.is_dir() else []
    if not found:
        raise DataError(
            f"no French gettext catalogues (*.mo) in {folder}; install the Debian packages that "
            f"ship them with `bash scripts/setup.sh`, or point {LOCALE_ENV} at a locale folder"
        )
    return found


def clean_message(text: str) -> str | None:
    """A UI string as a plain phrase (accelerators stripped), or None when it is not one."""
    if not text or _FORMAT.search(text) or _MARKUP.search(text):
        return None
    text = _ACCEL.sub("", text)
    if _BAD.search(text) or not _LETTER.search(text):
        return None
    text = normalise_text(text)
    return text if 1 <= len(text.split()) <= MAX_WORDS else None


def gettext_pairs(path: Path) -> Iterator[Pair]:
    """msgid -> msgstr pairs of one catalogue (plural forms and untranslated entries skipped)."""
    polib = _require("polib")
    try:
        catalogue = polib.mofile(str(path))
    except (OSError, ValueError, UnicodeDecodeError, IndexError) as exc:
        raise DataError(f"{path}: unreadable gettext catalogue ({exc})") from exc
    for entry in catalogue:
        if entry.msgid_plural or not entry.msgid or not entry.msgstr or entry.obsolete:
            continue
        en = clean_message(entry.msgid)
        fr = clean_message(entry.msgstr) if en is not None else None
        if fr is not None and (pair := _pair(en, fr)) is not None:
            yield pair


# --- pairs, split, tokenizer ---------------------------------------------------------------------


def source_key(en: str) -> str:
    """Grouping key of an English source: case and final punctuation do not make a new phrase."""
    return en.casefold().rstrip(" .:!?;,").strip()


def collect_pairs(
    packages: dict[str, Path], progress: bool = True
) -> tuple[dict[Pair, int], dict, list[dict]]:
    """Every distinct pair -> material index, raw counts per material, catalogues used."""
    pairs: dict[Pair, int] = {}
    counts = {m: {"pairs": 0, "kept": 0} for m in MATERIALS}
    used: list[dict] = []

    def add(material: int, found: Iterator[Pair]) -> int:
        n = 0
        for pair in found:
            n += 1
            if pair not in pairs:
                pairs[pair] = material
                counts[MATERIALS[material]]["kept"] += 1
        counts[MATERIALS[material]]["pairs"] += n
        return n

    add(0, emojibase_pairs(packages[EMOJIBASE]))
    add(1, cldr_pairs())
    files = catalogues()
    for path in tqdm(files, desc=f"{NAME}: catalogues", unit="file", disable=not progress):
        before = counts["gettext"]["kept"]
        n = add(2, gettext_pairs(path))
        used.append({"file": path.name, "pairs": n, "kept": counts["gettext"]["kept"] - before})
    return pairs, counts, used


def split_pairs(
    pairs: list[Pair], rng: np.random.Generator, limit: int | None
) -> dict[str, list[int]]:
    """Pair indices per split, grouped by :func:`source_key`; ``limit`` caps the source groups."""
    groups: dict[str, list[int]] = {}
    for i, (en, _) in enumerate(pairs):
        groups.setdefault(source_key(en), []).append(i)
    keys = list(groups)
    order = rng.permutation(len(keys))
    if limit:
        order = order[:limit]
    n_test = (
        min(MAX_TEST_SOURCES, max(1, round(len(order) * TEST_FRACTION))) if len(order) > 1 else 0
    )
    test = sorted(i for k in order[:n_test] for i in groups[keys[k]])
    train = sorted(i for k in order[n_test:] for i in groups[keys[k]])
    return {"train": train, "test": test}


def train_tokenizer(texts: list[str], vocab_size: int = VOCAB_SIZE) -> bytes:
    """A serialised sentencepiece unigram model of ``texts`` (deterministic for equal input)."""
    _require("sentencepiece")  # names this builder when the text extra is missing
    return train_unigram(texts, vocab_size, f"the {NAME} builder")


def _make_split(
    pairs: list[Pair], materials: list[int], indices: list[int], rng: np.random.Generator
) -> dict:
    rows = [indices[i] for i in rng.permutation(len(indices))]
    refs: dict[str, list[str]] = {}
    for i in indices:
        refs.setdefault(pairs[i][0], []).append(pairs[i][1])
    return {
        "source": [pairs[i][0] for i in rows],
        "target": [pairs[i][1] for i in rows],
        "references": [list(refs[pairs[i][0]]) for i in rows],
        "label": torch.full((len(rows),), -1, dtype=torch.int64),
        "domain": torch.tensor([materials[i] for i in rows], dtype=torch.int64),
    }


def _package_version(package_dir: Path) -> str | None:
    try:
        return json.loads((package_dir / "package.json").read_text()).get("version")
    except (OSError, json.JSONDecodeError):
        return None


def build(
    packages: dict[str, Path], *, limit: int | None = None, seed: int = 0, progress: bool = True
) -> tuple[Manifest, dict[str, dict], dict[str, bytes]]:
    """Make the data set and its tokenizer in memory; ``limit`` caps the English sources."""
    spm = _require("sentencepiece")
    babel = _require("babel")
    found, counts, used = collect_pairs(packages, progress)
    pairs, materials = list(found), list(found.values())
    if len(pairs) < 2:
        raise DataError(f"found only {len(pairs)} English/French pairs; rerun scripts/setup.sh")
    rng = np.random.default_rng(seed)
    indices = split_pairs(pairs, rng, limit)
    splits = {split: _make_split(pairs, materials, indices[split], rng) for split in indices}
    train = splits["train"]
    if progress:
        print(f"{NAME}: training the sentencepiece model on {len(train['source'])} pairs")
    model = train_tokenizer(train["source"] + train["target"])
    processor = spm.SentencePieceProcessor()
    processor.LoadFromSerializedProto(model)
    manifest = Manifest(
        name=NAME,
        image_size=0,
        source_channels=0,
        target_channels=0,
        source_kind=TEXT,
        target_kind=TEXT,
        tokenizer=TOKENIZER,
        domains=list(MATERIALS),
        provenance={
            "description": "English -> French short texts (emoji labels, CLDR names, UI strings)",
            "packages": {
                f"npm:{EMOJIBASE}": {
                    "version": _package_version(packages[EMOJIBASE]),
                    "path": str(packages[EMOJIBASE]),
                    "licence": "MIT (labels from Unicode CLDR, Unicode licence)",
                },
                "babel": {
                    "version": babel.__version__,
                    "cldr": babel.core.get_cldr_version(),
                    "licence": "BSD-3-Clause (CLDR data: Unicode licence)",
                },
                "sentencepiece": spm.__version__,
            },
            "materials": counts,
            "pairs_per_split_and_material": {
                split: {
                    m: sum(1 for d in data["domain"].tolist() if d == i)
                    for i, m in enumerate(MATERIALS)
                }
                for split, data in splits.items()
            },
            "catalogues": {"folder": str(catalogues()[0].parent), "used": used},
            "split": f"by English source (case/final punctuation folded): {TEST_FRACTION:.1%} of "
            f"sources, at most {MAX_TEST_SOURCES}, held out for test",
            "sources": {s: len({source_key(t) for t in d["source"]}) for s, d in splits.items()},
            "tokenizer": {
                "file": TOKENIZER,
                "type": "sentencepiece unigram, joint en+fr, trained on the train split",
                "vocab_size": processor.GetPieceSize(),
                "requested_vocab_size": VOCAB_SIZE,
                "ids": "0 = unknown; no bos/eos/pad pieces; byte fallback for unseen characters",
            },
            "seed": seed,
        },
    )
    return manifest, splits, {TOKENIZER: model}
