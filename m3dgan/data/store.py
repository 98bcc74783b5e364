"""The on-disk format of a paired data set, shared by every builder, reader and the trainer.

A data set is a folder::

    <root>/manifest.json         name, kinds, shapes, class and domain names, split sizes,
                                 sha256 per file
    <root>/<split>.safetensors   one file per split ("train", "test"): image sides + labels
    <root>/<split>.texts.json    only when a side is text: the text side(s) of the split
    <root>/<tokenizer>           optional subword model named by ``manifest.tokenizer``

Each side of a pair (``source`` = the input S of the translation, ``target`` = the paired ground
truth T, also the training reference R) is either an image or a text, as ``manifest.source_kind``
and ``manifest.target_kind`` say ("image" or "text"). A split of N rows holds:

- ``source`` / ``target`` for an **image** side: uint8 [N, C, H, W] in ``<split>.safetensors``
  (C = ``manifest.source_channels`` / ``target_channels``, H = W = ``manifest.image_size``);
- ``source`` / ``target`` for a **text** side: N non-empty strings in ``<split>.texts.json``
  (the side's channel count is 0 in the manifest);
- ``references`` (optional, only with a text side): N non-empty lists of non-empty strings in
  ``<split>.texts.json``, every reference text of the row's item (for multi-reference BLEU);
- ``label``  int64 [N] in ``<split>.safetensors``: content class (digit value, emoji index),
  -1 where there is none;
- ``domain`` int64 [N] in ``<split>.safetensors``: domain/style index (e.g. emoji vendor), -1
  where there is none.

The texts file is a JSON object ``{"source": [...], "target": [...], "references": [[...], ...]}``
with only the keys the split has, written as UTF-8. ``manifest.tokenizer`` names a subword model
file inside the folder (e.g. ``spm.model``, a sentencepiece model); "" means text is modelled as
characters. Every file (split files, texts files, tokenizer) has its sha256 in ``manifest.files``,
which :func:`verify` checks.

Images are uint8 so data sets stay small and loading is a copy, not a decode: the trainer converts
a batch to float in [-1, 1] on the fly (:func:`to_float`). Texts are kept as plain strings rather
than token ids so that one data set serves any vocabulary (characters or subwords) and stays
readable. Format version 1 (images only, no kind fields) is read as version 2 with image sides.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from m3dgan.errors import DataError

MANIFEST = "manifest.json"
FORMAT_VERSION = 2
IMAGE, TEXT = "image", "text"
KINDS = (IMAGE, TEXT)
SIDES = ("source", "target")
SPLIT_KEYS = ("source", "target", "label", "domain")  # the keys every split has
REFERENCES = "references"
TEXTS_SUFFIX = ".texts.json"

# One split: tensors for image sides and labels, list[str] for text sides, list[list[str]] refs.
SplitData = dict[str, Any]


@dataclass
class Manifest:
    name: str
    image_size: int  # size of the image side(s); 0 when no side is an image
    source_channels: int  # 0 for a text side
    target_channels: int  # 0 for a text side
    splits: dict[str, int] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    provenance: dict = field(default_factory=dict)  # where the material came from, licences
    format_version: int = FORMAT_VERSION
    source_kind: str = IMAGE  # "image" | "text"
    target_kind: str = IMAGE  # "image" | "text"
    tokenizer: str = ""  # subword model file in the folder; "" = text modelled as characters

    def kind(self, side: str) -> str:
        """ "image" or "text" for ``side`` ("source" or "target")."""
        return self.source_kind if side == "source" else self.target_kind

    def text_sides(self) -> tuple[str, ...]:
        return tuple(side for side in SIDES if self.kind(side) == TEXT)

    def image_sides(self) -> tuple[str, ...]:
        return tuple(side for side in SIDES if self.kind(side) == IMAGE)


def texts_file(split: str) -> str:
    """File name of a split's texts (only written when a side is text)."""
    return f"{split}{TEXTS_SUFFIX}"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _check_field_types(manifest: Manifest, where: str) -> None:
    """Every field of the type the dataclass declares (JSON can hold anything)."""

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def str_list(v: Any) -> bool:
        return isinstance(v, list) and all(isinstance(x, str) for x in v)

    def str_dict(v: Any, values) -> bool:
        return isinstance(v, dict) and all(values(x) for x in v.values())

    checks = {
        "name": lambda v: isinstance(v, str),
        "image_size": is_int,
        "source_channels": is_int,
        "target_channels": is_int,
        "splits": lambda v: str_dict(v, lambda n: is_int(n) and n >= 0),
        "classes": str_list,
        "domains": str_list,
        "files": lambda v: str_dict(v, lambda d: isinstance(d, str)),
        "provenance": lambda v: isinstance(v, dict),
        "format_version": is_int,
        "source_kind": lambda v: isinstance(v, str),
        "target_kind": lambda v: isinstance(v, str),
        "tokenizer": lambda v: isinstance(v, str),
    }
    for name, ok in checks.items():
        if hasattr(manifest, name) and not ok(getattr(manifest, name)):
            raise DataError(
                f"{where}: field {name!r} has a wrong type: {getattr(manifest, name)!r}"
            )


