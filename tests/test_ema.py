"""The moving average of the generator side (``train.ema_decay``, ``m3dgan.core.ema``): its
arithmetic by hand, in a real run (each update, the sample grids), in checkpoints, in exact
resume, in the divergence guard's snapshot, in translation and evaluation (the average by
default, ``use_ema=False`` / ``--no-ema`` for the live weights), and its config check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import set_args, synthetic_split, tiny_model_config, train_args, train_tiny_run
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from m3dgan import checkpoint as ckpt
from m3dgan import evaluate as evaluate_mod
from m3dgan.cli import main
from m3dgan.config import Config, config_from_dict
from m3dgan.core.ema import GeneratorEMA, generator_side_state, warmup_decay
from m3dgan.core.model import M3DGAN
from m3dgan.core.objectives import get_objective
from m3dgan.core.state import RunState
from m3dgan.data.store import to_float
from m3dgan.errors import ConfigError
from m3dgan.infer import Translator
from m3dgan.modalities import ModalitySpec
from m3dgan.report.run_outputs import RunOutputs
from m3dgan.run_state import Snapshot

pytestmark = pytest.mark.usefixtures("isolated_env")

DECAY = 0.9
DISCRIMINATORS = ("disc_enc.", "disc_rand.")


# --- the arithmetic, by hand --------------------------------------------------------------------


class Tiny(nn.Module):
    """A generator side of one linear layer and an integer buffer, beside a "discriminator"."""

    def __init__(self) -> None:
        super().__init__()
        self.g = nn.Linear(2, 1)
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))
        self.disc_enc = nn.Linear(2, 1)

    @torch.no_grad()
    def put(self, weight: list[float], bias: float, count: int) -> None:
        self.g.weight.copy_(torch.tensor([weight]))
        self.g.bias.fill_(bias)
        self.count.fill_(count)


def test_two_updates_give_the_warmed_up_average() -> None:
    m = Tiny()
    m.put([1.0, -2.0], 0.5, 3)
    ema = GeneratorEMA(m, 0.5)
    assert set(ema.state_dict()) == {"g.weight", "g.bias", "count"}  # no discriminator
    m.put([3.0, 4.0], -1.5, 5)
    ema.update(m)  # k = 1: d = min(0.5, 2/11) = 2/11
    m.put([-1.0, 0.25], 2.0, 7)
    ema.update(m)  # k = 2: d = min(0.5, 3/12) = 1/4
    d1, d2 = 2 / 11, 1 / 4
    w = [torch.tensor(v, dtype=torch.float64) for v in ([1.0, -2.0], [3.0, 4.0], [-1.0, 0.25])]
    b = [0.5, -1.5, 2.0]
    expected_w = d2 * (d1 * w[0] + (1 - d1) * w[1]) + (1 - d2) * w[2]
    expected_b = d2 * (d1 * b[0] + (1 - d1) * b[1]) + (1 - d2) * b[2]
    torch.testing.assert_close(ema.shadow["g.weight"][0].double(), expected_w, rtol=0, atol=1e-6)
    assert ema.shadow["g.bias"].item() == pytest.approx(expected_b, abs=1e-6)
    assert ema.shadow["count"].item() == 7  # integers are copied, not averaged
    assert ema.updates == 2
    # the live weights are untouched by the updates
    assert m.g.weight.tolist() == [[-1.0, 0.25]] and m.count.item() == 7


def test_the_configured_decay_caps_the_warm_up() -> None:
    m = Tiny()
    m.put([1.0, 1.0], 1.0, 0)
    ema = GeneratorEMA(m, 0.1)  # below (1 + 1) / (10 + 1): the configured decay applies
    m.put([2.0, 0.0], 3.0, 0)
    ema.update(m)
    torch.testing.assert_close(ema.shadow["g.weight"], torch.tensor([[1.9, 0.1]]))
    assert ema.shadow["g.bias"].item() == pytest.approx(2.8)
    assert warmup_decay(0.999, 1) == pytest.approx(2 / 11)
    assert warmup_decay(0.999, 890) == pytest.approx(0.99)
    assert warmup_decay(0.999, 10**6) == 0.999


def test_swapped_in_puts_the_average_in_and_the_live_weights_back_even_on_error() -> None:
    m = Tiny()
    m.put([1.0, 2.0], 0.0, 1)
    ema = GeneratorEMA(m, 0.5)
    m.put([5.0, 6.0], 1.0, 2)
    ema.update(m)
    live = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.raises(RuntimeError, match="inside"), ema.swapped_in(m):
        assert torch.equal(m.g.weight, ema.shadow["g.weight"])
        assert not torch.equal(m.g.weight, live["g.weight"])
        assert torch.equal(m.disc_enc.weight, live["disc_enc.weight"])  # D keeps its own
        raise RuntimeError("inside")
    assert all(torch.equal(v, live[k]) for k, v in m.state_dict().items())
    assert m.g.weight.requires_grad  # still a trainable parameter


# --- a real run ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ema_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """A 3-step tiny run with ``train.ema_decay`` > 0, a checkpoint (all kept) and a sample grid
    at every step, and the generator-side weights each grid was drawn with (by step)."""
    drawn_with: dict[int, dict[str, torch.Tensor]] = {}
    samples = RunOutputs.samples

    def spy(self, step, model, *args, **kwargs):
        drawn_with[step] = {k: v.clone() for k, v in generator_side_state(model).items()}
        return samples(self, step, model, *args, **kwargs)

    extra = ["train.checkpoint_every=1", "train.keep_checkpoints=0", "train.sample_every=1"]
    argv = ["--task", "digits", "--no-progress", *set_args()]
    argv += set_args([*extra, f"train.ema_decay={DECAY}"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RunOutputs, "samples", spy)
        run = train_tiny_run(tiny_data, tmp_path_factory, 3, argv)
    return run, drawn_with


def _checkpoint(run: Path, step: int) -> ckpt.Checkpoint:
    return ckpt.load_checkpoint(run / "checkpoints" / f"step_{step:08d}.json")


def test_a_run_averages_its_generator_side_after_every_step(ema_run) -> None:
    run, _ = ema_run
    cks = [_checkpoint(run, step) for step in (1, 2, 3)]
    for c in cks:
        live, ema = c.model_state(), c.ema_state()
        assert set(ema) == {k for k in live if not k.startswith(DISCRIMINATORS)}
        assert any(k.startswith("attention.tokens") for k in ema)  # E_att is averaged too
        assert c.meta["ema"] == {"updates": c.step}
    live, ema = cks[-1].model_state(), cks[-1].ema_state()
    floats = [k for k in ema if ema[k].is_floating_point()]
    differ = [k for k in floats if not torch.equal(ema[k], live[k])]
    assert len(differ) > 0.9 * len(floats)
    # step k's update: shadow ← d·shadow + (1 − d)·live, d = min(ema_decay, (1 + k) / (10 + k))
    for before, after in zip(cks[:-1], cks[1:], strict=True):
        d = min(DECAY, (1 + after.step) / (10 + after.step))
        old, new, live = before.ema_state(), after.ema_state(), after.model_state()
        for k in floats:
            expected = d * old[k].double() + (1 - d) * live[k].double()
            torch.testing.assert_close(new[k].double(), expected, rtol=1e-6, atol=1e-7)


def test_sample_grids_are_drawn_with_the_average(ema_run) -> None:
    run, drawn_with = ema_run
    assert sorted(drawn_with) == [1, 2, 3]
    for step, weights in drawn_with.items():
        c = _checkpoint(run, step)  # saved after that step's samples: the live weights are back
        ema, live = c.ema_state(), c.model_state()
        assert all(torch.equal(weights[k], ema[k]) for k in ema)
        assert any(not torch.equal(weights[k], live[k]) for k in ema)
    assert (run / "samples" / "step_00000003.png").is_file()


def _source(n: int = 1) -> torch.Tensor:
    return to_float(synthetic_split(n, 7)["source"])


def test_translator_uses_the_average_unless_told_not_to(ema_run) -> None:
    run, _ = ema_run
    c = ckpt.load_latest(run)
    ema_tr = Translator.from_checkpoint(run, device="cpu")
    live_tr = Translator.from_checkpoint(run, device="cpu", use_ema=False)
    assert (ema_tr.weights, live_tr.weights) == ("ema", "live")
    # the model with the average put in by hand, discriminators as trained
    model = M3DGAN.from_config(ema_tr.cfg, ema_tr.record.source, ema_tr.record.target)
    model.load_state_dict({**c.model_state(), **c.ema_state()})
    model.eval()
    source = _source()
    refs = to_float(synthetic_split(2, 8)["target"])
    by_hand = model.translate(source.expand(2, -1, -1, -1), reference=refs)
    assert torch.equal(ema_tr.translate(source, reference=refs), by_hand)
    assert not torch.equal(live_tr.translate(source, reference=refs), by_hand)
    codes = model.translate(source.expand(3, -1, -1, -1), generator=torch.Generator().manual_seed(5))
    assert torch.equal(ema_tr.translate(source, samples=3, seed=5), codes)
    # use_ema=False: exactly the checkpoint's trained weights
    state = live_tr.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in c.model_state().items())


def test_translate_and_evaluate_say_which_weights(
    ema_run, tiny_data: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, _ = ema_run
    image = tmp_path / "square.png"
    Image.fromarray(synthetic_split(1, 7)["source"][0].permute(1, 2, 0).numpy()).save(image)
    outputs = {}
    for name, flags in (("ema", []), ("live", ["--no-ema"])):
        out = tmp_path / name
        args = ["translate", "--checkpoint", str(run), "--input", str(image), "--out", str(out)]
        assert main([*args, "--samples", "2", "--seed", "0", "--device", "cpu", *flags]) == 0
        assert f"weights: {name} (" in capsys.readouterr().out
        outputs[name] = (out / "square_z0.png").read_bytes()
    assert outputs["ema"] != outputs["live"]
    # the metrics themselves are tested elsewhere: none here, only the header of the result
    monkeypatch.setattr(evaluate_mod, "metric_functions", lambda names: [])
    for name, flags in (("ema", []), ("live", ["--no-ema"])):
        out = tmp_path / f"metrics_{name}.json"
        args = ["evaluate", "--checkpoint", str(run), "--out", str(out), "--data", str(tiny_data)]
        assert main([*args, "--device", "cpu", *flags]) == 0
        assert json.loads(out.read_text())["weights"] == name


# --- resume and the divergence guard -----------------------------------------------------------


def test_resume_with_the_average_is_exact(tiny_data: Path, tmp_path: Path) -> None:
    ema = ["--set", f"train.ema_decay={DECAY}"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(train_args(tiny_data, straight, 4, *ema)) == 0
    assert main(train_args(tiny_data, resumed, 2, *ema)) == 0
    resume = ["train", "--out", str(resumed), "--steps", "4", "--resume", "--no-progress"]
    assert main([*resume, "--data", str(tiny_data)]) == 0
    a = load_file(str(straight / "checkpoints" / "step_00000004.safetensors"))
    b = load_file(str(resumed / "checkpoints" / "step_00000004.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("ema.") for k in a)
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ, e.g. {differ[:5]}"
    assert ckpt.load_latest(resumed).meta["ema"] == ckpt.load_latest(straight).meta["ema"]
    assert ckpt.load_latest(resumed).meta["ema"] == {"updates": 4}


def test_resuming_a_run_without_an_average_starts_it_from_the_weights(
    tiny_data: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    assert main(train_args(tiny_data, run, 2)) == 0
    two = ckpt.load_latest(run)
    assert two.ema_state() == {} and two.meta["ema"] == {}  # off by default
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["train"]["ema_decay"] = 0.5
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    resume = ["train", "--out", str(run), "--steps", "3", "--resume", "--no-progress"]
    assert main([*resume, "--data", str(tiny_data)]) == 0
    three = ckpt.load_latest(run)
    assert three.step == 3 and three.meta["ema"] == {"updates": 1}
    d = 2 / 11  # the first update of a fresh warm-up
    start, live, ema = two.model_state(), three.model_state(), three.ema_state()
    for k, v in ema.items():
        expected = d * start[k].double() + (1 - d) * live[k].double()
        torch.testing.assert_close(v.double(), expected, rtol=1e-6, atol=1e-7)


def test_the_guard_snapshot_holds_the_average() -> None:
    cfg = config_from_dict({**Config().to_dict(), "train": {"ema_decay": DECAY}})
    torch.manual_seed(0)
    model = M3DGAN(
        ModalitySpec("image", 3, 16),
        ModalitySpec("image", 1, 16),
        get_objective("full"),
        tiny_model_config(),
    )
    state = RunState.create(model, cfg, torch.device("cpu"))
    assert state.ema is not None
    snapshot = Snapshot.take(state)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    state.ema.update(model)
    assert state.ema.updates == 1
    snapshot.restore_into(state)
    assert state.ema.updates == 0
    live = generator_side_state(model)
    assert all(torch.equal(v, live[k]) for k, v in state.ema.state_dict().items())


# --- the switch ----------------------------------------------------------------------------------


def test_the_switch_is_off_by_default_and_checked() -> None:
    assert Config().train.ema_decay == 0.0
    for good in (0.0, 0.5, 0.999):
        assert config_from_dict({"train": {"ema_decay": good}}).train.ema_decay == good
    for bad in (1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ConfigError, match=r"train\.ema_decay"):
            config_from_dict({"train": {"ema_decay": bad}})


def test_a_bad_decay_is_a_clean_cli_error(tiny_data: Path, tmp_path: Path, capsys) -> None:
    code = main(train_args(tiny_data, tmp_path / "run", 1, "--set", "train.ema_decay=1.0"))
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "train.ema_decay" in err, err
    assert not (tmp_path / "run" / "checkpoints").exists()
