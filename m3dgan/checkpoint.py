"""Checkpoints that cannot run code and cannot be half-written.

A checkpoint is two files in ``RUN_DIR/checkpoints/``:

- ``step_00001000.safetensors``: every tensor — model weights (``model.*``), optimizer moments
  (``optim.<name>.<param index>.<key>``) and RNG states (``rng.<name>``);
- ``step_00001000.json``: the sidecar — config, step, optimizer hyper-parameters, the sha256 of
  the tensor file, and anything else a run needs to resume.

Both are written to a temporary name and renamed, the sidecar last: a checkpoint exists once
its sidecar does, and a checkpoint whose tensors do not match the sidecar's checksum is treated
as damaged and skipped in favour of the previous one. Loading uses safetensors and JSON only;
nothing is ever unpickled, so a malicious file cannot execute code.
"""

from __future__ import annotations

import json
import re
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
        """Rebuild ``optimizer.state_dict()`` from flat tensors and the sidecar's metadata."""
        info = self.meta["optimizers"][name]
        prefix = f"optim.{name}."
        state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in info["scalars"].items()}
        for key, value in self.tensors.items():
            if key.startswith(prefix):
                index, field = key[len(prefix) :].split(".", 1)
                state.setdefault(int(index), {})[field] = value
        return {"state": state, "param_groups": info["param_groups"]}


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
        "format": FORMAT,
        "version": VERSION,
        "step": step,
        "sha256": sha256_file(tensor_path),
        "optimizers": optim_meta,
        **(meta or {}),
    }
    tmp = folder / f".{stem}.json.tmp"
    tmp.write_text(json.dumps(sidecar, indent=1))
    tmp.replace(folder / f"{stem}.json")
    prune(folder, keep)
    return tensor_path


def prune(folder: Path, keep: int) -> None:
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
        old.with_suffix(".safetensors").unlink(missing_ok=True)


def list_checkpoints(folder: Path) -> list[Path]:
    """Sidecars in ``folder`` sorted by step, oldest first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def refuse_unsafe(path: Path) -> None:
    """Refuse pickles and torch.save archives before anything else looks at the file."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head[:1] == _PICKLE_MAGIC[0] or head == _PICKLE_MAGIC[1]:
        raise CheckpointError(
            f"{path}: this is a pickle / torch.save file; m3dgan loads only safetensors checkpoints "
            "and never unpickles (a pickle can run arbitrary code)"
        )


def load_checkpoint(path: Path) -> Checkpoint:
    """Load one checkpoint from its sidecar (``.json``) or tensor (``.safetensors``) path."""
    path = Path(path)
    sidecar = path.with_suffix(".json")
    tensor_path = path.with_suffix(".safetensors")
    for p in (path, tensor_path):
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
    if sha256_file(tensor_path) != meta.get("sha256"):
        raise CheckpointError(f"{tensor_path}: checksum mismatch (truncated or damaged file)")
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError, ValueError) as exc:
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
