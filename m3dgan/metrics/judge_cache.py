"""The judges' on-disk cache: safetensors weights + a JSON sidecar that says what they are.

A judge (the judge ASR, the style classifier) is trained once per data set and reused by every
``evaluate``. The sidecar holds the architecture (to rebuild the module), the training recipe and
data set digest (the cache key: any difference retrains) and the judge's own scores.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from m3dgan.atomic import atomic_paths


def try_load(
    weights: Path, expected: dict, build: Callable[[dict], nn.Module], what: str
) -> nn.Module | None:
    """The cached judge when its sidecar matches ``expected`` (``build(meta["arch"])`` makes the
    module), else None — also for a damaged cache, which is retrained with a warning."""
    sidecar = weights.with_suffix(".json")
    if not (weights.is_file() and sidecar.is_file()):
        return None
    try:
        meta = json.loads(sidecar.read_text())
        if any(meta.get(k) != v for k, v in expected.items()):
            return None
        module = build(meta["arch"])
        module.load_state_dict(load_file(str(weights)))
    except Exception as exc:  # a damaged cache is retrained, not fatal
        warnings.warn(f"{weights}: unreadable cached {what} ({exc}); retraining", stacklevel=3)
        return None
    module.info = meta
    return module.eval()


def save(module: nn.Module, weights: Path, meta: dict) -> None:
    """Weights then sidecar, through temp files renamed once both are written
    (``m3dgan.atomic``); the old sidecar goes first, so a crash leaves no valid-looking pair and
    a full disk (OutputError) no partial file."""
    sidecar = weights.with_suffix(".json")
    sidecar.unlink(missing_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_paths(weights, sidecar) as (weights_tmp, sidecar_tmp):
        save_file(state, str(weights_tmp))
        sidecar_tmp.write_text(json.dumps(meta, indent=2))
