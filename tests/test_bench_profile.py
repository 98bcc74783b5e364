"""bench/profile_step.py: a real (tiny) training run profiled step by step; the parts table
names every part of the model the objective runs, and the per-step numbers are positive."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import TINY_OVERRIDES
from text_fixtures import TEXT_MODEL_OVERRIDES, write_text2text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
profile_step = pytest.importorskip("profile_step")


@pytest.mark.parametrize(
    ("objective", "parts"),
    [
        ("full", {"source_prenet", "reference_prenet", "attention.encoder", "attention.tokens",
                  "generator", "disc_enc", "disc_rand"}),
        ("mle", {"source_prenet", "generator"}),
    ],
)  # fmt: skip
def test_profile_step_times_the_parts_of_real_steps(
    tmp_path: Path, monkeypatch, capsys, objective: str, parts: set[str]
) -> None:
    data, out = write_text2text(tmp_path / "data"), tmp_path / "profile"
    argv = ["profile_step.py", "--task", "en2fr", "--objective", objective, "--data", str(data)]
    argv += ["--steps", "2", "--warmup", "1", "--batch-size", "4", "--out", str(out)]
    # en2fr full's recipe warms up from e = 0 (no reference, no D) for 90 % of the steps
    after_warmup = ["train.adversarial_warmup=0", "train.warmup_code=encoded"]
    for item in TINY_OVERRIDES + TEXT_MODEL_OVERRIDES + (after_warmup if objective == "full" else []):
        argv += ["--set", item]
    monkeypatch.setattr(sys, "argv", argv)
    profile_step.main()
    record = json.loads((out / "profile.json").read_text())
    assert record["seconds_per_step"] > 0 and record["steps"] == 2
    assert set(record["parts"]) == parts  # mle has no reference side and no discriminator
    assert all(p["forward_ms_per_step"] > 0 and p["calls_per_step"] >= 1
               for p in record["parts"].values())  # fmt: skip
    assert record["operators"] and all(o["self_ms_per_step"] >= 0 for o in record["operators"])
    table = (out / "parts.md").read_text()
    assert "| generator (forward) |" in table and "the rest" in table
    assert "generator (forward)" in capsys.readouterr().out
    # the patches are undone: a later run in this process trains unprofiled
    import m3dgan.train
    from m3dgan.core.step import TrainStep

    assert m3dgan.train.build_state.__name__ == "build_state"
    assert TrainStep.__call__.__name__ == "__call__"
