"""The on-disk format of a paired data set, shared by every builder, reader and the trainer.

A data set is a folder::

    <root>/manifest.json         name, kinds, shapes, class and domain names, mel settings,
                                 split sizes, sha256 per file
    <root>/<split>.safetensors   one file per split ("train", "test"): image and speech sides,
                                 labels
    <root>/<split>.texts.json    only when a side is text: the text side(s) of the split
    <root>/<tokenizer>           optional subword model named by ``manifest.tokenizer``
    <root>/<other files>         optional files a builder adds (e.g. ``audio/test/00000.flac``)

Each side of a pair (``source`` = the input S of the translation, ``target`` = the paired ground
truth T, also the training reference R) is an image, a text or speech, as ``manifest.source_kind``
and ``manifest.target_kind`` say ("image", "text" or "speech"). A split of N rows holds:

- ``source`` / ``target`` for an **image** side: uint8 [N, C, H, W] in ``<split>.safetensors``
  (C = ``manifest.source_channels`` / ``target_channels``, H = W = ``manifest.image_size``);
- ``source`` / ``target`` for a **text** side: N non-empty strings in ``<split>.texts.json``
  (the side's channel count is 0 in the manifest);
- ``source`` / ``target`` for a **speech** side: N normalised log-mel spectrograms of different
  lengths, stored ragged in ``<split>.safetensors`` as ``<side>_frames`` float16 [ΣT, n_mels]
  (every utterance's frames one after the other) and ``<side>_lengths`` int64 [N] (frames per
  utterance, each >= 1). The side's channel count is n_mels, and ``manifest.audio`` holds the
  mel settings (:meth:`m3dgan.audio.MelConfig.to_dict`) the frames were made with; it is ``{}``
  when no side is speech. :func:`load_split` returns the side as
  :class:`~m3dgan.data.frames.SpeechFrames`, which pads a drawn batch with the silence floor;
- ``references`` (optional, only with a text side): N non-empty lists of non-empty strings in
  ``<split>.texts.json``, every reference text of the row's item (for multi-reference BLEU);
- ``label``  int64 [N] in ``<split>.safetensors``: content class (digit value, emoji index),
  -1 where there is none;
- ``domain`` int64 [N] in ``<split>.safetensors``: domain/style index (e.g. emoji vendor), -1
  where there is none.

The texts file is a JSON object ``{"source": [...], "target": [...], "references": [[...], ...]}``
with only the keys the split has, written as UTF-8. ``manifest.tokenizer`` names a subword model
file inside the folder (e.g. ``spm.model``, a sentencepiece model); "" means text is modelled as
characters. Every file (split files, texts files, tokenizer, extra files, which may sit in
sub-folders) has its sha256 in ``manifest.files`` under its path relative to the folder (with
``/``), which :func:`verify` checks.

Images are uint8 so data sets stay small and loading is a copy, not a decode: the trainer converts
a batch to float in [-1, 1] on the fly (:func:`to_float`). Texts are kept as plain strings rather
than token ids so that one data set serves any vocabulary (characters or subwords) and stays
readable. Mels are float16 for the same reason as images are uint8. Format version 1 (images only,
no kind fields) is read as version 2 with image sides; version 2 folders written before speech
existed read unchanged (``audio`` defaults to ``{}``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from m3dgan.atomic import write_bytes, write_safetensors
from m3dgan.audio.config import MelConfig
from m3dgan.data.frames import SpeechFrames
from m3dgan.errors import ConfigError, DataError

MANIFEST = "manifest.json"
FORMAT_VERSION = 2
IMAGE, TEXT, SPEECH = "image", "text", "speech"
KINDS = (IMAGE, TEXT, SPEECH)
SIDES = ("source", "target")
SPLIT_KEYS = ("source", "target", "label", "domain")  # the keys every split has
REFERENCES = "references"
TEXTS_SUFFIX = ".texts.json"
FRAMES_SUFFIX, LENGTHS_SUFFIX = "_frames", "_lengths"  # speech side keys in the split file

# One split: tensors for image sides and labels, list[str] for text sides, SpeechFrames (or a list
# of [T, n_mels] tensors when writing) for speech sides, list[list[str]] refs.
SplitData = dict[str, Any]


@dataclass
class Manifest:
    name: str
    image_size: int  # size of the image side(s); 0 when no side is an image
    source_channels: int  # 0 for a text side, n_mels for a speech side
    target_channels: int  # 0 for a text side, n_mels for a speech side
    splits: dict[str, int] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    provenance: dict = field(default_factory=dict)  # where the material came from, licences
    format_version: int = FORMAT_VERSION
    source_kind: str = IMAGE  # "image" | "text" | "speech"
    target_kind: str = IMAGE  # "image" | "text" | "speech"
    tokenizer: str = ""  # subword model file in the folder; "" = text modelled as characters
    audio: dict = field(default_factory=dict)  # MelConfig.to_dict() with a speech side, else {}

    def kind(self, side: str) -> str:
        """ "image", "text" or "speech" for ``side`` ("source" or "target")."""
        return self.source_kind if side == "source" else self.target_kind

    def text_sides(self) -> tuple[str, ...]:
        return tuple(side for side in SIDES if self.kind(side) == TEXT)

    def image_sides(self) -> tuple[str, ...]:
        return tuple(side for side in SIDES if self.kind(side) == IMAGE)

    def speech_sides(self) -> tuple[str, ...]:
        return tuple(side for side in SIDES if self.kind(side) == SPEECH)


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
        "audio": lambda v: isinstance(v, dict),
    }
    for name, ok in checks.items():
        if hasattr(manifest, name) and not ok(getattr(manifest, name)):
            raise DataError(
                f"{where}: field {name!r} has a wrong type: {getattr(manifest, name)!r}"
            )


def is_safe_relative(name: str) -> bool:
    """True for a relative ``/``-separated path that stays inside the data set folder."""
    parts = name.split("/")
    return (
        bool(name)
        and "\\" not in name
        and not name.startswith("/")
        and all(p not in ("", ".", "..") for p in parts)
        and not Path(name).is_absolute()
    )


def _check_audio(manifest: Manifest, side: str, channels: int, where: str) -> None:
    """A speech side needs mel settings whose bin count is the side's channel count."""
    if not manifest.audio:
        raise DataError(f"{where}: {side} is speech, so audio must hold its mel settings")
    counts = ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels")
    for key, value in manifest.audio.items():
        whole = key in counts
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (whole and not isinstance(value, int)):
            kind = "a whole number" if whole else "a number"
            raise DataError(
                f"{where}: audio values must be numbers: {key} must be {kind}, got {value!r}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise DataError(f"{where}: audio values must be numbers: {key} is {value}")
        if not -(1 << 31) < value < 1 << 31 or (whole and value <= 0):
            shown = value if abs(value) < 1e12 else "a huge number"
            raise DataError(f"{where}: audio {key}={shown} is out of range")
    try:
        cfg = MelConfig.from_dict(manifest.audio)
    except (ConfigError, TypeError, ValueError, OverflowError) as exc:
        raise DataError(f"{where}: audio holds invalid mel settings ({exc})") from exc
    if cfg.n_mels != channels:
        raise DataError(
            f"{where}: {side} is speech with {side}_channels={channels}, but audio says "
            f"n_mels={cfg.n_mels}; they must be equal"
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
        if kind == SPEECH:
            _check_audio(manifest, side, channels, where)
    if manifest.audio and not manifest.speech_sides():
        raise DataError(f"{where}: audio (mel settings) set but no side is speech")
    for fname in manifest.files:
        if not is_safe_relative(fname):
            raise DataError(f"{where}: file name {fname!r} must be a relative path in the folder")
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


def _check_speech(split: str, side: str, value: Any, n: int, n_mels: int) -> None:
    if not isinstance(value, SpeechFrames):
        raise DataError(
            f"split {split!r}: {side} is speech in the manifest ({side}_kind='speech') but "
            f"{type(value).__name__} was given; pass SpeechFrames or a list of [T, n_mels] tensors"
        )
    if len(value) != n:
        raise DataError(f"split {split!r}: {side} has {len(value)} utterances, label has {n}")
    if value.n_mels != n_mels:
        raise DataError(
            f"split {split!r}: {side} has {value.n_mels} mel bins, the manifest says {n_mels}"
        )


def _as_frames(split: str, side: str, value: Any, n_mels: int) -> Any:
    """A list of [T, n_mels] tensors → SpeechFrames (other values are checked later)."""
    if isinstance(value, (list, tuple)) and all(isinstance(v, torch.Tensor) for v in value):
        try:
            return SpeechFrames.from_list(value, n_mels)
        except DataError as exc:
            raise DataError(f"split {split!r}: {side}: {exc}") from exc
    return value


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
        if manifest.kind(side) == SPEECH:
            _check_speech(split, side, value, n, getattr(manifest, f"{side}_channels"))
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
    """Write atomically (``m3dgan.atomic``): a crash or a full disk never leaves a half-written
    file; OutputError names the path."""
    write_bytes(path, payload)


def write_dataset(
    root: Path,
    manifest: Manifest,
    splits: dict[str, SplitData],
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Write split files, texts files, ``extra_files`` (e.g. the tokenizer model) and the
    manifest (last); every file goes to a temp name first, then is renamed
    (``m3dgan.atomic``), so a failure (a full disk: OutputError) leaves no half-written file."""
    root = Path(root)
    check_manifest(manifest)
    splits = {split: dict(data) for split, data in splits.items()}
    for split, data in splits.items():
        for side in manifest.speech_sides():
            if side in data:
                n_mels = getattr(manifest, f"{side}_channels")
                data[side] = _as_frames(split, side, data[side], n_mels)
        _check_split(split, data, manifest)
    for fname in extra_files or {}:
        if not is_safe_relative(fname) or fname == MANIFEST:
            raise DataError(
                f"extra file name {fname!r} must be a relative path inside the folder "
                "(e.g. 'spm.model' or 'audio/test/00000.flac')"
            )
    root.mkdir(parents=True, exist_ok=True)
    for split, data in splits.items():
        fname = f"{split}.safetensors"
        tensors = {k: data[k].contiguous() for k in [*manifest.image_sides(), "label", "domain"]}
        for side in manifest.speech_sides():
            tensors[side + FRAMES_SUFFIX] = data[side].frames
            tensors[side + LENGTHS_SUFFIX] = data[side].lengths
        write_safetensors(root / fname, tensors)
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
        (root / fname).parent.mkdir(parents=True, exist_ok=True)
        _write_bytes(root / fname, payload)
        manifest.files[fname] = sha256_file(root / fname)
    if manifest.tokenizer and not (root / manifest.tokenizer).is_file():
        raise DataError(
            f"manifest names tokenizer {manifest.tokenizer!r} but {root / manifest.tokenizer} "
            "was not written; pass it in extra_files"
        )
    _write_bytes(root / MANIFEST, json.dumps(asdict(manifest), indent=2).encode("utf-8"))
    return root


def clear_dataset_files(root: Path) -> None:
    """Remove a previous manifest and split files so a rebuild never mixes old and new files."""
    if not root.is_dir():
        return
    listed = []  # every file the previous manifest names (texts files, tokenizer model, audio)
    with contextlib.suppress(DataError):
        listed = [root / f for f in read_manifest(root).files if is_safe_relative(f)]
    for path in [root / MANIFEST, *root.glob("*.safetensors"), *root.glob("*.tmp"), *listed]:
        path.unlink(missing_ok=True)
    for folder in sorted({p.parent for p in listed}, key=lambda p: -len(p.parts)):
        while folder != root and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # sub-folders the listed files leave empty (audio/test/, audio/)
            folder = folder.parent


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


def _load_frames(path: Path, data: SplitData, side: str, n_mels: int) -> SpeechFrames:
    """Pop a speech side's two tensors from a loaded split file and check they agree."""
    fkey, lkey = side + FRAMES_SUFFIX, side + LENGTHS_SUFFIX
    missing = [k for k in (fkey, lkey) if k not in data]
    if missing:
        raise DataError(f"{path}: damaged data file (no {missing}); rebuild the data set")
    frames, lengths = data.pop(fkey), data.pop(lkey)
    if frames.dtype != torch.float16 or lengths.dtype != torch.int64:
        raise DataError(
            f"{path}: damaged data file ({fkey} must be float16 and {lkey} int64, got "
            f"{frames.dtype} and {lengths.dtype}); rebuild the data set"
        )
    if frames.ndim == 2 and frames.shape[1] != n_mels:
        raise DataError(
            f"{path}: {fkey} has {frames.shape[1]} mel bins but the manifest says {n_mels}; "
            "rebuild the data set"
        )
    try:
        return SpeechFrames(frames, lengths, where=f"{path}: {side}")
    except DataError as exc:
        raise DataError(f"{exc}; rebuild the data set") from exc


def load_split(root: Path, split: str) -> SplitData:
    """Load one split: tensors for image sides, label and domain, ``SpeechFrames`` for speech
    sides, ``list[str]`` for text sides and ``references`` when the split has them (see the
    module docstring)."""
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
    for side in manifest.speech_sides():
        data[side] = _load_frames(path, data, side, getattr(manifest, f"{side}_channels"))
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