def check_manifest(manifest: Manifest, where: str = "manifest") -> None:
    """Reject kinds and channel counts that contradict each other (DataError naming the field)."""
    _check_field_types(manifest, where)
    for side in SIDES:
        kind = manifest.kind(side)
        if kind not in KINDS:
            raise DataError(f"{where}: {side}_kind must be one of {list(KINDS)}, got {kind!r}")
        channels = getattr(manifest, f"{side}_channels")
        if kind == TEXT and channels != 0:
            raise DataError(
                f"{where}: {side} is text, so {side}_channels must be 0, not {channels}"
            )
        if kind == IMAGE and channels < 1:
            raise DataError(f"{where}: {side} is an image, so {side}_channels must be >= 1")
    if manifest.image_sides() and manifest.image_size < 1:
        raise DataError(f"{where}: image_size must be positive when a side is an image")
    if not manifest.image_sides() and manifest.image_size != 0:
        raise DataError(f"{where}: image_size must be 0 when no side is an image")
    if manifest.tokenizer and not manifest.text_sides():
        raise DataError(f"{where}: tokenizer {manifest.tokenizer!r} set but no side is text")
    if manifest.format_version > FORMAT_VERSION:
        raise DataError(
            f"{where}: format version {manifest.format_version} is newer than this m3dgan reads "
            f"({FORMAT_VERSION}); upgrade m3dgan"
        )


def _check_texts(split: str, key: str, texts: Any, n: int) -> None:
    if not isinstance(texts, list) or len(texts) != n:
        got = f"{len(texts)} rows" if isinstance(texts, list) else type(texts).__name__
        raise DataError(f"split {split!r}: {key} must be a list of {n} strings, got {got}")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"split {split!r}: {key}[{i}] must be a non-empty string, got {text!r}")


def _check_references(split: str, refs: Any, n: int) -> None:
    if not isinstance(refs, list) or len(refs) != n:
        got = f"{len(refs)} rows" if isinstance(refs, list) else type(refs).__name__
        raise DataError(f"split {split!r}: references must be a list of {n} lists, got {got}")
    for i, row in enumerate(refs):
        if not isinstance(row, list) or not row:
            raise DataError(f"split {split!r}: references[{i}] must be a non-empty list of strings")
        for text in row:
            if not isinstance(text, str) or not text.strip():
                raise DataError(
                    f"split {split!r}: references[{i}] holds {text!r}, not a non-empty string"
                )


def _check_split(split: str, data: SplitData, manifest: Manifest) -> None:
    """Every key present with N rows, of the type its kind asks for."""
    missing = [k for k in SPLIT_KEYS if k not in data]
    if missing:
        raise DataError(f"split {split!r} lacks {missing}")
    label = data["label"]
    if not isinstance(label, torch.Tensor) or label.ndim != 1:
        raise DataError(f"split {split!r}: label must be a 1-d tensor")
    n = len(label)
    for key in ("label", "domain"):
        t = data[key]
        if not isinstance(t, torch.Tensor) or t.ndim != 1 or len(t) != n:
            raise DataError(f"split {split!r}: {key} must be a 1-d tensor of {n} rows")
    for side in SIDES:
        value = data[side]
        if manifest.kind(side) == TEXT:
            if isinstance(value, torch.Tensor):
                raise DataError(
                    f"split {split!r}: {side} is text in the manifest ({side}_kind='text') "
                    "but a tensor was given; pass a list of strings"
                )
            _check_texts(split, side, value, n)
            continue
        if not isinstance(value, torch.Tensor):
            raise DataError(
                f"split {split!r}: {side} is an image in the manifest ({side}_kind='image') but "
                f"{type(value).__name__} was given; pass a uint8 [N, C, H, W] tensor"
            )
        if value.dtype != torch.uint8 or value.ndim != 4:
            raise DataError(
                f"split {split!r}: {side} must be uint8 [N, C, H, W], got {value.dtype} "
                f"{tuple(value.shape)}"
            )
        if len(value) != n:
            raise DataError(f"split {split!r}: {side} has {len(value)} rows, label has {n}")
    if REFERENCES in data:
        if not manifest.text_sides():
            raise DataError(f"split {split!r}: references need a text side in the manifest")
        _check_references(split, data[REFERENCES], n)


