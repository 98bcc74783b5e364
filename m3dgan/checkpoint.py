"""Checkpoints that cannot run code and cannot be half-written.

A checkpoint is two files in ``RUN_DIR/checkpoints/``:

- ``step_00001000.safetensors``: every tensor — model weights (``model.*``), optimizer moments
  (``optim.<name>.<param index>.<key>``), RNG states (``rng.<name>``) and, in runs with
  ``train.ema_decay`` > 0, the moving average of the generator side (``ema.<state-dict name>``,
  see ``m3dgan.core.ema``);
- ``step_00001000.json``: the sidecar — config, step, optimizer hyper-parameters, the sha256 of
  the tensor file, anything else a run needs to resume, and a sha256 of the sidecar's own content
  (``sidecar_sha256``, over its canonical JSON without that key).

Both are written to temporary names (``m3dgan.atomic``) and renamed once both are whole, the
sidecar last: a checkpoint exists once its sidecar does, a failed write (a full disk) leaves the
checkpoints on disk as they were and removes its temporary files, and a checkpoint whose
tensors or sidecar do not match their checksums is treated as damaged and skipped in favour of
the previous one. Loading uses safetensors and JSON only;
nothing is ever unpickled, so a malicious file cannot execute code: pickles and ``torch.save``
archives (``.pt``, ``.pth``, ``.ckpt``, or one renamed to ``.safetensors``) are refused with a
:class:`~m3dgan.errors.CheckpointError` before anything parses them.
"""

from __future__ import annotations

import hashlib
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

from m3dgan.atomic import atomic_paths
from m3dgan.core.ema import put_weights
from m3dgan.data.store import sha256_file
from m3dgan.errors import CheckpointError

FORMAT = "m3dgan-checkpoint"
VERSION = 1
_NAME = re.compile(r"^step_(\d+)\.json$")
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+, torch.save zip archives
_SUFFIXES = (".json", ".safetensors")
SIDECAR_CHECKSUM = "sidecar_sha256"
# sidecar keys that meta cannot set
_RESERVED = ("format", "version", "step", "sha256", "optimizers", SIDECAR_CHECKSUM)


