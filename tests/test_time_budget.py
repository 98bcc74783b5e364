"""``train.max_minutes``: a wall-clock budget over all sessions of a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_OVERRIDES, set_args

from m3dgan import checkpoint as ckpt
from m3dgan.cli import main

pytestmark = pytest.mark.usefixtures("isolated_env")


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "--task", "edges2emoji", "--data", str(data), "--out", str(out),
        "--steps", "50", "--no-progress", *set_args(TINY_OVERRIDES), *extra,
    ]  # fmt: skip


def _resume(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), "--resume", "--no-progress", *extra]


def test_budget_stops_with_a_checkpoint_and_counts_over_sessions(
    tmp_path: Path, tiny_data: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    # a budget of 3 ms: the first step uses it up, so the run stops long before 50 steps
    assert main(_args(tiny_data, run, "--set", "train.max_minutes=0.00005")) == 0
    err = "".join(capsys.readouterr())
    assert "train.max_minutes=5e-05 reached at step 1" in err
    saved = ckpt.load_latest(run)
    assert saved.step == 1 and saved.meta["guard"]["train_seconds"] > 0
    assert json.loads((run / "train_stats.json").read_text())["ended"] == "budget"
    # resumed, the budget is already spent: nothing trains and no checkpoint is rewritten
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert main(_resume(tiny_data, run)) == 0
    assert "nothing to train; raise it to go on" in "".join(capsys.readouterr())
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
    # raising the budget goes on from the saved time
    config = (run / "config.yaml").read_text().replace("max_minutes: 5.0e-05", "max_minutes: 5.0")
    (run / "config.yaml").write_text(config)
    assert main(_resume(tiny_data, run, "--steps", "3")) == 0
    assert ckpt.load_latest(run).step == 3
    assert json.loads((run / "train_stats.json").read_text())["ended"] == "steps"


def test_a_negative_budget_is_a_config_error(tmp_path: Path, tiny_data: Path) -> None:
    assert main(_args(tiny_data, tmp_path / "r", "--set", "train.max_minutes=-1")) == 2


def test_amp_without_native_bf16_trains_in_fp32_with_a_note(
    tmp_path: Path, tiny_data: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Emulated bf16 is ~11x slower than fp32 (AVX2 CPUs): train.amp then falls back, and says so."""
    import json

    import m3dgan.train

    monkeypatch.setattr(m3dgan.train, "native_bf16", lambda device: False)
    run = tmp_path / "fp32"
    args = [*_args(tiny_data, run, "--set", "train.amp=true")]
    args[args.index("50")] = "2"
    assert main(args) == 0
    assert "no native bf16" in capsys.readouterr().err
    assert json.loads((run / "train_stats.json").read_text())["precision"] == "fp32"
    monkeypatch.setattr(m3dgan.train, "native_bf16", lambda device: True)
    run = tmp_path / "bf16"
    args = [*_args(tiny_data, run, "--set", "train.amp=true")]
    args[args.index("50")] = "2"
    assert main(args) == 0
    assert "no native bf16" not in capsys.readouterr().err
    assert json.loads((run / "train_stats.json").read_text())["precision"] == "bf16"


def test_native_bf16_follows_the_onednn_isa_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from m3dgan.device import native_bf16

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not native_bf16(torch.device("cpu"))
    assert native_bf16(torch.device("cuda"))
