"""Checkpoints that cannot run code and cannot be half-written.

A checkpoint is two files in ``RUN_DIR/checkpoints/``:

- ``step_00001000.safetensors``: every tensor — model weights (``model.*``), optimizer moments
  (``optim.<name>.<param index>.<key>``) and RNG states (``rng.<name>``);
- ``step_00001000.json``: the sidecar — config, step, optimizer hyper-parameters, the sha256 of
  the tensor file, and anything else a run needs to resume.

Both are written to a temporary name and renamed, the sidecar last: a checkpoint exists once
its sidecar does, and a checkpoint whose tensors do not match the sidecar's checksum is treated
as damaged and skipped in favour of the previous one. Loading uses safetensors and JSON only;
nothing is ever unpickled, so a malicious file cannot execute code: pickles and ``torch.save``
archives (``.pt``, ``.pth``, ``.ckpt``, or one renamed to ``.safetensors``) are refused with a
:class:`~m3dgan.errors.CheckpointError` before anything parses them.
"""

from __future__ import annotations

import json
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from m3dgan.data.store import sha256_file
from m3dgan.errors import CheckpointError

FORMAT = "m3dgan-checkpoint"
VERSION = 1
_NAME = re.compile(r"^step_(\d+)\.json$")
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+, torch.save zip archives
_SUFFIXES = (".json", ".safetensors")
_RESERVED = ("format", "version", "step", "sha256", "optimizers")  # sidecar keys meta cannot set


