"""Reader for the pix2pix "aligned" folder format (edges2shoes, night2day, facades, maps...).

The published archives unpack to ``<root>/{train,val,test}/*.jpg`` where every image holds a pair
side by side: A (left half) is the source, B (right half) the target, each a square. This module
converts such a folder into the store format (``m3dgan.data.store``) so the trainer reads every
data set the same way.

Splits: ``train`` stays ``train``; ``test`` becomes ``test``; ``val`` becomes ``test`` when there is
no ``test`` folder (edges2shoes ships only train/val) and stays ``val`` otherwise (night2day).

Bad images: by default an unreadable/corrupt image or one whose width is not twice its height
stops the conversion with a DataError naming the file, because a silently shrunken data set makes
results incomparable. ``skip_bad=True`` instead skips such files with a warning, and the manifest's
provenance lists every skipped file and why.

Memory: a split is held in memory as uint8 before it is written, so size it with ``image_size``
(edges2shoes, ~50k pairs, needs ~4.9 GB at 128 px and ~20 GB at the published 256 px).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from m3dgan.data import store
from m3dgan.errors import DataError
from m3dgan.modalities.image import decode as image_decode

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SPLIT_FOLDERS = ("train", "val", "test")
DEFAULT_IMAGE_SIZE = 128
# any exception while PIL decodes a file means the file is damaged (see image_io.DECODE_ERRORS)
_PIL_ERRORS = (Exception,)


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def find_aligned_root(path: Path) -> Path | None:
    """The folder that holds ``train/``/``val/``/``test/``: ``path`` itself or its only subfolder.

    Archives unpack to ``<name>/train/...``, so both the extraction folder and the data set folder
    are accepted. Returns None when neither looks like an aligned data set.
    """
    path = Path(path)
    if not path.is_dir():
        return None
    if any((path / split).is_dir() for split in SPLIT_FOLDERS):
        return path
    children = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(children) == 1 and any((children[0] / s).is_dir() for s in SPLIT_FOLDERS):
        return children[0]
    return None


def split_files(root: Path) -> dict[str, list[Path]]:
    """Output split name -> sorted image files, applying the val -> test rule (module docstring)."""
    found = {split: _images_in(root / split) for split in SPLIT_FOLDERS}
    out = {"train": found["train"]}
    if found["test"]:
        out["test"] = found["test"]
        out["val"] = found["val"]
    else:
        out["test"] = found["val"]
    return {split: files for split, files in out.items() if files}


def read_pair(path: Path, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Read one A|B image; return (A, B) as uint8 [3, image_size, image_size] arrays.

    The A|B layout is defined on the stored pixels (as pix2pix's own loader reads it): the file
    is split there, and each half is then turned upright by the EXIF orientation, if any. Pixels
    are decoded as :mod:`m3dgan.modalities.image.decode` does for every reader (16-bit and float images by
    their tonal range, grey/palette/CMYK converted, transparency on white).
    """
    try:
        with Image.open(path) as im:
            width, height = im.size
            if width != 2 * height:
                raise DataError(
                    f"{path}: {width}x{height} is not an A|B pair (width must be twice the height)"
                )
            orient = image_decode.orientation(im)
            im.draft("RGB", (2 * image_size, image_size))  # JPEG: decode at reduced scale
            im = image_decode.flatten(im, "RGB", str(path))
            half = im.size[0] // 2
            halves = [im.crop((0, 0, half, im.size[1])), im.crop((half, 0, 2 * half, im.size[1]))]
            out = []
            for part in halves:
                if part.size != (image_size, image_size):
                    part = part.resize((image_size, image_size), Image.Resampling.BICUBIC)
                part = image_decode.upright(part, orient)
                out.append(np.asarray(part, np.uint8).transpose(2, 0, 1))
    except DataError:
        raise
    except _PIL_ERRORS as exc:
        raise DataError(
            f"{path}: unreadable or corrupt image ({type(exc).__name__}: {exc})"
        ) from exc
    return out[0], out[1]


def _convert_split(
    files: list[Path], image_size: int, skip_bad: bool, skipped: dict[str, str], bar: tqdm
) -> dict[str, torch.Tensor]:
    n = len(files)
    source = np.empty((n, 3, image_size, image_size), np.uint8)
    target = np.empty((n, 3, image_size, image_size), np.uint8)
    kept = 0
    for path in files:
        bar.update(1)
        try:
            source[kept], target[kept] = read_pair(path, image_size)
        except DataError as exc:
            if not skip_bad:
                raise
            warnings.warn(f"skipping {exc}", stacklevel=3)
            skipped[str(path)] = str(exc)
            continue
        kept += 1
    return {
        "source": torch.from_numpy(source[:kept].copy() if kept < n else source),
        "target": torch.from_numpy(target[:kept].copy() if kept < n else target),
        "label": torch.full((kept,), -1, dtype=torch.int64),
        "domain": torch.full((kept,), -1, dtype=torch.int64),
    }


def convert_aligned(
    src_root: Path,
    out_root: Path,
    image_size: int = DEFAULT_IMAGE_SIZE,
    limit: int | None = None,
    *,
    name: str | None = None,
    skip_bad: bool = False,
    provenance: dict | None = None,
    progress: bool = True,
) -> Path:
    """Convert a pix2pix aligned folder into a store data set at ``out_root``; return ``out_root``.

    ``limit`` caps the images read per split (quick trials); ``provenance`` is merged into the
    manifest's (the fetcher adds the URL and archive digest).
    """
    src = find_aligned_root(Path(src_root))
    if src is None:
        raise DataError(f"{src_root}: no train/, val/ or test/ folder of A|B images found")
    if image_size < 1:
        raise DataError(f"image_size must be positive, got {image_size}")
    files = {split: items[:limit] if limit else items for split, items in split_files(src).items()}
    if not files:
        raise DataError(f"{src}: no images ({', '.join(IMAGE_SUFFIXES)}) in train/, val/ or test/")
    skipped: dict[str, str] = {}
    splits = {}
    total = sum(len(items) for items in files.values())
    label = name or src.name
    with tqdm(total=total, desc=f"{label}: converting", unit="img", disable=not progress) as bar:
        for split, items in files.items():
            splits[split] = _convert_split(items, image_size, skip_bad, skipped, bar)
    splits = {split: t for split, t in splits.items() if len(t["source"])}
    if not splits:
        raise DataError(f"{src}: every image was unreadable or not an A|B pair")
    manifest = store.Manifest(
        name=label,
        image_size=image_size,
        source_channels=3,
        target_channels=3,
        provenance={
            "format": "pix2pix aligned: each image is A (source, left) | B (target, right)",
            "source_folder": str(src.resolve()),
            "split_folders": _split_origin(files),
            "limit": limit,
            "skipped": skipped,
            **(provenance or {}),
        },
    )
    return store.write_dataset(Path(out_root), manifest, splits)


def _split_origin(files: dict[str, list[Path]]) -> dict[str, str]:
    """Which source folder each output split came from, for the manifest."""
    return {split: items[0].parent.name for split, items in files.items() if items}
