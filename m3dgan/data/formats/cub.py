"""Reader for CUB-200-2011 with Reed et al.'s text descriptions: the paper's text->image task.

The published material is two archives:

- ``CUB_200_2011.tgz`` (Caltech) unpacks to ``CUB_200_2011/`` with space-separated tables, one
  image per line: ``images.txt`` (``<image_id> <class folder>/<file>.jpg``), ``classes.txt``
  (``<class_id> <class folder>``), ``image_class_labels.txt`` (``<image_id> <class_id>``),
  ``train_test_split.txt`` (``<image_id> <1 = train, 0 = test>``), ``bounding_boxes.txt``
  (``<image_id> <x> <y> <width> <height>``), and the photos under ``images/``;
- Reed et al. (CVPR 2016) ``cvpr2016_cub`` unpacks to ``cvpr2016_cub/text_c10/<class folder>/
  <image stem>.txt``: ten one-line descriptions per image.

The data set ``cub`` pairs a description (source, text) with its photo (target, a square RGB
crop, 64x64 by default), label = species, references = all descriptions of that photo. Splits
follow ``train_test_split.txt``. A training photo gives one row per description (the paper
trains on every caption; ``texts_per_image`` caps that); a test photo gives one row, its first
description, so every test photo is scored once. At 64 px the full training split (~60k rows)
takes about 0.7 GB.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from m3dgan.data import store
from m3dgan.data.formats import photos
from m3dgan.errors import DataError

NAME = "cub"
IMAGES_ROOT = "CUB_200_2011"  # folder holding images.txt
TEXT_ROOT = "text_c10"
DEFAULT_IMAGE_SIZE = 64
CROPS = ("center", "bbox")


@dataclass(frozen=True)
class Photo:
    """One CUB photo and everything the data set keeps about it."""

    image_id: int
    path: str  # relative to images/, e.g. "001.Black_footed_Albatross/Black_..._0046_18.jpg"
    label: int  # 0-based index into the class list
    train: bool
    box: tuple[float, float, float, float] | None
    texts: tuple[str, ...]


def read_table(path: Path, columns: int, types: tuple[type, ...]) -> dict[int, tuple]:
    """Read a CUB table: ``<id> <value>...`` per line -> {id: values}; DataError on bad lines.

    The last column may hold spaces only when ``types`` ends with ``str`` (file names do not)."""
    if not path.is_file():
        raise DataError(f"{path} is missing (is this the CUB_200_2011 archive?)")
    rows: dict[int, tuple] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(maxsplit=columns - 1)
        if len(fields) != columns:
            raise DataError(
                f"{path}, line {number}: expected {columns} columns, got {len(fields)}: {line!r}"
            )
        try:
            key = int(fields[0])
            values = tuple(kind(field) for kind, field in zip(types, fields[1:], strict=True))
        except ValueError as exc:
            raise DataError(f"{path}, line {number}: bad value in {line!r} ({exc})") from exc
        if key in rows:
            raise DataError(f"{path}, line {number}: id {key} appears twice")
        rows[key] = values
    if not rows:
        raise DataError(f"{path} is empty")
    return rows


def find_root(folder: Path, marker: str) -> Path:
    """The folder under ``folder`` (itself or below) that holds ``marker``; DataError if none."""
    if (folder / marker).exists():
        return folder
    for candidate in sorted(folder.rglob(marker)):
        return candidate.parent
    raise DataError(f"{folder}: no {marker} inside (wrong archive?)")


def read_texts(path: Path) -> tuple[str, ...]:
    """The descriptions in one text_c10 file, one per non-empty line."""
    if not path.is_file():
        raise DataError(f"{path} is missing: every CUB image needs its descriptions file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from exc
    texts = tuple(" ".join(line.split()) for line in lines if line.strip())
    if not texts:
        raise DataError(f"{path} holds no description")
    return texts


def read_photos(images_root: Path, text_root: Path, *, with_boxes: bool) -> tuple[list[str], list]:
    """Read the tables and descriptions; return (class names, photos sorted by image id)."""
    images = read_table(images_root / "images.txt", 2, (str,))
    classes = read_table(images_root / "classes.txt", 2, (str,))
    labels = read_table(images_root / "image_class_labels.txt", 2, (int,))
    split = read_table(images_root / "train_test_split.txt", 2, (int,))
    boxes = read_table(images_root / "bounding_boxes.txt", 5, (float,) * 4) if with_boxes else {}
    class_ids = sorted(classes)
    index = {class_id: i for i, class_id in enumerate(class_ids)}
    photos_out = []
    for image_id, (path,) in sorted(images.items()):
        for table, name in (
            (labels, "image_class_labels.txt"),
            (split, "train_test_split.txt"),
            *([(boxes, "bounding_boxes.txt")] if with_boxes else []),
        ):
            if image_id not in table:
                raise DataError(f"{images_root / name}: no line for image id {image_id} ({path})")
        (class_id,) = labels[image_id]
        if class_id not in index:
            raise DataError(
                f"{images_root / 'image_class_labels.txt'}: image {image_id} has class {class_id}, "
                "which classes.txt does not list"
            )
        if split[image_id][0] not in (0, 1):
            raise DataError(
                f"{images_root / 'train_test_split.txt'}: image {image_id} has split "
                f"{split[image_id][0]} (must be 1 = train or 0 = test)"
            )
        stem = Path(path)
        texts = read_texts(text_root / stem.parent / (stem.stem + ".txt"))
        photos_out.append(
            Photo(
                image_id, path, index[class_id], split[image_id][0] == 1, boxes.get(image_id), texts
            )
        )
    return [classes[c][0] for c in class_ids], photos_out


def _pick(items: list[Photo], limit: int | None, seed: int) -> list[Photo]:
    """A seeded sample of ``limit`` photos in id order (CUB lists photos class by class, so the
    first photos would all be albatrosses)."""
    if limit is None or limit >= len(items):
        return items
    return sorted(random.Random(seed).sample(items, limit), key=lambda p: p.image_id)


def _rows(
    items: list[Photo], images: np.ndarray, test: bool, texts_per_image: int | None
) -> dict[str, object]:
    source, references, index = [], [], []
    for i, photo in enumerate(items):
        chosen = photo.texts[:1] if test else photo.texts[:texts_per_image]
        for text in chosen:
            source.append(text)
            references.append(list(photo.texts))
            index.append(i)
    rows = torch.tensor(index, dtype=torch.int64)
    labels = torch.tensor([p.label for p in items], dtype=torch.int64)
    return {
        "source": source,
        "target": torch.from_numpy(images)[rows],
        "references": references,
        "label": labels[rows],
        "domain": torch.full((len(index),), -1, dtype=torch.int64),
    }


def read_cub(
    images_folder: Path,
    text_folder: Path,
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    limit: int | None = None,
    texts_per_image: int | None = None,
    crop: str = "center",
    seed: int = 0,
    progress: bool = True,
) -> tuple[list[str], dict[str, dict[str, object]]]:
    """Read the unpacked archives; return (class names, {split: rows}) for ``store.write_dataset``.

    ``limit`` caps the photos per split (a seeded sample spread over the species);
    ``crop="bbox"`` crops a square around the bird's bounding box (1.5x its long side) instead of
    the photo's centre, as text->image papers since Reed et al. do.
    """
    if crop not in CROPS:
        raise DataError(f"crop must be one of {CROPS}, got {crop!r}")
    if texts_per_image is not None and texts_per_image < 1:
        raise DataError(f"texts_per_image must be at least 1, got {texts_per_image}")
    images_root = find_root(Path(images_folder), "images.txt")
    text_root = find_root(Path(text_folder), TEXT_ROOT) / TEXT_ROOT
    classes, items = read_photos(images_root, text_root, with_boxes=crop == "bbox")
    splits = {}
    for split, keep in (("train", True), ("test", False)):
        chosen = _pick([p for p in items if p.train == keep], limit, seed)
        if not chosen:
            continue
        images = np.empty((len(chosen), 3, image_size, image_size), np.uint8)
        for i, photo in enumerate(
            tqdm(chosen, desc=f"cub {split}", unit="img", disable=not progress)
        ):
            path = images_root / "images" / photo.path
            if not path.is_file():
                raise DataError(f"{path} is missing (listed in images.txt)")
            with open(path, "rb") as handle:
                images[i] = photos.read_square(
                    handle, image_size, name=str(path), box=photo.box if crop == "bbox" else None
                )
        splits[split] = _rows(chosen, images, split == "test", texts_per_image)
    if not splits:
        raise DataError(f"{images_root}: images.txt lists no photo")
    return classes, splits


def convert(
    inputs: dict[str, Path],
    out: Path,
    *,
    name: str = NAME,
    provenance: dict | None = None,
    progress: bool = True,
    image_size: int = DEFAULT_IMAGE_SIZE,
    limit: int | None = None,
    texts_per_image: int | None = None,
    crop: str = "center",
    seed: int = 0,
) -> Path:
    """Convert the unpacked ``inputs["images"]`` and ``inputs["text"]`` archives into a store
    data set at ``out`` (text source, image target); return ``out``."""
    classes, splits = read_cub(
        inputs["images"],
        inputs["text"],
        image_size=image_size,
        limit=limit,
        texts_per_image=texts_per_image,
        crop=crop,
        seed=seed,
        progress=progress,
    )
    manifest = store.Manifest(
        name=name,
        image_size=image_size,
        source_channels=0,
        target_channels=3,
        classes=classes,
        source_kind=store.TEXT,
        target_kind=store.IMAGE,
        provenance={
            "format": "CUB-200-2011 tables and photos + Reed et al. 2016 text_c10 descriptions",
            "rows": "train: one row per (photo, description); test: one row per photo",
            "crop": crop,
            "limit": limit,
            "texts_per_image": texts_per_image,
            "seed": seed,
            "terms": "see https://www.vision.caltech.edu/datasets/cub_200_2011/",
            **(provenance or {}),
        },
    )
    return store.write_dataset(Path(out), manifest, splits)
