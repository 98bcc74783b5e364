"""Never lose a run: ``m3dgan train`` killed with SIGKILL mid-training and resumed ends bitwise
where an uninterrupted run ends; SIGTERM makes it checkpoint the current step and exit cleanly.

The runs are real processes (``python -m m3dgan train``); the test waits for files to appear
(it polls, it never guesses how long training takes) before it sends a signal.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import conftest
import pytest
import torch
from safetensors.torch import load_file

from m3dgan import checkpoint as ckpt
from m3dgan.cli import main

pytestmark = pytest.mark.usefixtures("isolated_env")


def train_args(data: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return conftest.train_args(data, out, steps, "--set", "train.deterministic=true", *extra)

def start(args: list[str], logs: Path) -> subprocess.Popen:
    """``python -m m3dgan ...`` in the background, on one thread like the in-process runs."""
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "m3dgan", *args],
        env=env,
        stdout=open(logs / "stdout.txt", "w"),  # noqa: SIM115 (the child owns it)
        stderr=open(logs / "stderr.txt", "w"),  # noqa: SIM115
    )


def wait_until(condition: Callable[[], bool], proc: subprocess.Popen, what: str) -> None:
    """Poll ``condition`` until it holds; fail if the process ends first (or after 5 minutes)."""
    deadline = time.monotonic() + 300
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the run exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def logged_steps(run: Path) -> list[int]:
    path = run / "log.jsonl"
    if not path.is_file():
        return []
    steps = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError, KeyError):  # a half-written last line
            steps.append(json.loads(line)["step"])
    return steps


def checkpoint_steps(run: Path) -> list[int]:
    return [int(p.stem.split("_")[1]) for p in ckpt.list_checkpoints(run / "checkpoints")]


def test_sigkill_then_resume_is_bitwise_exact(tiny_data: Path, tmp_path: Path) -> None:
    steps, every = 20, 4
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    extra = ("--set", f"train.checkpoint_every={every}")
    # the uninterrupted run goes alongside the one that will be killed
    reference = start(train_args(tiny_data, straight, steps, *extra), tmp_path / "straight_out")
    victim = start(train_args(tiny_data, killed, steps, *extra), tmp_path / "killed_out")

    # kill it once a checkpoint exists and training has gone past it: those steps are lost
    def past_a_checkpoint() -> bool:
        done = checkpoint_steps(killed)
        return bool(done) and max(logged_steps(killed), default=0) > done[-1]

    wait_until(past_a_checkpoint, victim, "a checkpoint and a step after it")
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=60) == -signal.SIGKILL
    survived = ckpt.load_latest(killed).step
    assert 0 < survived < steps, "the run was not killed mid-training"

    # resume (here, in this process) to the end
    resume = ["train", "--out", str(killed), "--resume", "--no-progress", "--data", str(tiny_data)]
    assert main(resume) == 0
    assert reference.wait(timeout=300) == 0, (tmp_path / "straight_out" / "stderr.txt").read_text()

    a = load_file(str(straight / "checkpoints" / f"step_{steps:08d}.safetensors"))
    b = load_file(str(killed / "checkpoints" / f"step_{steps:08d}.safetensors"))
    assert a.keys() == b.keys()
    assert any(k.startswith("optim.") for k in a) and any(k.startswith("rng.") for k in a)
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ after resume, e.g. {differ[:5]}"


def test_sigterm_checkpoints_the_current_step_and_exits_cleanly(
    tiny_data: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    # a run far too long to finish, with no periodic checkpoint before the signal
    proc = start(train_args(tiny_data, run, 100_000), tmp_path / "out")
    wait_until(lambda: max(logged_steps(run), default=0) >= 2, proc, "two training steps")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, (tmp_path / "out" / "stderr.txt").read_text()

    stdout = (tmp_path / "out" / "stdout.txt").read_text()
    stopped = int(stdout.split("stopped at step ")[1].split(";")[0])
    assert stopped >= 2 and stopped % 1000 != 0  # not a periodic checkpoint (every 1000)
    assert checkpoint_steps(run) == [stopped]
    assert logged_steps(run)[-1] == stopped  # the checkpoint holds the last step trained
    assert ckpt.load_latest(run).step == stopped
    assert "Traceback" not in (tmp_path / "out" / "stderr.txt").read_text()
    # benchmarks read why the session ended: a stopped run is not finished, it resumes
    stats = json.loads((run / "train_stats.json").read_text())
    assert stats["ended"] == "stopped" and stats["step"] == stopped