@dataclass
class Checkpoint:
    step: int
    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    path: Path

    def model_state(self) -> dict[str, torch.Tensor]:
        return {k[len("model.") :]: v for k, v in self.tensors.items() if k.startswith("model.")}

    def ema_state(self) -> dict[str, torch.Tensor]:
        """The moving average of the generator side (state-dict names → tensors); ``{}`` when
        the run kept none (``train.ema_decay`` = 0)."""
        return {k[len("ema.") :]: v for k, v in self.tensors.items() if k.startswith("ema.")}

    def load_ema(self, model: torch.nn.Module) -> bool:
        """Put the moving average over ``model``'s generator side (after :meth:`load_model`;
        the discriminators keep their weights); False, and ``model`` untouched, when the
        checkpoint holds none. Average weights of another model are a :class:`CheckpointError`."""
        ema = self.ema_state()
        if not ema:
            return False
        try:
            put_weights(model, ema)
        except ValueError as exc:
            raise CheckpointError(f"{self.path}: {exc}") from exc
        return True

    def rng_state(self, name: str) -> torch.Tensor | None:
        return self.tensors.get(f"rng.{name}")

    def load_model(self, model: torch.nn.Module) -> None:
        """Load the weights into ``model``; a checkpoint of another model (other names or shapes,
        e.g. after editing a run's config.yaml) is a :class:`CheckpointError`, not a crash."""
        try:
            missing, unexpected = model.load_state_dict(self.model_state(), strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise CheckpointError(f"{self.path}: weights do not fit the model ({exc})") from exc
        if missing or unexpected:
            raise CheckpointError(
                f"{self.path}: weights do not match the model "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )

    def optimizer_state(self, name: str) -> dict[str, Any]:
        """Rebuild ``optimizer.state_dict()`` from flat tensors and the sidecar's metadata.

        The moments come back contiguous; prefer :meth:`restore_optimizer`, which also gives
        them the memory layout of their parameters (fused Adam needs that, see there)."""
        optimizers = self.meta.get("optimizers")
        if not isinstance(optimizers, dict) or name not in optimizers:
            raise CheckpointError(f"{self.path}: no state for optimizer {name!r}")
        info = optimizers[name]
        prefix = f"optim.{name}."
        try:
            state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in info["scalars"].items()}
            for key, value in self.tensors.items():
                if key.startswith(prefix):
                    index, field = key[len(prefix) :].split(".", 1)
                    state.setdefault(int(index), {})[field] = value
            return {"state": state, "param_groups": list(info["param_groups"])}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"{self.path}: damaged state of optimizer {name!r}") from exc

    def restore_optimizer(self, name: str, optimizer: torch.optim.Optimizer) -> None:
        """Load optimizer ``name`` into ``optimizer``, each state tensor in its parameter's layout.

        Tensors are stored contiguous (safetensors needs that) and ``load_state_dict`` keeps
        that layout, but a fused Adam step walks a parameter and its moments as flat memory:
        with channels_last parameters and contiguous moments it silently mixes up elements,
        so a resumed run would diverge. Copying each moment into ``empty_like(param)`` fixes it.
        """
        try:
            optimizer.load_state_dict(self.optimizer_state(name))
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(
                f"{self.path}: optimizer {name!r} state does not fit this run ({exc})"
            ) from exc
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
    ema: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Atomically write checkpoint ``step`` and delete all but the newest ``keep``. ``ema``:
    the generator side's moving average (names → tensors), saved as ``ema.<name>``.

    Raises:
        OutputError: a file could not be written (disk full, ...); nothing is left of the
            failed checkpoint and no older checkpoint is deleted or changed.
    """
    folder = checkpoint_dir(run_dir)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optim_meta: dict[str, Any] = {}
    for name, opt in (optimizers or {}).items():
        _flatten_optimizer(name, opt, tensors, optim_meta)
    for name, state in (rng or {}).items():
        tensors[f"rng.{name}"] = state.detach().cpu().contiguous()
    for name, tensor in (ema or {}).items():
        tensors[f"ema.{name}"] = tensor.detach().cpu().contiguous()
    stem = f"step_{step:08d}"
    tensor_path, sidecar_path = folder / f"{stem}.safetensors", folder / f"{stem}.json"
    # both files are written before either is renamed (tensors first, then the sidecar): a full
    # disk strikes while writing, so it leaves the checkpoints on disk as they were, also when
    # this step's checkpoint is written again (after a rollback)
    with atomic_paths(tensor_path, sidecar_path) as (tensor_tmp, sidecar_tmp):
        save_file(tensors, str(tensor_tmp))
        sidecar = {
            **{k: v for k, v in (meta or {}).items() if k not in _RESERVED},
            "format": FORMAT,
            "version": VERSION,
            "step": step,
            "sha256": sha256_file(tensor_tmp),
            "optimizers": optim_meta,
        }
        sidecar[SIDECAR_CHECKSUM] = sidecar_checksum(sidecar)
        sidecar_tmp.write_text(json.dumps(sidecar, indent=1))
    prune(folder, keep)  # only once this checkpoint is whole: a failed save deletes nothing
    return tensor_path


def sidecar_checksum(sidecar: dict[str, Any]) -> str:
    """sha256 of the sidecar's canonical JSON without its own checksum field.

    The tensor file's sha256 lives in the sidecar, so without this a bit flip in the sidecar
    (a step number, a learning rate, a layer width) would go unnoticed."""
    body = {k: v for k, v in sidecar.items() if k != SIDECAR_CHECKSUM}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def prune(folder: Path, keep: int) -> None:
    """Keep the newest ``keep`` checkpoints (all if ``keep`` <= 0); also remove tensor files that
    lost their sidecar (a crash between the two renames) once a newer checkpoint exists, and
    temporary files that a process killed while saving left behind (only one process saves a
    run, and it is not saving now)."""
    for stale in folder.glob(".step_*"):
        if ".tmp" in stale.name:
            stale.unlink(missing_ok=True)
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


def latest_step(run_dir: Path) -> int | None:
    """The step of the run's newest checkpoint (from its sidecar's name), None if it has none."""
    found = list_checkpoints(checkpoint_dir(run_dir))
    return int(_NAME.match(found[-1].name).group(1)) if found else None


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
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
        size = path.stat().st_size
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint file ({exc})") from exc
    if _looks_like_safetensors(head, size):
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
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{sidecar}: damaged sidecar ({exc})") from exc
    except OSError as exc:
        raise CheckpointError(f"{sidecar}: cannot read sidecar ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{sidecar}: not an m3dgan checkpoint sidecar")
    if not isinstance(meta.get("step"), int) or not isinstance(meta.get("optimizers", {}), dict):
        raise CheckpointError(f"{sidecar}: damaged sidecar (bad 'step' or 'optimizers')")
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"{sidecar}: checkpoint format version {meta.get('version')!r}; this m3dgan reads {VERSION}"
        )
    # checkpoints written before the sidecar carried its own checksum have none to verify
    if SIDECAR_CHECKSUM in meta and meta[SIDECAR_CHECKSUM] != sidecar_checksum(meta):
        raise CheckpointError(f"{sidecar}: checksum mismatch (damaged or edited sidecar)")
    _check_optimizer_meta(sidecar, meta.get("optimizers", {}))
    try:
        digest = sha256_file(tensor_path)
    except OSError as exc:
        raise CheckpointError(f"{tensor_path}: cannot read checkpoint file ({exc})") from exc
    if digest != meta.get("sha256"):
        raise CheckpointError(f"{tensor_path}: checksum mismatch (truncated or damaged file)")
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:  # malformed headers
        raise CheckpointError(f"{tensor_path}: unreadable safetensors file ({exc})") from exc
    return Checkpoint(int(meta["step"]), meta, tensors, tensor_path)


def _check_optimizer_meta(sidecar: Path, optimizers: dict) -> None:
    """The shape :meth:`Checkpoint.optimizer_state` relies on, checked up front."""
    for name, info in optimizers.items():
        ok = (
            isinstance(info, dict)
            and isinstance(info.get("param_groups"), list)
            and all(isinstance(g, dict) for g in info["param_groups"])
            and isinstance(info.get("scalars"), dict)
            and all(isinstance(v, dict) for v in info["scalars"].values())
        )
        if not ok:
            raise CheckpointError(f"{sidecar}: damaged sidecar (state of optimizer {name!r})")


def _none_found(path: Path) -> str:
    """Why ``path`` holds no checkpoint: it does not exist, or it has none of its own."""
    if not path.exists():
        return f"{path}: no such run folder or checkpoint file"
    return f"{path}: no checkpoints found (expected {checkpoint_dir(path)}/step_*.json)"


def resolve(path: Path) -> Path:
    """A run folder, its checkpoints folder, or one checkpoint file → a checkpoint path."""
    path = Path(path)
    if path.is_file():
        return path
    folder = checkpoint_dir(path) if checkpoint_dir(path).is_dir() else path
    found = list_checkpoints(folder)
    if not found:
        raise CheckpointError(_none_found(path))
    return found[-1]


def load_latest(run_or_path: Path) -> Checkpoint:
    """Newest good checkpoint; damaged ones are reported and skipped for the previous one."""
    path = Path(run_or_path)
    if path.is_file():
        return load_checkpoint(path)
    folder = checkpoint_dir(path) if checkpoint_dir(path).is_dir() else path
    found = list_checkpoints(folder)
    if not found:
        raise CheckpointError(_none_found(path))
    errors = []
    for candidate in reversed(found):
        try:
            return load_checkpoint(candidate)
        except CheckpointError as exc:
            errors.append(str(exc))
            warnings.warn(f"skipping damaged checkpoint: {exc}", stacklevel=2)
    raise CheckpointError("no usable checkpoint: " + "; ".join(errors))
