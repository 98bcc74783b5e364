"""Issue "The house": inference stands on its own, configs layer in a fixed order, and a run
carries what inference needs (started; see the README's trail for what is still to move)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["m3dgan.infer", "m3dgan.evaluate"])
def test_inference_does_not_import_training(module: str) -> None:
    """Translating or evaluating must not load the training loop (distributed, guard, run
    state, sample reports): a fresh interpreter imports the module and checks."""
    code = (
        f"import sys, {module}\n"
        "loaded = [m for m in ('m3dgan.train', 'm3dgan.guard', 'm3dgan.run_state', "
        "'m3dgan.distributed') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
