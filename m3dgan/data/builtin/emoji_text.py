"""Builders for ``text2emoji`` (caption -> emoji image) and ``emoji2text`` (emoji image -> name).

These are the offline stand-ins for the paper's CUB text->image and COCO image->text tasks, made
from real material installed by ``scripts/setup.sh``:

- artwork: npm ``emoji-datasource-google`` / ``-twitter`` 16.0.0 (64x64 PNGs composited on white,
  exactly as in ``edges2emoji``), so every emoji exists in two vendor styles (``domain``);
- captions: the emoji's name and short names from ``emoji.json`` (emoji-datasource), its English
  CLDR label and keywords from npm ``emojibase-data``, and its annotation and tags from npm
  ``openmoji`` (joined to emoji-datasource by code point sequence, ignoring U+FE0F).

**Emoji identities are shared with edges2emoji.** The emoji list, the class index (``label``,
``manifest.classes``) and the train/test split by emoji identity come from
:func:`m3dgan.data.builtin.edges2emoji.list_emoji` and
:func:`~m3dgan.data.builtin.edges2emoji.split_emoji` with the same random stream, so for one
``(seed, limit)`` all three data sets agree: a classifier of
emoji identity trained on edges2emoji artwork judges text2emoji outputs, and no test emoji is seen
in training by any of them.

Captions are lower-case, normalised (:func:`m3dgan.data.textnorm.normalise_text`) and at most
``MAX_CAPTION_CHARS`` characters (cut at a word boundary). An emoji has two kinds of captions:

- *name captions*: emoji-datasource name and short names (``_``, ``-`` -> space), emojibase label,
  openmoji annotation, deduplicated (typically 2-4 per emoji);
- *keyword captions*: its keywords (emojibase tags, openmoji tags and openmoji's own tags),
  deduplicated, shuffled and grouped ``TAGS_PER_CAPTION`` to a caption ("cheerful, grin, happy,
  smile"), at most ``MAX_KEYWORD_CAPTIONS`` per emoji — a single keyword such as "face" names
  hundreds of emoji, a group of four usually points at a few.

``text2emoji`` rows: ``CAPTIONS_PER_IMAGE`` per (emoji, vendor), the captions taken in turn from
the emoji's shuffled name + keyword captions so the two vendors get different ones where there are
enough; ``references`` = all of the emoji's captions. ``emoji2text`` rows: one per (emoji,
vendor), target = one of its name captions (the two vendors get different ones where possible);
``references`` = all its name captions, the reference set the task's BLEU is defined on (a list
of keywords is not a name).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from m3dgan.data.builtin import edges2emoji
from m3dgan.data.builtin.edges2emoji import VENDORS, Emoji
from m3dgan.data.store import IMAGE, TEXT, Manifest
from m3dgan.data.textnorm import normalise_text
from m3dgan.errors import DataError

EMOJIBASE = "emojibase-data"
OPENMOJI = "openmoji"
NPM_PACKAGES = (*edges2emoji.NPM_PACKAGES, EMOJIBASE, OPENMOJI)
IMAGE_SIZE = edges2emoji.IMAGE_SIZE
MAX_CAPTION_CHARS = 64
TAGS_PER_CAPTION = 4
MAX_KEYWORD_CAPTIONS = 3
CAPTIONS_PER_IMAGE = 3  # text2emoji rows per (emoji, vendor)
SEEN = "text2emoji-seen"  # the split with every emoji in training and held-out captions
LICENCES = {
    EMOJIBASE: "MIT (emojibase-data; labels and keywords from Unicode CLDR, Unicode licence)",
    OPENMOJI: "CC-BY-SA-4.0 (OpenMoji annotations and tags)",
} | {f"emoji-datasource-{v}": edges2emoji.LICENCES[v] for v in VENDORS}


@dataclass(frozen=True)
class Captions:
    """Every caption of one emoji."""

    names: tuple[str, ...]
    keywords: tuple[str, ...]

    @property
    def all(self) -> list[str]:
        return [*self.names, *self.keywords]


def hexcode_key(code: str) -> str:
    """Join key for one emoji across catalogues: upper-case code points without U+FE0F."""
    return "-".join(p for p in code.upper().split("-") if p and p != "FE0F")


def clean_caption(text: str) -> str:
    """Lower-case normal form, cut at a word boundary to ``MAX_CAPTION_CHARS``; "" if empty."""
    text = normalise_text(text.replace("_", " ")).lower()
    if len(text) > MAX_CAPTION_CHARS:
        cut = text[: MAX_CAPTION_CHARS + 1].rsplit(" ", 1)[0] or text[:MAX_CAPTION_CHARS]
        text = cut[:MAX_CAPTION_CHARS].rstrip(" ,;:-")
    return text


def _read_json(path: Path, what: str) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the {what} ({exc}); rerun scripts/setup.sh") from exc
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list ({what}); rerun scripts/setup.sh")
    return data


def _by_hexcode(entries: list[dict]) -> dict[str, dict]:
    return {hexcode_key(e["hexcode"]): e for e in entries if e.get("hexcode")}


def _unique(texts: list[str]) -> list[str]:
    """Cleaned, non-empty, first occurrence kept (order matters for determinism)."""
    return list(dict.fromkeys(c for c in map(clean_caption, texts) if c))


def _tags(value: object) -> list[str]:
    """Tags arrive as a JSON list (emojibase) or a comma-separated string (openmoji)."""
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        return [t for t in value.split(",") if t.strip()]
    return []


def emoji_captions(
    packages: dict[str, Path], emoji: list[Emoji], rng: np.random.Generator
) -> list[Captions]:
    """Captions for each emoji of ``emoji`` (same order); every emoji has at least its name."""
    catalogue = {
        e["image"]: e
        for e in edges2emoji._read_catalogue(packages[edges2emoji.NPM_PACKAGES[0]])
        if e.get("image")
    }
    emojibase = _by_hexcode(_read_json(packages[EMOJIBASE] / "en" / "data.json", "emojibase data"))
    openmoji = _by_hexcode(
        _read_json(packages[OPENMOJI] / "data" / "openmoji.json", "openmoji data")
    )
    out = []
    for item in emoji:
        entry = catalogue[item.image]
        key = hexcode_key(entry.get("unified") or "")
        base, om = emojibase.get(key, {}), openmoji.get(key, {})
        names = _unique(
            [
                entry.get("name") or item.name,
                *(n.replace("-", " ") for n in entry.get("short_names") or []),
                base.get("label") or "",
                om.get("annotation") or "",
            ]
        )
        if not names:
            names = [clean_caption(item.name) or item.image]
        tags = _unique(
            [*_tags(om.get("openmoji_tags")), *_tags(base.get("tags")), *_tags(om.get("tags"))]
        )
        tags = [tags[i] for i in rng.permutation(len(tags))]
        keywords = [g for g in _keyword_groups(tags) if g not in names]
        out.append(Captions(names=tuple(names), keywords=tuple(keywords)))
    return out


def _keyword_groups(tags: list[str]) -> list[str]:
    """Up to MAX_KEYWORD_CAPTIONS captions of up to TAGS_PER_CAPTION whole tags each, every
    caption within MAX_CAPTION_CHARS (a tag is never cut)."""
    groups: list[list[str]] = []
    for tag in tags:
        fits = groups and len(", ".join([*groups[-1], tag])) <= MAX_CAPTION_CHARS
        if fits and len(groups[-1]) < TAGS_PER_CAPTION:
            groups[-1].append(tag)
            continue
        if len(groups) == MAX_KEYWORD_CAPTIONS:
            break
        groups.append([tag])
    return list(dict.fromkeys(", ".join(g) for g in groups))


def _chosen_emoji(
    packages: dict[str, Path], limit: int | None, seed: int
) -> tuple[list[Emoji], dict[str, list[int]]]:
    """The emoji and split of edges2emoji for the same (seed, limit): same list, same stream."""
    rng = np.random.default_rng(seed)
    all_emoji = edges2emoji.list_emoji(packages)
    if len(all_emoji) < 2:
        raise DataError(
            f"found {len(all_emoji)} emoji drawn by both {' and '.join(VENDORS)}; "
            "reinstall the npm packages with `bash scripts/setup.sh`"
        )
    chosen = edges2emoji.split_emoji(all_emoji, rng, limit)
    used = sorted(chosen["train"] + chosen["test"])
    remap = {old: new for new, old in enumerate(used)}
    indices = {split: [remap[i] for i in members] for split, members in chosen.items()}
    return [all_emoji[i] for i in used], indices


def _artwork(
    packages: dict[str, Path], emoji: list[Emoji], progress: bool, name: str
) -> np.ndarray:
    """uint8 [E, V, 3, 64, 64]: every emoji in every vendor style, composited on white."""
    out = np.empty((len(emoji), len(VENDORS), 3, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    with tqdm(
        total=out.shape[0] * out.shape[1], desc=name, unit="img", disable=not progress
    ) as bar:
        for i, item in enumerate(emoji):
            for v, vendor in enumerate(VENDORS):
                rgba = edges2emoji.load_rgba(edges2emoji._image_path(packages, vendor, item.image))
                rgb = np.rint(edges2emoji.composite_on_white(rgba) * 255.0).astype(np.uint8)
                out[i, v] = rgb.transpose(2, 0, 1)
                bar.update(1)
    return out


def _rows_text2emoji(
    indices: list[int], captions: list[Captions], rng: np.random.Generator
) -> list[tuple[int, int, str]]:
    """(emoji, vendor, caption) rows: CAPTIONS_PER_IMAGE per (emoji, vendor), captions in turn."""
    rows = []
    for idx in indices:
        pool = captions[idx].all
        pool = [pool[i] for i in rng.permutation(len(pool))]
        per_image = min(CAPTIONS_PER_IMAGE, len(pool))
        for v in range(len(VENDORS)):
            for j in range(per_image):
                rows.append((idx, v, pool[(v * per_image + j) % len(pool)]))
    return rows


def _rows_emoji2text(
    indices: list[int], captions: list[Captions], rng: np.random.Generator
) -> list[tuple[int, int, str]]:
    """(emoji, vendor, name caption) rows: one per (emoji, vendor), vendors differ if possible."""
    rows = []
    for idx in indices:
        names = captions[idx].names
        first = int(rng.integers(len(names)))
        rows += [(idx, v, names[(first + v) % len(names)]) for v in range(len(VENDORS))]
    return rows


def held_out_captions(
    captions: list[Captions], rng: np.random.Generator
) -> tuple[list[list[str]], list[str | None]]:
    """The ``text2emoji-seen`` split of every emoji's captions: (train captions, test caption).

    An emoji with 2+ captions gives one caption to the test split, chosen at random among its
    captions that no other emoji has (a caption two emoji share could not name one of them).
    Every test caption is then taken out of every emoji's training captions, so no caption
    string is in both splits. An emoji left without a training caption keeps no test caption
    either (it would be zero-shot again, which the ``text2emoji`` split already measures).
    """
    owners: dict[str, int] = {}
    for c in captions:
        for text in set(c.all):
            owners[text] = owners.get(text, 0) + 1
    test: list[str | None] = []
    for c in captions:
        own = [t for t in c.all if owners[t] == 1]
        test.append(own[int(rng.integers(len(own)))] if len(c.all) >= 2 and own else None)
    held = {t for t in test if t is not None}
    train = [[t for t in c.all if t not in held] for c in captions]
    test = [t if pool else None for t, pool in zip(test, train, strict=True)]
    return train, test


def _rows_seen(
    pools: list[list[str]], test: list[str | None], rng: np.random.Generator
) -> dict[str, list[tuple[int, int, str]]]:
    """text2emoji-seen rows: training rows as text2emoji's (CAPTIONS_PER_IMAGE per (emoji,
    vendor) from its training captions), one test row per (emoji, vendor) with its test caption."""
    seen = [i for i, pool in enumerate(pools) if pool]
    train = _rows_text2emoji(seen, [Captions(tuple(p), ()) for p in pools], rng)
    rows_test = [(i, v, text) for i, text in enumerate(test) if text for v in range(len(VENDORS))]
    return {"train": train, "test": rows_test}


def _make_split(
    rows: list[tuple[int, int, str]],
    art: np.ndarray,
    references: list[list[str]],
    text_side: str,
    rng: np.random.Generator,
) -> dict:
    """Shuffled rows (sequential readers see mixed emoji) in the store's split layout."""
    rows = [rows[i] for i in rng.permutation(len(rows))]
    image_side = "target" if text_side == "source" else "source"
    emoji_idx = torch.tensor([r[0] for r in rows], dtype=torch.int64)
    vendor = torch.tensor([r[1] for r in rows], dtype=torch.int64)
    return {
        text_side: [r[2] for r in rows],
        image_side: torch.from_numpy(art[emoji_idx.numpy(), vendor.numpy()]),
        "label": emoji_idx,
        "domain": vendor,
        "references": [list(references[r[0]]) for r in rows],
    }


