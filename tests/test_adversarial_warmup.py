"""``train.adversarial_warmup``: the first share of a run trains reconstruction + KL only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY_OVERRIDES, set_args
from test_losses import batch, make_step, snapshot

from m3dgan.cli import main
from m3dgan.config import TrainConfig
from m3dgan.train import warming_up

pytestmark = pytest.mark.usefixtures("isolated_env")


def test_warm_up_share_is_of_the_steps_or_of_the_time_budget() -> None:
    by_steps = TrainConfig(steps=10, adversarial_warmup=0.3)
    assert [warming_up(by_steps, s, 1e9) for s in (0, 2, 3, 9)] == [True, True, False, False]
    by_time = TrainConfig(steps=10, max_minutes=10.0, adversarial_warmup=0.5)
    assert warming_up(by_time, 9, 299.0) and not warming_up(by_time, 0, 300.0)
    assert not warming_up(TrainConfig(), 0, 0.0)  # 0: the paper, adversarial from step 1


def test_a_warm_up_step_leaves_d_alone_and_skips_the_random_branch() -> None:
    step = make_step("full")
    m = step.model
    source, target = batch()
    d_before, g_before = snapshot(m.discriminator_parameters()), snapshot(m.generator_parameters())
    noise = step.generator.get_state()
    logs = step(source, target, warmup=True)
    assert set(logs) == {"G_gan_enc", "rec", "kl", "loss_G"} and logs["G_gan_enc"] == 0.0
    assert all(
        torch.equal(a, b) for a, b in zip(d_before, m.discriminator_parameters(), strict=True)
    )
    assert any(
        not torch.equal(a, b) for a, b in zip(g_before, m.generator_parameters(), strict=True)
    )
    # the noise stream moves as in a full step (e_s is drawn and dropped): resume stays exact
    full = make_step("full")
    full.generator.set_state(noise)
    full(source, target)
    assert torch.equal(step.generator.get_state(), full.generator.get_state())
    logs = step(source, target)  # after the warm-up: the objective's whole step
    assert {"loss_D", "G_gan_rand", "lat", "dist"} <= set(logs)


def test_a_run_warms_up_then_trains_adversarially(
    tmp_path: Path, tiny_data: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    args = ["train", "--task", "edges2emoji", "--data", str(tiny_data), "--out", str(run)]
    args += ["--steps", "4", "--no-progress", *set_args(TINY_OVERRIDES)]
    args += ["--set", "train.adversarial_warmup=0.5", "--set", "train.log_every=1"]
    assert main(args) == 0
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    has_d = {r["step"]: "loss_D" in r for r in rows if "loss_G" in r}
    assert has_d == {1: False, 2: False, 3: True, 4: True}
    assert "step 2: the adversarial warm-up" in capsys.readouterr().out  # said once, when over
    assert main([*args[:-4], "--set", "train.adversarial_warmup=1.0"]) == 2  # in [0, 1)
