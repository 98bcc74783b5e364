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
    """Weights then sidecar, each through a temp file (a crash leaves no valid-looking pair)."""
    weights.parent.mkdir(parents=True, exist_ok=True)
    sidecar = weights.with_suffix(".json")
    sidecar.unlink(missing_ok=True)
    tmp = weights.with_name(weights.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(tmp))
    tmp.replace(weights)
    tmp = sidecar.with_name(sidecar.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(sidecar)