def _package_version(package_dir: Path) -> str | None:
    try:
        return json.loads((package_dir / "package.json").read_text()).get("version")
    except (OSError, json.JSONDecodeError):
        return None


def _build(
    name: str, packages: dict[str, Path], limit: int | None, seed: int, progress: bool
) -> tuple[Manifest, dict[str, dict]]:
    emoji, indices = _chosen_emoji(packages, limit, seed)
    captions = emoji_captions(packages, emoji, np.random.default_rng([seed, 1]))
    rng = np.random.default_rng([seed, 2])
    art = _artwork(packages, emoji, progress, name)
    text_side = "target" if name == "emoji2text" else "source"
    if name == SEEN:
        pools, test = held_out_captions(captions, np.random.default_rng([seed, 3]))
        rows, held_out = _rows_seen(pools, test, rng), test
        references = {"train": pools, "test": [c.all for c in captions]}
    else:
        held_out = None
        make_rows = _rows_text2emoji if name == "text2emoji" else _rows_emoji2text
        rows = {split: make_rows(indices[split], captions, rng) for split in ("train", "test")}
        names_only = name == "emoji2text"
        refs = [list(c.names) if names_only else c.all for c in captions]
        references = {"train": refs, "test": refs}
    splits = {
        split: _make_split(rows[split], art, references[split], text_side, rng)
        for split in ("train", "test")
    }
    manifest = Manifest(
        name=name,
        image_size=IMAGE_SIZE,
        source_channels=0 if text_side == "source" else 3,
        target_channels=3 if text_side == "source" else 0,
        source_kind=TEXT if text_side == "source" else IMAGE,
        target_kind=IMAGE if text_side == "source" else TEXT,
        classes=[e.name for e in emoji],
        domains=list(VENDORS),
        provenance=_provenance(name, packages, emoji, captions, indices, seed, held_out),
    )
    return manifest, splits


