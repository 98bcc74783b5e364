"""Where a run computes, and how repeatably: helpers that training and inference share.

Kept apart from ``m3dgan.train`` so that translating a sentence does not import the training
loop (its distributed, guard, run-state and report modules).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from m3dgan.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a device this machine has. A device it does
    not have (CUDA on a machine without it, ``cuda:7`` with fewer GPUs) or a name that is not
    one of these is a :class:`ConfigError` (exit 2), never a silent fall-back to another one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"{name!r} is not a device (auto | cpu | cuda | cuda:N)") from exc
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {name!r} is not supported (auto | cpu | cuda | cuda:N)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {name!r} requested but CUDA is not available on this machine "
                "(use --device cpu, or --device auto for what the machine has)"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"device {name!r} requested but this machine has {count} CUDA device(s) "
                f"(cuda:0 to cuda:{count - 1})"
            )
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively, so that ``train.amp`` (bf16 autocast)
    speeds training up: CUDA, or a CPU with AVX512-BF16 or AMX-BF16 (Linux ``/proc/cpuinfo``
    flags) that oneDNN is allowed to use (``ONEDNN_MAX_CPU_ISA`` not capped below them).
    Elsewhere oneDNN emulates bf16: edges2emoji trained 11× slower than in fp32 with the ISA
    capped at AVX2 (1.0 against 11.4 images/s, 2 threads; 1.6× *faster* with AMX)."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    if cap and cap not in ("ALL", "DEFAULT") and "BF16" not in cap and "AMX" not in cap:
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@contextlib.contextmanager
def deterministic_mode(enabled: bool) -> Iterator[None]:
    """``train.deterministic``: the same config and data give bitwise the same weights, on CPU
    and on CUDA (where it costs speed: no cuDNN autotuning, deterministic kernels only, and an
    error naming any op that has no deterministic implementation). Restored on exit, so a
    caller's own setting survives an in-process ``train()``."""
    if not enabled:
        yield
        return
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    # cuBLAS reproducibility needs a fixed workspace; read when CUDA initialises
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark = before[2]