@dataclass
class Checkpoint:
    step: int
    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    path: Path

    def model_state(self) -> dict[str, torch.Tensor]:
        return {k[len("model.") :]: v for k, v in self.tensors.items() if k.startswith("model.")}

    def rng_state(self, name: str) -> torch.Tensor | None:
        return self.tensors.get(f"rng.{name}")

    def optimizer_state(self, name: str) -> dict[str, Any]:
        """Rebuild ``optimizer.state_dict()`` from flat tensors and the sidecar's metadata.

        The moments come back contiguous; prefer :meth:`restore_optimizer`, which also gives
        them the memory layout of their parameters (fused Adam needs that, see there)."""
        optimizers = self.meta.get("optimizers")
        if not isinstance(optimizers, dict) or name not in optimizers:
            raise CheckpointError(f"{self.path}: no state for optimizer {name!r}")
        info = optimizers[name]
        prefix = f"optim.{name}."
        state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in info["scalars"].items()}
        for key, value in self.tensors.items():
            if key.startswith(prefix):
                index, field = key[len(prefix) :].split(".", 1)
                state.setdefault(int(index), {})[field] = value
        return {"state": state, "param_groups": info["param_groups"]}

    def restore_optimizer(self, name: str, optimizer: torch.optim.Optimizer) -> None:
        """Load optimizer ``name`` into ``optimizer``, each state tensor in its parameter's layout.

        Tensors are stored contiguous (safetensors needs that) and ``load_state_dict`` keeps
        that layout, but a fused Adam step walks a parameter and its moments as flat memory:
        with channels_last parameters and contiguous moments it silently mixes up elements,
        so a resumed run would diverge. Copying each moment into ``empty_like(param)`` fixes it.
        """
        optimizer.load_state_dict(self.optimizer_state(name))
        for group in optimizer.param_groups:
            for param in group["params"]:
                entry = optimizer.state.get(param, {})
                for key, value in entry.items():
                    if (
                        isinstance(value, torch.Tensor)
                        and value.shape == param.shape
                        and value.stride() != param.stride()
                    ):
                        entry[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def _flatten_optimizer(name: str, opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    sd = opt.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in sd["state"].items():
        for field, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{name}.{index}.{field}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[field] = value
    meta[name] = {"param_groups": sd["param_groups"], "scalars": scalars}


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: torch.nn.Module,
    *,
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    rng: dict[str, torch.Tensor] | None = None,
    meta: dict[str, Any] | None = None,
    keep: int = 3,
) -> Path:
    """Atomically write checkpoint ``step`` and delete all but the newest ``keep``."""
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optim_meta: dict[str, Any] = {}
    for name, opt in (optimizers or {}).items():
        _flatten_optimizer(name, opt, tensors, optim_meta)
    for name, state in (rng or {}).items():
        tensors[f"rng.{name}"] = state.detach().cpu().contiguous()
    stem = f"step_{step:08d}"
    tensor_path = folder / f"{stem}.safetensors"
    tmp = folder / f".{stem}.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(tensor_path)
    sidecar = {
        **{k: v for k, v in (meta or {}).items() if k not in _RESERVED},
        "format": FORMAT,
        "version": VERSION,
        "step": step,
        "sha256": sha256_file(tensor_path),
        "optimizers": optim_meta,
    }
    tmp = folder / f".{stem}.json.tmp"
    tmp.write_text(json.dumps(sidecar, indent=1))
    tmp.replace(folder / f"{stem}.json")
    prune(folder, keep)
    return tensor_path


def prune(folder: Path, keep: int) -> None:
    """Keep the newest ``keep`` checkpoints (all if ``keep`` <= 0); also remove tensor files that
    lost their sidecar (a crash between the two renames) once a newer checkpoint exists."""
    found = list_checkpoints(folder)
    for old in found[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
        old.with_suffix(".safetensors").unlink(missing_ok=True)
    if not found:
        return
    newest = _step_of(found[-1])
    for orphan in folder.glob("step_*.safetensors"):
        step = _step_of(orphan)
        if step is not None and step < newest and not orphan.with_suffix(".json").exists():
            orphan.unlink(missing_ok=True)


def _step_of(path: Path) -> int | None:
    m = re.match(r"^step_(\d+)\.", path.name)
    return int(m.group(1)) if m else None


def list_checkpoints(folder: Path) -> list[Path]:
    """Sidecars in ``folder`` sorted by step, oldest first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    """A safetensors file starts with a little-endian u64 header length, then a JSON object."""
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 2 <= header_len <= size - 8


def refuse_unsafe(path: Path) -> None:
    """Refuse pickles and torch.save archives before anything else looks at the file.

    A safetensors header length can itself start with the byte 0x80 (any header of 128, 384,
    640, ... bytes), so the pickle test applies only to files that are not safetensors-shaped.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(16)
    if _looks_like_safetensors(head, path.stat().st_size):
        return
    if head[:1] == _PICKLE_MAGIC[0] or head[:4] == _PICKLE_MAGIC[1]:
        raise CheckpointError(
            f"{path}: this is a pickle / torch.save file; m3dgan loads only safetensors checkpoints "
            "and never unpickles (a pickle can run arbitrary code)"
        )


def load_checkpoint(path: Path) -> Checkpoint:
    """Load one checkpoint from its sidecar (``.json``) or tensor (``.safetensors``) path."""
    path = Path(path)
    if path.is_file():
        refuse_unsafe(path)
    if path.suffix not in _SUFFIXES:
        raise CheckpointError(
            f"{path}: not an m3dgan checkpoint; expected a step_*.json sidecar or its "
            ".safetensors file (.pt / .pth / .ckpt files are pickles and are never loaded)"
        )
    sidecar = path.with_suffix(".json")
    tensor_path = path.with_suffix(".safetensors")
    for p in (sidecar, tensor_path):
        if p.is_file():
            refuse_unsafe(p)
    if not sidecar.is_file() or not tensor_path.is_file():
        raise CheckpointError(
            f"{path}: incomplete checkpoint (needs {sidecar.name} and {tensor_path.name})"
        )
    try:
        meta = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{sidecar}: damaged sidecar ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{sidecar}: not an m3dgan checkpoint sidecar")
    if not isinstance(meta.get("step"), int) or not isinstance(meta.get("optimizers", {}), dict):
        raise CheckpointError(f"{sidecar}: damaged sidecar (bad 'step' or 'optimizers')")
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"{sidecar}: checkpoint format version {meta.get('version')!r}; this m3dgan reads {VERSION}"
        )
    if sha256_file(tensor_path) != meta.get("sha256"):
        raise CheckpointError(f"{tensor_path}: checksum mismatch (truncated or damaged file)")
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:  # malformed headers
        raise CheckpointError(f"{tensor_path}: unreadable safetensors file ({exc})") from exc
    return Checkpoint(int(meta["step"]), meta, tensors, tensor_path)


def resolve(path: Path) -> Path:
    """A run folder, its checkpoints folder, or one checkpoint file → a checkpoint path."""
    path = Path(path)
    if path.is_file():
        return path
    folder = checkpoint_dir(path) if checkpoint_dir(path).is_dir() else path
    found = list_checkpoints(folder)
    if not found:
        raise CheckpointError(
            f"{path}: no checkpoints found (expected {checkpoint_dir(path)}/step_*.json)"
        )
    return found[-1]


def load_latest(run_or_path: Path) -> Checkpoint:
    """Newest good checkpoint; damaged ones are reported and skipped for the previous one."""
    path = Path(run_or_path)
    if path.is_file():
        return load_checkpoint(path)
    folder = checkpoint_dir(path) if checkpoint_dir(path).is_dir() else path
    found = list_checkpoints(folder)
    if not found:
        raise CheckpointError(
            f"{path}: no checkpoints found (expected {checkpoint_dir(path)}/step_*.json)"
        )
    errors = []
    for candidate in reversed(found):
        try:
            return load_checkpoint(candidate)
        except CheckpointError as exc:
            errors.append(str(exc))
            warnings.warn(f"skipping damaged checkpoint: {exc}", stacklevel=2)
    raise CheckpointError("no usable checkpoint: " + "; ".join(errors))
