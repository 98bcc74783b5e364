"""Reader for MS-COCO 2014 captions: the paper's image->text task.

The published material is three zip archives:

- ``annotations_trainval2014.zip`` with ``annotations/captions_{train,val}2014.json``: a JSON
  object whose ``images`` list holds ``{"id", "file_name", ...}`` and whose ``annotations`` list
  holds ``{"image_id", "id", "caption"}`` (about five captions per image);
- ``train2014.zip`` and ``val2014.zip`` with the photos, ``<split>2014/<file_name>``.

The data set ``coco-captions`` pairs a photo (source, a square RGB centre crop, 64x64 by default)
with a caption (target, text); references = every caption of that photo. ``train`` comes from
train2014, ``test`` from val2014 (as the paper and most captioning work evaluate on val2014).
A training photo gives one row per caption (``texts_per_image`` caps that), a test photo one row.

The photo archives (13 GB and 6 GB) are read in place, member by member, so converting a small
``limit`` needs no room for the unpacked photos. Memory: a split is held as uint8 before it is
written; all of train2014 at 64 px with every caption is ~414k rows, about 5 GB
(``texts_per_image=1``: about 1 GB).
"""

from __future__ import annotations

import json
import random
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from tqdm import tqdm

from m3dgan.data import store
from m3dgan.data.formats import photos
from m3dgan.errors import DataError

NAME = "coco-captions"
DEFAULT_IMAGE_SIZE = 64
CAPTION_FILES = {"train": "captions_train2014.json", "test": "captions_val2014.json"}


def open_zip(path: Path) -> zipfile.ZipFile:
    """Open a zip archive; DataError when it is damaged or not a zip."""
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path}: damaged or not a zip archive ({exc})") from exc


def _member(archive: zipfile.ZipFile, path: Path, file_name: str) -> str:
    """The member of ``archive`` whose base name is ``file_name`` (COCO nests them in a folder)."""
    matches = [n for n in archive.namelist() if PurePosixPath(n).name == file_name]
    if len(matches) != 1:
        problem = "not" if not matches else "more than once"
        raise DataError(f"{path}: {file_name} is {problem} in the archive")
    return matches[0]


def parse_captions(raw: bytes, name: str) -> dict[int, tuple[str, list[str]]]:
    """Parse a captions JSON -> {image id: (file name, captions)}; DataError naming the problem.

    Images without a caption are dropped; captions are whitespace-normalised (some COCO captions
    end with a newline or carry doubled spaces)."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{name}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise DataError(f"{name}: expected a JSON object with 'images' and 'annotations'")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{name}: no {key!r} list (is this a COCO captions file?)")
    files: dict[int, str] = {}
    for i, image in enumerate(data["images"]):
        if not isinstance(image, dict) or not {"id", "file_name"} <= image.keys():
            raise DataError(f"{name}: images[{i}] lacks 'id' or 'file_name'")
        files[image["id"]] = str(image["file_name"])
    captions: dict[int, list[str]] = {}
    for i, note in enumerate(data["annotations"]):
        if not isinstance(note, dict) or not {"image_id", "caption"} <= note.keys():
            raise DataError(f"{name}: annotations[{i}] lacks 'image_id' or 'caption'")
        if note["image_id"] not in files:
            raise DataError(
                f"{name}: annotations[{i}] refers to image {note['image_id']}, "
                "which the 'images' list does not hold"
            )
        text = " ".join(str(note["caption"]).split())
        if text:
            captions.setdefault(note["image_id"], []).append(text)
    if not captions:
        raise DataError(f"{name}: no captions")
    return {image_id: (files[image_id], texts) for image_id, texts in sorted(captions.items())}


def read_captions(annotations_zip: Path, split: str) -> dict[int, tuple[str, list[str]]]:
    """The captions of one split (``train`` or ``test``) from the annotations archive."""
    with open_zip(annotations_zip) as archive:
        member = _member(archive, annotations_zip, CAPTION_FILES[split])
        return parse_captions(archive.read(member), f"{annotations_zip}:{member}")


def _rows(
    captions: list[list[str]], images: np.ndarray, test: bool, texts_per_image: int | None
) -> dict[str, object]:
    target, references, index = [], [], []
    for i, texts in enumerate(captions):
        for text in texts[:1] if test else texts[:texts_per_image]:
            target.append(text)
            references.append(list(texts))
            index.append(i)
    rows = torch.tensor(index, dtype=torch.int64)
    return {
        "source": torch.from_numpy(images)[rows],
        "target": target,
        "references": references,
        "label": torch.full((len(index),), -1, dtype=torch.int64),
        "domain": torch.full((len(index),), -1, dtype=torch.int64),
    }


def read_split(
    annotations_zip: Path,
    images_zip: Path,
    split: str,
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    limit: int | None = None,
    texts_per_image: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, object]:
    """Read one split's photos and captions into rows for ``store.write_dataset``.

    ``limit`` caps the photos (a seeded sample, read in id order)."""
    if texts_per_image is not None and texts_per_image < 1:
        raise DataError(f"texts_per_image must be at least 1, got {texts_per_image}")
    captions = read_captions(annotations_zip, split)
    ids = list(captions)
    if limit is not None and limit < len(ids):
        ids = sorted(random.Random(seed).sample(ids, limit))
    images = np.empty((len(ids), 3, image_size, image_size), np.uint8)
    with open_zip(images_zip) as archive:
        members = {PurePosixPath(n).name: n for n in archive.namelist() if not n.endswith("/")}
        for i, image_id in enumerate(
            tqdm(ids, desc=f"coco {split}", unit="img", disable=not progress)
        ):
            file_name = captions[image_id][0]
            if file_name not in members:
                raise DataError(f"{images_zip}: {file_name} (image {image_id}) is not in it")
            name = f"{images_zip}:{members[file_name]}"
            try:
                with archive.open(members[file_name]) as handle:
                    images[i] = photos.read_square(handle, image_size, name=name)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError) as exc:
                raise DataError(f"{name}: damaged archive member ({exc})") from exc
    return _rows([captions[i][1] for i in ids], images, split == "test", texts_per_image)


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
    seed: int = 0,
) -> Path:
    """Convert ``inputs["annotations"]``, ``inputs["train"]`` and ``inputs["val"]`` (the three zip
    archives, read in place) into a store data set at ``out`` (image source, text target).

    ``limit`` caps the photos of each split."""
    splits = {
        split: read_split(
            inputs["annotations"],
            inputs[archive],
            split,
            image_size=image_size,
            limit=limit,
            texts_per_image=texts_per_image,
            seed=seed,
            progress=progress,
        )
        for split, archive in (("train", "train"), ("test", "val"))
    }
    manifest = store.Manifest(
        name=name,
        image_size=image_size,
        source_channels=3,
        target_channels=0,
        source_kind=store.IMAGE,
        target_kind=store.TEXT,
        provenance={
            "format": "MS-COCO 2014 captions JSON + train2014/val2014 photos",
            "split_origin": {"train": "train2014", "test": "val2014"},
            "rows": "train: one row per (photo, caption); test: one row per photo",
            "limit": limit,
            "texts_per_image": texts_per_image,
            "seed": seed,
            "terms": "annotations CC BY 4.0; photos under Flickr terms (https://cocodataset.org)",
            **(provenance or {}),
        },
    )
    return store.write_dataset(Path(out), manifest, splits)
