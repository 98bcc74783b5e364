"""Distributed training for real: two CPU processes on gloo, started the way users start them
(``torchrun -m m3dgan train``), against one process with the same global batch.

What must hold: the same losses for the first steps (DDP averages each rank's gradient of its
half-batch mean, which is the gradient of the full-batch mean, and the random codes are drawn for
the global batch and sliced like the data), the same function at the end, one set of files
written by rank 0 alone, and a non-finite loss on one rank rolling back every rank together.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_OVERRIDES, set_args
from safetensors.torch import load_file

from m3dgan import checkpoint as ckpt
from m3dgan.cli import main
from m3dgan.config import TrainConfig
from m3dgan.distributed import Distributed
from m3dgan.errors import ConfigError
from m3dgan.train import batch_indices, check_train_config

pytestmark = pytest.mark.usefixtures("isolated_env")

STEPS = 5
LR = 2e-4  # TrainConfig's default, which the runs below keep



def _guard(meta: dict) -> dict:
    """The divergence guard's part of a sidecar's counters (train_seconds varies run to run)."""
    return {k: meta["guard"][k] for k in ("lr_scale", "rollbacks")}

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--task",
        "digits",
        "--data",
        str(data),
        "--out",
        str(out),
        "--steps",
        str(STEPS),
        "--no-progress",
        *set_args(),
        *extra,
    ]


def torchrun(nproc: int, args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node N -m m3dgan ...`` on this machine, gloo over 127.0.0.1."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        "-m",
        "m3dgan",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def log_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def files_of(run: Path) -> list[str]:
    """Relative paths of a run folder, TensorBoard event names reduced to their folder."""
    names = []
    for p in sorted(run.rglob("*")):
        if p.is_file():
            rel = p.relative_to(run).as_posix()
            names.append("tb/<events>" if rel.startswith("tb/") else rel)
    return names


@pytest.fixture(scope="module")
def two_and_one(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same 5-step run of the full objective, batch 4: two processes (2 samples each) and
    one process (4 samples)."""
    runs = tmp_path_factory.mktemp("ddp")
    two, one = runs / "two", runs / "one"
    result = torchrun(2, train_args(tiny_data, two))
    assert result.returncode == 0, result.stderr[-3000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(train_args(tiny_data, one)) == 0
    finally:
        torch.set_num_threads(threads)
    return two, one


def test_two_processes_give_the_losses_of_one(two_and_one: tuple[Path, Path]) -> None:
    two, one = two_and_one
    rows_two, rows_one = log_rows(two), log_rows(one)
    assert [r["step"] for r in rows_two] == list(range(1, STEPS + 1))  # one writer, no duplicates
    for a, b in zip(rows_two, rows_one, strict=True):
        a.pop("samples_per_s"), b.pop("samples_per_s")
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), (a["step"], key)
    # the losses move from step to step: the comparison is not of five copies of one number
    assert len({r["loss_G"] for r in rows_one}) == STEPS


def test_two_processes_end_with_the_same_model(
    two_and_one: tuple[Path, Path], tiny_data: Path
) -> None:
    two, one = two_and_one
    a = load_file(str(two / "checkpoints" / f"step_{STEPS:08d}.safetensors"))
    b = load_file(str(one / "checkpoints" / f"step_{STEPS:08d}.safetensors"))
    assert a.keys() == b.keys()
    weights = [k for k in a if k.startswith("model.")]
    close = [k for k in weights if torch.allclose(a[k], b[k], rtol=0, atol=1e-6)]
    # Conv biases right before an instance norm have an exactly-zero gradient in exact
    # arithmetic; Adam normalises their rounding noise to steps of up to lr, so they may drift
    # apart by at most STEPS × lr. Every other tensor agrees to 1e-6.
    assert len(close) > 0.8 * len(weights), sorted(set(weights) - set(close))
    for k in weights:
        assert (a[k] - b[k]).abs().max() <= STEPS * LR * 1.01, k

    # the two models compute the same function (the drifting biases are normalised away)
    from m3dgan.infer import Translator

    source = torch.rand(3, 3, 16, 16) * 2 - 1
    e = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    out = [
        Translator.from_checkpoint(run, device="cpu").model.translate(source, e=e)
        for run in (two, one)
    ]
    torch.testing.assert_close(out[0], out[1], rtol=1e-4, atol=1e-5)


