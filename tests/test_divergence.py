"""The divergence guard for real: a NaN injected once into a forward pass is survived by rolling
back with a lower learning rate; a learning rate at which every step diverges stops the run after
``train.max_rollbacks`` rollbacks with a clean ``error:`` (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import train_args

from m3dgan import checkpoint as ckpt
from m3dgan import train as train_mod
from m3dgan.cli import main
from m3dgan.config import TrainConfig
from m3dgan.errors import ConfigError
from m3dgan.train import check_train_config

pytestmark = pytest.mark.usefixtures("isolated_env")

LR = 2e-4
# the terms a step computes before its own updates (the G-side GAN terms come after that step's
# D update, so they depend on the learning rate)
BEFORE_UPDATE = ("loss_D", "rec", "kl", "lat", "dist")


def _guard(meta: dict) -> dict:
    """The divergence guard's part of a sidecar's counters (train_seconds varies run to run)."""
    return {k: meta["guard"][k] for k in ("lr_scale", "rollbacks")}


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def inject_nan_once(monkeypatch: pytest.MonkeyPatch, at_call: int) -> None:
    """The generator's ``at_call``-th forward returns NaN, once (two forwards per step of the
    full objective: call 2k-1 is step k's encoded branch)."""
    build = train_mod.build_model
    calls = {"n": 0}

    def build_with_fault(*args, **kwargs):
        model = build(*args, **kwargs)

        def hook(module, inputs, output):
            calls["n"] += 1
            return output * float("nan") if calls["n"] == at_call else output

        model.generator.register_forward_hook(hook)
        return model

    monkeypatch.setattr(train_mod, "build_model", build_with_fault)


@pytest.mark.parametrize(
    ("fault_step", "checkpoint_every", "back_to"),
    [(4, 2, 2), (2, 1000, 0)],
    ids=["to-checkpoint", "to-initial-state"],
)
def test_a_nan_once_rolls_back_with_a_lower_lr_and_the_run_finishes(
    tiny_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    fault_step: int,
    checkpoint_every: int,
    back_to: int,
) -> None:
    inject_nan_once(monkeypatch, at_call=2 * fault_step - 1)
    run = tmp_path / "run"
    every = f"train.checkpoint_every={checkpoint_every}"
    assert main(train_args(tiny_data, run, 6, "--set", every)) == 0

    err = capsys.readouterr().err
    assert f"warning: step {fault_step}: discriminator loss is nan" in err
    assert f"rolled back to step {back_to}" in err and "0.0002 -> 0.0001" in err
    assert "rollback 1 of 3" in err

    log = rows(run)
    events = [r for r in log if "event" in r]
    assert events == [
        {
            "step": fault_step,
            "event": "rollback",
            "reason": "discriminator loss is nan",
            "to_step": back_to,
            "restored": events[0]["restored"],
            "lr": pytest.approx(LR / 2),
            "lr_before": pytest.approx(LR),
            "rollbacks": 1,
            "max_rollbacks": 3,
        }
    ]
    trained = [r for r in log if "event" not in r]
    first_try = list(range(1, fault_step))
    assert [r["step"] for r in trained] == first_try + list(range(back_to + 1, 7))
    # the rollback restored weights, optimizers, RNG and step: the first replayed step computes
    # the very losses it computed the first time (the lower rate only changes its updates)
    before = next(r for r in trained if r["step"] == back_to + 1)
    replay = [r for r in trained if r["step"] == back_to + 1][-1]
    assert before is not replay
    assert {k: before[k] for k in BEFORE_UPDATE} == {k: replay[k] for k in BEFORE_UPDATE}

    # the lowered rate is in every checkpoint from the rollback on, including the rewritten
    # rolled-back one, so a later --resume keeps it
    rolled = ckpt.load_checkpoint(run / "checkpoints" / f"step_{back_to:08d}.json")
    final = ckpt.load_latest(run)
    for c in (rolled, final):
        assert {k: c.meta["guard"][k] for k in ("lr_scale", "rollbacks")} == {
            "lr_scale": 0.5,
            "rollbacks": 1,
        }
        for name in ("g", "d"):
            assert c.meta["optimizers"][name]["param_groups"][0]["lr"] == pytest.approx(LR / 2)
    resume = ["train", "--out", str(run), "--steps", "8", "--resume", "--no-progress"]
    assert main([*resume, "--data", str(tiny_data)]) == 0
    resumed = ckpt.load_latest(run)
    assert resumed.step == 8 and _guard(resumed.meta) == {"lr_scale": 0.5, "rollbacks": 1}
    assert resumed.meta["optimizers"]["g"]["param_groups"][0]["lr"] == pytest.approx(LR / 2)


