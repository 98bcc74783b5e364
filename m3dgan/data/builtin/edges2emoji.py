"""Builder for ``edges2emoji``: edge maps -> colour emoji, 64x64, with the vendor as the domain.

This is the offline stand-in for edges2shoes: the same kind of task (fill a line drawing with
colour and texture) on real artwork, with a bonus the paper's domain control needs: every emoji
exists in two vendor styles (Google Noto and Twitter Twemoji, npm ``emoji-datasource-*`` 16.0.0),
so ``domain`` = vendor is a real, labelled style attribute.

Source images are edge maps in the edges2shoes convention: **dark lines (0) on white (255)**, one
channel. Edges are Canny edges of each colour channel (so colour boundaries of equal brightness
still show) plus the outline of the alpha mask, computed on the image padded with transparency so
artwork that touches the border still gets an outline there.

The test split holds out ~10% of emoji *identities* (stratified by category): a test emoji is
absent from train in every vendor style, so test scores measure generalisation to new drawings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
import skimage
import torch
from PIL import Image
from skimage.feature import canny
from tqdm import tqdm

from m3dgan.data.store import Manifest
from m3dgan.errors import DataError
from m3dgan.modalities.image import decode as image_decode

NAME = "edges2emoji"
VENDORS = ("google", "twitter")
NPM_PACKAGES = tuple(f"emoji-datasource-{v}" for v in VENDORS)
IMAGE_SIZE = 64
TEST_FRACTION = 0.1
LICENCES = {
    "google": "Apache-2.0 (Noto Emoji artwork)",
    "twitter": "CC-BY-4.0 (Twemoji artwork, (c) Twitter/X and contributors)",
}
EDGE_SIGMA = 1.0
_PAD = 3  # transparent margin added before edge detection


@dataclass(frozen=True)
class Emoji:
    """One base emoji that both vendors draw."""

    name: str  # unique display name, used as the class name
    image: str  # file name under img/<vendor>/64/
    category: str


def _read_catalogue(package_dir: Path) -> list[dict]:
    path = package_dir / "emoji.json"
    try:
        entries = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read the emoji catalogue ({exc})") from exc
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a JSON list of emoji")
    return entries


def _image_path(packages: dict[str, Path], vendor: str, image: str) -> Path:
    return packages[f"emoji-datasource-{vendor}"] / "img" / vendor / str(IMAGE_SIZE) / image


def list_emoji(packages: dict[str, Path]) -> list[Emoji]:
    """Base emoji (no skin-tone variants) with artwork in every vendor, in catalogue order.

    The catalogue has one entry per base emoji; skin tones live in each entry's
    ``skin_variations`` and are deliberately left out. Names are made unique (one name,
    "MAN IN TUXEDO", is used twice) by appending the short name.
    """
    entries = _read_catalogue(packages[NPM_PACKAGES[0]])
    eligible = [
        e
        for e in entries
        if e.get("image")
        and all(e.get(f"has_img_{v}") for v in VENDORS)
        and all(_image_path(packages, v, e["image"]).is_file() for v in VENDORS)
    ]
    eligible.sort(key=lambda e: e.get("sort_order", 0))
    counts: dict[str, int] = {}
    for e in eligible:
        counts[_display_name(e)] = counts.get(_display_name(e), 0) + 1
    out = []
    for e in eligible:
        name = _display_name(e)
        if counts[name] > 1:
            name = f"{name} ({e.get('short_name') or e['image']})"
        out.append(Emoji(name=name, image=e["image"], category=e.get("category") or "?"))
    return out


def _display_name(entry: dict) -> str:
    return entry.get("name") or entry.get("short_name") or entry["image"].rsplit(".", 1)[0]


def split_emoji(
    emoji: list[Emoji], rng: np.random.Generator, limit: int | None
) -> dict[str, list[int]]:
    """Indices of train and test emoji: ``limit`` caps the total, ~10% of each category is test."""
    chosen = np.sort(rng.permutation(len(emoji))[:limit]) if limit else np.arange(len(emoji))
    by_category: dict[str, list[int]] = {}
    for idx in chosen:
        by_category.setdefault(emoji[idx].category, []).append(int(idx))
    target = max(1, round(len(chosen) * TEST_FRACTION)) if len(chosen) > 1 else 0
    test: list[int] = []
    remainders: list[int] = []
    for category in sorted(by_category):
        members = [by_category[category][i] for i in rng.permutation(len(by_category[category]))]
        take = int(len(members) * TEST_FRACTION)
        test += members[:take]
        remainders += members[take:]
    # top up from the leftovers so small (limited) builds still get ~10% test emoji
    extra = target - len(test)
    if extra > 0:
        test += [remainders[i] for i in rng.permutation(len(remainders))[:extra]]
    test_set = set(test)
    return {
        "train": [int(i) for i in chosen if i not in test_set],
        "test": sorted(test_set),
    }


def load_rgba(path: Path) -> np.ndarray:
    """Read a vendor PNG as float32 RGBA [64, 64, 4] in [0, 1]."""
    try:
        with Image.open(path) as im:
            im = image_decode.decode(im, "RGBA", str(path))  # upright, 8-bit (as every reader)
            if im.size != (IMAGE_SIZE, IMAGE_SIZE):
                im = im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
            return np.asarray(im, np.float32) / 255.0
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: unreadable emoji image ({exc})") from exc


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """RGBA floats -> RGB floats over a white background (how emoji are usually seen)."""
    alpha = rgba[..., 3:]
    return rgba[..., :3] * alpha + (1.0 - alpha)


def edge_map(rgba: np.ndarray, sigma: float = EDGE_SIGMA) -> np.ndarray:
    """uint8 [64, 64] edge map, 0 on edges and 255 elsewhere (edges2shoes convention)."""
    margin = ((_PAD, _PAD), (_PAD, _PAD))
    rgb = np.stack(
        [
            np.pad(c, margin, constant_values=1.0)
            for c in composite_on_white(rgba).transpose(2, 0, 1)
        ]
    )
    alpha = np.pad(rgba[..., 3], margin, constant_values=0.0)
    edges = canny(alpha, sigma=sigma)
    for channel in rgb:
        edges |= canny(channel, sigma=sigma, low_threshold=0.05, high_threshold=0.15)
    edges = edges[_PAD:-_PAD, _PAD:-_PAD]
    return np.where(edges, 0, 255).astype(np.uint8)


def _make_split(
    indices: list[int],
    emoji: list[Emoji],
    packages: dict[str, Path],
    rng: np.random.Generator,
    bar: tqdm,
) -> dict[str, torch.Tensor]:
    """One row per (emoji, vendor), rows shuffled so sequential readers see mixed emoji."""
    rows = [(idx, v) for idx in indices for v in range(len(VENDORS))]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    n = len(rows)
    source = np.empty((n, 1, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    target = np.empty((n, 3, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for row, (idx, vendor) in enumerate(rows):
        rgba = load_rgba(_image_path(packages, VENDORS[vendor], emoji[idx].image))
        target[row] = np.rint(composite_on_white(rgba) * 255.0).astype(np.uint8).transpose(2, 0, 1)
        source[row, 0] = edge_map(rgba)
        bar.update(1)
    return {
        "source": torch.from_numpy(source),
        "target": torch.from_numpy(target),
        "label": torch.tensor([idx for idx, _ in rows], dtype=torch.int64),
        "domain": torch.tensor([v for _, v in rows], dtype=torch.int64),
    }


def _package_version(package_dir: Path) -> str | None:
    try:
        return json.loads((package_dir / "package.json").read_text()).get("version")
    except (OSError, json.JSONDecodeError):
        return None


def build(
    packages: dict[str, Path],
    *,
    limit: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> tuple[Manifest, dict[str, dict[str, torch.Tensor]]]:
    """Make the data set in memory; ``limit`` caps the number of emoji identities used."""
    rng = np.random.default_rng(seed)
    all_emoji = list_emoji(packages)
    if len(all_emoji) < 2:
        raise DataError(
            f"found {len(all_emoji)} emoji drawn by both {' and '.join(VENDORS)}; "
            "reinstall the npm packages with `bash scripts/setup.sh`"
        )
    chosen = split_emoji(all_emoji, rng, limit)
    # classes are only the emoji used, in catalogue order; labels index into that list
    used = sorted(chosen["train"] + chosen["test"])
    remap = {old: new for new, old in enumerate(used)}
    emoji = [all_emoji[i] for i in used]
    indices = {split: [remap[i] for i in members] for split, members in chosen.items()}
    total = len(used) * len(VENDORS)
    splits = {}
    with tqdm(total=total, desc="edges2emoji", unit="img", disable=not progress) as bar:
        for split in ("train", "test"):
            splits[split] = _make_split(indices[split], emoji, packages, rng, bar)
    manifest = Manifest(
        name=NAME,
        image_size=IMAGE_SIZE,
        source_channels=1,
        target_channels=3,
        classes=[e.name for e in emoji],
        domains=list(VENDORS),
        provenance=_provenance(packages, emoji, indices, seed),
    )
    return manifest, splits


def _provenance(
    packages: dict[str, Path], emoji: list[Emoji], indices: dict[str, list[int]], seed: int
) -> dict:
    return {
        "description": "Canny edge maps (black lines on white) -> emoji artwork composited on white",
        "packages": {
            f"npm:emoji-datasource-{v}": {
                "version": _package_version(packages[f"emoji-datasource-{v}"]),
                "path": str(packages[f"emoji-datasource-{v}"]),
                "licence": LICENCES[v],
            }
            for v in VENDORS
        }
        | {"pillow": PIL.__version__, "scikit-image": skimage.__version__},
        "source_convention": "uint8 1-channel, 0 = edge line, 255 = background",
        "edges": f"skimage.feature.canny sigma={EDGE_SIGMA} per RGB channel + alpha outline",
        "pairing": "one pair per (emoji, vendor); label = emoji index, domain = vendor index",
        "split": f"~{TEST_FRACTION:.0%} of emoji identities per category held out for test",
        "seed": seed,
        "test_emoji": [emoji[i].image for i in indices["test"]],
        "categories": sorted({e.category for e in emoji}),
    }