def _write_bytes(path: Path, payload: bytes) -> None:
    """Write to a temp name, then rename, so a crash never leaves a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(payload)
    tmp.replace(path)


def write_dataset(
    root: Path,
    manifest: Manifest,
    splits: dict[str, SplitData],
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Write split files, texts files, ``extra_files`` (e.g. the tokenizer model) and the
    manifest; every file goes to a temp name first, then is renamed."""
    root = Path(root)
    check_manifest(manifest)
    for split, data in splits.items():
        _check_split(split, data, manifest)
    for fname in extra_files or {}:
        if Path(fname).name != fname or fname == MANIFEST:
            raise DataError(f"extra file name {fname!r} must be a plain file name in the folder")
    root.mkdir(parents=True, exist_ok=True)
    for split, data in splits.items():
        fname = f"{split}.safetensors"
        tensor_keys = [*manifest.image_sides(), "label", "domain"]
        tmp = root / (fname + ".tmp")
        save_file({k: data[k].contiguous() for k in tensor_keys}, str(tmp))
        tmp.replace(root / fname)
        manifest.splits[split] = len(data["label"])
        manifest.files[fname] = sha256_file(root / fname)
        tname = texts_file(split)
        text_keys = [*manifest.text_sides(), *([REFERENCES] if REFERENCES in data else [])]
        if text_keys:
            payload = json.dumps({k: data[k] for k in text_keys}, ensure_ascii=False)
            _write_bytes(root / tname, payload.encode("utf-8"))
            manifest.files[tname] = sha256_file(root / tname)
        else:  # a rewrite without texts must not leave a stale texts file behind
            (root / tname).unlink(missing_ok=True)
            manifest.files.pop(tname, None)
    for fname, payload in (extra_files or {}).items():
        _write_bytes(root / fname, payload)
        manifest.files[fname] = sha256_file(root / fname)
    if manifest.tokenizer and not (root / manifest.tokenizer).is_file():
        raise DataError(
            f"manifest names tokenizer {manifest.tokenizer!r} but {root / manifest.tokenizer} "
            "was not written; pass it in extra_files"
        )
    _write_bytes(root / MANIFEST, json.dumps(asdict(manifest), indent=2).encode("utf-8"))
    return root


def read_manifest(root: Path) -> Manifest:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise DataError(
            f"{root} is not a built data set (no {MANIFEST}); build it with `m3dgan data build`"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        manifest = Manifest(**raw)
    except (OSError, json.JSONDecodeError, TypeError, UnicodeDecodeError, RecursionError) as exc:
        raise DataError(f"{path}: unreadable manifest ({exc})") from exc
    check_manifest(manifest, str(path))
    return manifest


def verify(root: Path) -> Manifest:
    """Check every file against the manifest's sha256; raise DataError naming the bad one."""
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


def _load_texts(path: Path, keys: list[str]) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path} is missing; rebuild the data set")
    try:
        texts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: damaged texts file ({exc}); rebuild the data set") from exc
    if not isinstance(texts, dict):
        raise DataError(
            f"{path}: damaged texts file (expected a JSON object); rebuild the data set"
        )
    missing = [k for k in keys if k not in texts]
    if missing:
        raise DataError(f"{path}: damaged texts file (no {missing}); rebuild the data set")
    return {k: v for k, v in texts.items() if k in (*keys, REFERENCES)}


def load_split(root: Path, split: str) -> SplitData:
    """Load one split: tensors for image sides, label and domain, plus ``list[str]`` for text
    sides and ``references`` when the split has them (see module docstring)."""
    root = Path(root)
    manifest = read_manifest(root)
    path = root / f"{split}.safetensors"
    if not path.is_file():
        raise DataError(f"{path} is missing (splits are {sorted(manifest.splits)})")
    try:
        data: SplitData = dict(load_file(str(path)))
    except Exception as exc:  # safetensors raises several types for damaged files
        raise DataError(f"{path}: damaged data file ({exc}); rebuild the data set") from exc
    for side in manifest.image_sides():
        if side not in data:
            raise DataError(f"{path}: damaged data file (no {side} tensor); rebuild the data set")
    if manifest.text_sides():
        texts_path = root / texts_file(split)
        data.update(_load_texts(texts_path, list(manifest.text_sides())))
        try:
            _check_split(split, data, manifest)
        except DataError as exc:
            raise DataError(f"{texts_path}: {exc}; rebuild the data set") from exc
    else:
        _check_split(split, data, manifest)
    return data


def tokenizer_path(root: Path, manifest: Manifest | None = None) -> Path | None:
    """The data set's subword model file, or None when its text is modelled as characters."""
    manifest = manifest or read_manifest(root)
    if not manifest.tokenizer:
        return None
    path = Path(root) / manifest.tokenizer
    if not path.is_file():
        raise DataError(f"{path} (the data set's tokenizer) is missing; rebuild the data set")
    return path


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1], the range the generator's tanh output lives in."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255]."""
    return images.detach().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)