def test_an_absurd_learning_rate_stops_after_max_rollbacks(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    args = train_args(
        tiny_data, run, 20, "--set", "train.lr=1.0e+30", "--set", "train.max_rollbacks=2"
    )
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("warning: step") == 2  # one line per rollback
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: training diverged: ")
    assert "after 2 rollback(s) (train.max_rollbacks = 2" in last and "Traceback" not in err
    events = [r for r in rows(run) if "event" in r]
    assert [e["event"] for e in events] == ["rollback", "rollback", "diverged"]
    assert [e["lr"] for e in events[:2]] == [pytest.approx(5e29), pytest.approx(2.5e29)]
    # no NaN weights were ever written: every checkpoint on disk is finite
    for path in ckpt.list_checkpoints(run / "checkpoints"):
        c = ckpt.load_checkpoint(path)
        assert all(torch.isfinite(v).all() for k, v in c.tensors.items() if k.startswith("model."))

    # the advice in the message works: a sane rate in config.yaml, then --resume, finishes
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["train"]["lr"] = LR
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    resume = ["train", "--out", str(run), "--resume", "--no-progress", "--data", str(tiny_data)]
    assert main(resume) == 0
    final = ckpt.load_latest(run)
    assert final.step == 20 and _guard(final.meta) == {"lr_scale": 0.25, "rollbacks": 2}
    assert final.meta["optimizers"]["g"]["param_groups"][0]["lr"] == pytest.approx(LR / 4)


def test_guard_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="rollback_lr_factor"):
        check_train_config(TrainConfig(rollback_lr_factor=0.0), world=1)
    with pytest.raises(ConfigError, match="max_rollbacks"):
        check_train_config(TrainConfig(max_rollbacks=-1), world=1)


# --- finite loss spikes (train.spike_factor) ------------------------------------------------------


def test_the_spike_detector_fires_on_a_jump_and_not_on_noise() -> None:
    from m3dgan.guard import SPIKE_WARMUP, SpikeDetector

    gen = torch.Generator().manual_seed(0)
    noise = (0.5 + torch.rand(2000, generator=gen)).tolist()  # a loss of 1 ± 0.5 every step
    steady = SpikeDetector(3.0)
    assert not any(steady.spiked(v) for v in noise)
    # a jump to 8× fires within 3 steps, and while it fires it stays out of the reference
    assert any([steady.spiked(8.0) for _ in range(3)])
    slow = steady.slow
    assert steady.spiked(8.0) and steady.slow == slow
    assert "train.spike_factor = 3" in steady.describe()
    steady.reset()
    assert steady.fast == steady.slow and not steady.spiked(1.0)
    # not during the warm-up; never when off; non-finite values are the NaN guard's
    early = SpikeDetector(3.0)
    assert not any(early.spiked(v) for v in [1.0] * (SPIKE_WARMUP // 2) + [50.0] * 5)
    assert not any(SpikeDetector(0.0).spiked(v) for v in [1.0] * 300 + [1e6] * 5)
    assert not SpikeDetector(3.0).spiked(float("inf"))


def test_a_finite_loss_spike_rolls_back_with_a_lower_lr(
    tiny_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """The generator's output is multiplied by 50 once (step 6's encoded branch): every loss
    stays finite, the reconstruction loss jumps, and with train.spike_factor the run rolls back
    to its step-4 checkpoint at half the rate and finishes; without it, nothing happens."""
    from m3dgan import guard

    monkeypatch.setattr(guard, "SPIKE_WARMUP", 3)
    build = train_mod.build_model

    def build_with_spike(*args, **kwargs):
        model = build(*args, **kwargs)
        calls = {"n": 0}

        def hook(module, inputs, output):
            calls["n"] += 1
            return output * 50.0 if calls["n"] == 11 else output

        model.generator.register_forward_hook(hook)
        return model

    monkeypatch.setattr(train_mod, "build_model", build_with_spike)
    run = tmp_path / "run"
    extra = ("--set", "train.checkpoint_every=4", "--set", "train.spike_factor=3")
    assert main(train_args(tiny_data, run, 8, *extra)) == 0
    err = capsys.readouterr().err
    assert "warning: step 6: the reconstruction loss jumped to" in err
    assert "rolled back to step 4" in err and "0.0002 -> 0.0001" in err
    events = [r for r in rows(run) if "event" in r]
    assert [(e["event"], e["step"], e["to_step"]) for e in events] == [("rollback", 6, 4)]
    final = ckpt.load_latest(run)
    assert final.step == 8 and _guard(final.meta) == {"lr_scale": 0.5, "rollbacks": 1}

    plain = tmp_path / "plain"
    assert main(train_args(tiny_data, plain, 8, "--set", "train.checkpoint_every=4")) == 0
    assert not [r for r in rows(plain) if "event" in r]
    assert "warning: step" not in capsys.readouterr().err


def test_spike_factor_is_checked() -> None:
    with pytest.raises(ConfigError, match="spike_factor"):
        check_train_config(TrainConfig(spike_factor=0.5), world=1)
    check_train_config(TrainConfig(spike_factor=0.0), world=1)
    check_train_config(TrainConfig(spike_factor=3.0), world=1)