def test_only_rank_zero_writes(two_and_one: tuple[Path, Path]) -> None:
    two, one = two_and_one
    assert files_of(two) == files_of(one)  # the same files, each once
    assert len(list((two / "tb").iterdir())) == 1  # one TensorBoard writer, not one per rank
    stats = json.loads((two / "train_stats.json").read_text())
    assert stats["processes"] == 2 and stats["images"] == STEPS * 4  # global-batch images
    assert ckpt.load_latest(two).meta["config"]["train"]["batch_size"] == 4


def test_rank_shares_partition_the_global_batch() -> None:
    for step in range(6):
        whole = batch_indices(16, 4, step, seed=3)
        shares = [batch_indices(16, 4, step, seed=3, rank=r, world=2) for r in range(2)]
        assert sorted(torch.cat(shares).tolist()) == sorted(whole.tolist())
        assert torch.equal(shares[0], whole[0::2]) and torch.equal(shares[1], whole[1::2])


def test_global_batch_must_split_evenly() -> None:
    check_train_config(TrainConfig(batch_size=4), world=2)
    with pytest.raises(ConfigError, match="multiple of 2"):
        check_train_config(TrainConfig(batch_size=3), world=2)


def test_single_process_helpers_are_no_ops() -> None:
    d = Distributed()
    assert not d.enabled and d.is_main
    module = torch.nn.Linear(2, 2)
    assert d.wrap(module) is module
    assert d.mean({"a": 1.5}) == {"a": 1.5}
    assert d.all_true(torch.tensor(True)) and not d.any_true(False)


# --- a fault on one rank -------------------------------------------------------------------------


def _train_with_a_fault_on_rank_one(rank: int, port: int, data: str, out: str, home: str) -> None:
    """One process of a 2-process run (torch.multiprocessing entry point). On rank 1 alone, the
    generator's 5th forward (step 3, encoded branch) returns NaN once."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        M3DGAN_HOME=home,
    )
    torch.set_num_threads(1)
    from m3dgan import train as train_mod

    build = train_mod.build_model
    calls = {"n": 0}

    def build_with_fault(*args, **kwargs):
        model = build(*args, **kwargs)

        def nan_once(module, inputs, output):
            calls["n"] += 1
            if rank == 1 and calls["n"] == 5:
                return output * float("nan")
            return output

        model.generator.register_forward_hook(nan_once)
        return model

    train_mod.build_model = build_with_fault
    code = main(train_args(Path(data), Path(out), "--set", "train.checkpoint_every=2"))
    if code != 0:
        raise SystemExit(code)


def test_a_non_finite_loss_on_one_rank_rolls_back_every_rank(
    tiny_data: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    torch.multiprocessing.spawn(
        _train_with_a_fault_on_rank_one,
        args=(free_port(), str(tiny_data), str(run), os.environ["M3DGAN_HOME"]),
        nprocs=2,
        join=True,
    )
    rows = log_rows(run)
    events = [r for r in rows if r.get("event")]
    assert len(events) == 1
    assert events[0]["event"] == "rollback" and events[0]["step"] == 3
    assert events[0]["to_step"] == 2 and events[0]["lr"] == pytest.approx(LR / 2)
    assert "non-finite on another process" in events[0]["reason"]  # rank 0's own loss was fine
    # both ranks went on together from step 2 and finished the run
    steps = [r["step"] for r in rows if not r.get("event")]
    assert steps == [1, 2, 3, 4, 5]
    final = ckpt.load_latest(run)
    assert final.step == STEPS
    assert _guard(final.meta) == {"lr_scale": 0.5, "rollbacks": 1}
    assert all(
        g["lr"] == pytest.approx(LR / 2) for g in final.meta["optimizers"]["g"]["param_groups"]
    )


assert "train.batch_size=4" in TINY_OVERRIDES  # the runs above split a batch of 4 over 2 ranks
