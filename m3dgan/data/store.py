"""The on-disk format of a paired data set, shared by every builder, reader and the trainer.

A data set is a folder::

    <root>/manifest.json        name, shapes, class and domain names, split sizes, sha256 per file
    <root>/<split>.safetensors  one file per split ("train", "test")

Each split file holds four tensors of equal length N:

- ``source`` uint8 [N, Cs, H, W]: the input S of the translation;
- ``target`` uint8 [N, Ct, H, W]: the paired ground truth T (also the training reference R);
- ``label``  int64 [N]: content class (digit value, emoji index), -1 where there is none;
- ``domain`` int64 [N]: domain/style index (e.g. emoji vendor), -1 where there is none.

uint8 keeps data sets small and makes loading a copy, not a decode: the trainer converts a batch
to float in [-1, 1] on the fly (:func:`to_float`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from m3dgan.errors import DataError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
SPLIT_KEYS = ("source", "target", "label", "domain")


@dataclass
class Manifest:
    name: str
    image_size: int
    source_channels: int
    target_channels: int
    splits: dict[str, int] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    provenance: dict = field(default_factory=dict)  # where the material came from, licences
    format_version: int = FORMAT_VERSION


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _check_split(split: str, tensors: dict[str, torch.Tensor]) -> None:
    missing = [k for k in SPLIT_KEYS if k not in tensors]
    if missing:
        raise DataError(f"split {split!r} lacks tensors {missing}")
    n = len(tensors["source"])
    for key in SPLIT_KEYS:
        if len(tensors[key]) != n:
            raise DataError(f"split {split!r}: {key} has {len(tensors[key])} rows, source has {n}")
    for key in ("source", "target"):
        t = tensors[key]
        if t.dtype != torch.uint8 or t.ndim != 4:
            raise DataError(
                f"split {split!r}: {key} must be uint8 [N, C, H, W], got {t.dtype} {tuple(t.shape)}"
            )


def write_dataset(
    root: Path, manifest: Manifest, splits: dict[str, dict[str, torch.Tensor]]
) -> Path:
    """Write split files and the manifest; files go to a temp name first, then are renamed."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for split, tensors in splits.items():
        _check_split(split, tensors)
        fname = f"{split}.safetensors"
        tmp = root / (fname + ".tmp")
        save_file({k: tensors[k].contiguous() for k in SPLIT_KEYS}, str(tmp))
        tmp.replace(root / fname)
        manifest.splits[split] = len(tensors["source"])
        manifest.files[fname] = sha256_file(root / fname)
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(asdict(manifest), indent=2))
    tmp.replace(root / MANIFEST)
    return root


def read_manifest(root: Path) -> Manifest:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise DataError(
            f"{root} is not a built data set (no {MANIFEST}); build it with `m3dgan data build`"
        )
    try:
        raw = json.loads(path.read_text())
        return Manifest(**raw)
    except (json.JSONDecodeError, TypeError) as exc:
        raise DataError(f"{path}: unreadable manifest ({exc})") from exc


def verify(root: Path) -> Manifest:
    """Check every split file against the manifest's sha256; raise DataError naming the bad one."""
    manifest = read_manifest(root)
    for fname, digest in manifest.files.items():
        path = Path(root) / fname
        if not path.is_file():
            raise DataError(f"{path} is missing; rebuild the data set")
        if sha256_file(path) != digest:
            raise DataError(
                f"{path} does not match its checksum in the manifest; rebuild the data set"
            )
    return manifest


def load_split(root: Path, split: str) -> dict[str, torch.Tensor]:
    """Load one split as a dict of tensors (see module docstring)."""
    path = Path(root) / f"{split}.safetensors"
    if not path.is_file():
        raise DataError(f"{path} is missing (splits are {sorted(read_manifest(root).splits)})")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises several types for damaged files
        raise DataError(f"{path}: damaged data file ({exc}); rebuild the data set") from exc
    _check_split(split, tensors)
    return tensors


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1], the range the generator's tanh output lives in."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255]."""
    return images.detach().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)