def build_text2emoji(
    packages: dict[str, Path], *, limit: int | None = None, seed: int = 0, progress: bool = True
) -> tuple[Manifest, dict[str, dict]]:
    """text2emoji in memory; ``limit`` caps the number of emoji identities (as edges2emoji)."""
    return _build("text2emoji", packages, limit, seed, progress)


def build_text2emoji_seen(
    packages: dict[str, Path], *, limit: int | None = None, seed: int = 0, progress: bool = True
) -> tuple[Manifest, dict[str, dict]]:
    """text2emoji with every emoji seen in training and held-out captions for test
    (:func:`held_out_captions`); ``limit`` caps the number of emoji identities."""
    return _build(SEEN, packages, limit, seed, progress)


def build_emoji2text(
    packages: dict[str, Path], *, limit: int | None = None, seed: int = 0, progress: bool = True
) -> tuple[Manifest, dict[str, dict]]:
    """emoji2text in memory; ``limit`` caps the number of emoji identities (as edges2emoji)."""
    return _build("emoji2text", packages, limit, seed, progress)


def _provenance(
    name: str,
    packages: dict[str, Path],
    emoji: list[Emoji],
    captions: list[Captions],
    indices: dict[str, list[int]],
    seed: int,
    held_out: list[str | None] | None = None,
) -> dict:
    n_names = [len(c.names) for c in captions]
    n_keywords = [len(c.keywords) for c in captions]
    return {
        "description": (
            "emoji captions (names, short names, CLDR labels, keywords) -> emoji artwork on white"
            if name != "emoji2text"
            else "emoji artwork on white -> one of the emoji's names; references = all its names"
        ),
        "packages": {
            f"npm:{p}": {
                "version": _package_version(packages[p]),
                "path": str(packages[p]),
                "licence": LICENCES[p],
            }
            for p in NPM_PACKAGES
        },
        "captions": {
            "names": "emoji.json name + short_names (emoji-datasource), emojibase en label, "
            "openmoji annotation; lower-case, normalised, deduplicated",
            "keywords": f"emojibase tags + openmoji tags + openmoji_tags, shuffled, groups of "
            f"{TAGS_PER_CAPTION}, at most {MAX_KEYWORD_CAPTIONS} per emoji",
            "max_chars": MAX_CAPTION_CHARS,
            "name_captions": sum(n_names),
            "keyword_captions": sum(n_keywords),
            "captions_per_emoji_mean": round(
                (sum(n_names) + sum(n_keywords)) / max(1, len(captions)), 2
            ),
        },
        "pairing": (
            f"{CAPTIONS_PER_IMAGE} caption rows per (emoji, vendor); references = all captions"
            if name != "emoji2text"
            else "one row per (emoji, vendor), target = one name caption; references = all names"
        )
        + "; label = emoji index (same as edges2emoji), domain = vendor index",
        "split": (
            "every emoji in training; one caption per emoji (among those no other emoji has) "
            "held out for test, and no test caption in any training row"
            if name == SEEN
            else f"emoji identities as edges2emoji (~{edges2emoji.TEST_FRACTION:.0%} per "
            "category held out for test)"
        ),
        "seed": seed,
        "emoji": len(emoji),
        **(
            {"test_captions": sum(1 for t in held_out if t), "seen_emoji": len(emoji)}
            if held_out is not None
            else {"test_emoji": [emoji[i].image for i in indices["test"]]}
        ),
    }
