"""Configs and the ``train`` command line as a user meets them: numbers in scientific notation,
the device on resume, resuming to fewer steps, ``--print-config``, ``--version``, ``--help``
texts and what a mistyped ``--set`` key says.

Each section-2 case of issue 10 (device on resume, resume to fewer steps, numbers in configs)
failed on the code before its fix: these tests were run against that commit's ``m3dgan``
(``PYTHONPATH`` pointing at an export of it) and each failed there."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TINY_OVERRIDES, set_args, train_args, train_tiny_run

import m3dgan
from m3dgan import checkpoint as ckpt
from m3dgan.cli import build_parser, main
from m3dgan.config import Config, apply_overrides, config_from_dict, load_config, load_yaml

pytestmark = pytest.mark.usefixtures("isolated_env")



def resume_args(run: Path, data: Path, *extra: str) -> list[str]:
    return ["train", "--resume", "--out", str(run), "--data", str(data), "--no-progress", *extra]


def clean_error(code: int, capsys: pytest.CaptureFixture, *fragments: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.fixture(scope="module")
def run4(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 4-step run (train.device: cpu); tests copy it before changing it."""
    return train_tiny_run(tiny_data, tmp_path_factory, 4)


@pytest.fixture
def run(run4: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run4, copy)
    return copy


def steps_of(run: Path) -> list[int]:
    return [int(p.stem.split("_")[1]) for p in ckpt.list_checkpoints(run / "checkpoints")]


# --- numbers in configs (issue 10, §2.9) -----------------------------------------------------------

# 1.0e+3 and 2.5E-1 were read right before (YAML 1.1 floats); the others were strings, refused
SCIENTIFIC = [("1e-4", 1e-4), ("5E-5", 5e-5), ("1.0e+3", 1e3), ("1.0e5", 1e5), ("2.5E-1", 0.25)]


@pytest.mark.parametrize(("text", "value"), SCIENTIFIC)
def test_set_reads_scientific_notation_as_a_float(text: str, value: float) -> None:
    cfg = apply_overrides(Config(), [f"train.lr={text}", f"loss.lambda_kl={text}"])
    assert cfg.train.lr == value and isinstance(cfg.train.lr, float)
    assert cfg.loss.lambda_kl == value and isinstance(cfg.loss.lambda_kl, float)


def test_config_file_reads_scientific_notation(tmp_path: Path) -> None:
    path = tmp_path / "sci.yaml"
    path.write_text(
        "train:\n  lr: 1e-4\n  beta2: 9.99E-1\nloss:\n  lambda_kl: 5E-5\n"
        "  lambda_rec: 1.0e+3\n  dist_tau: 1e0\n"
    )
    cfg = load_config(path)
    assert (cfg.train.lr, cfg.train.beta2) == (1e-4, 0.999)
    assert (cfg.loss.lambda_kl, cfg.loss.lambda_rec, cfg.loss.dist_tau) == (5e-5, 1e3, 1.0)


def test_the_help_example_trains_with_lr_1e_4(tiny_data: Path, tmp_path: Path) -> None:
    """``--set train.lr=1e-4``, the example in ``m3dgan train --help``, end to end."""
    run = tmp_path / "run"
    assert main(train_args(tiny_data, run, 1, "--set", "train.lr=1e-4")) == 0
    assert load_config(run / "config.yaml").train.lr == 1e-4
    group = ckpt.load_latest(run).meta["config"]["train"]
    assert group["lr"] == 1e-4


def test_yaml_loader_keeps_every_other_scalar_as_before() -> None:
    for text, value in [
        ("3", 3),
        ("0x10", 16),
        ("true", True),
        ("null", None),
        ("1e", "1e"),
        ("e5", "e5"),
        ("1.2.3", "1.2.3"),
        ("bbox", "bbox"),
        (".5", 0.5),
        ("[1e-4, 2]", [1e-4, 2]),
    ]:
        assert load_yaml(text) == value, text
    assert load_yaml("1e-4") == 1e-4 and isinstance(load_yaml("12e3"), float)


def test_data_fetch_options_read_scientific_notation() -> None:
    from m3dgan.data.formats.fetch import parse_options

    options = parse_options(["test_fraction=2e-2", "max_seconds=1E1", "skip_bad=true", "crop=bbox"])
    assert options == {"test_fraction": 0.02, "max_seconds": 10.0, "skip_bad": True, "crop": "bbox"}
    assert isinstance(options["max_seconds"], float)


def test_saved_configs_round_trip(tmp_path: Path) -> None:
    cfg = apply_overrides(Config(), ["train.lr=1e-5", "loss.lambda_kl=5E-7"])
    cfg.save(tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg


# --- the device on resume (issue 10, §2.4) ---------------------------------------------------------


def _say_the_run_was_made_on(run: Path, device: str) -> None:
    path = run / "config.yaml"
    text = path.read_text()
    assert "device: cpu" in text
    path.write_text(text.replace("device: cpu", f"device: {device}"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_resume_on_a_cpu_machine_with_device_cpu(
    run: Path, tiny_data: Path, capsys: pytest.CaptureFixture
) -> None:
    """A run saved with ``device: cuda`` resumes with ``--device cpu``; config.yaml keeps the
    device the run was started with (only --steps changes in it), the device used is printed."""
    _say_the_run_was_made_on(run, "cuda")
    capsys.readouterr()
    assert main(resume_args(run, tiny_data, "--steps", "6", "--device", "cpu")) == 0
    out = capsys.readouterr().out
    assert "device: cpu" in out and "config.yaml keeps train.device='cuda'" in out
    assert steps_of(run)[-1] == 6
    saved = load_config(run / "config.yaml")
    assert (saved.train.device, saved.train.steps) == ("cuda", 6)
    # without --device the saved one applies, and this machine has no CUDA: a clean error
    code = main(resume_args(run, tiny_data, "--steps", "7"))
    clean_error(code, capsys, "'cuda'", "CUDA is not available", "--device cpu")
    assert steps_of(run)[-1] == 6 and load_config(run / "config.yaml").train.steps == 6


@pytest.mark.parametrize("device", ["cuda:7", "foo", "mps"])
def test_resume_with_an_impossible_device_is_an_error(
    run: Path, tiny_data: Path, device: str, capsys: pytest.CaptureFixture
) -> None:
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    before = (run / "config.yaml").read_bytes()
    code = main(resume_args(run, tiny_data, "--steps", "6", "--device", device))
    clean_error(code, capsys, repr(device))
    assert steps_of(run) == [4]
    assert (run / "config.yaml").read_bytes() == before


def test_a_gpu_index_the_machine_lacks_is_an_error(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A fresh run with ``--device cuda:7`` on a (pretend) one-GPU machine."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    out = tmp_path / "run"
    tiny = [o for o in TINY_OVERRIDES if not o.startswith("train.device")]
    argv = ["train", "--task", "digits", "--data", str(tiny_data), "--out", str(out)]
    argv += ["--steps", "2", "--no-progress", *set_args(tiny), "--device", "cuda:7"]
    code = main(argv)
    clean_error(code, capsys, "'cuda:7'", "1 CUDA device")
    assert not out.exists()


class _CheckpointFromAnotherDevice:
    """What restore() reads from a checkpoint saved by a CUDA run: its noise generator's state
    is CUDA's (16 bytes: seed and offset), not a CPU Mersenne Twister's."""

    step = 3

    def __init__(self) -> None:
        from m3dgan.config import Config
        from m3dgan.modalities import ModalitySpec
        from m3dgan.run_record import RunRecord

        side = ModalitySpec("image", 3, 32)
        self.meta = RunRecord(config=Config(), source=side, target=side, dataset="d").to_dict()

    def load_model(self, model) -> None:
        pass

    def restore_optimizer(self, name, optimizer) -> None:
        pass

    def rng_state(self, name: str) -> torch.Tensor:
        cuda_like = torch.arange(16, dtype=torch.uint8)
        return cuda_like if name == "noise" else torch.get_rng_state()


def test_a_noise_stream_saved_on_another_device_type_restarts_repeatably() -> None:
    """Resuming a CUDA run with --device cpu: the CPU generator cannot take CUDA's state."""
    from m3dgan.core.state import RunState
    from m3dgan.run_state import restore

    draws = []
    for _ in range(2):
        state = RunState(None, None, None, torch.Generator())
        restore(state, _CheckpointFromAnotherDevice())
        assert state.step == 3
        draws.append(torch.randn(4, generator=state.noise))
    assert torch.equal(draws[0], draws[1])
    fresh = torch.randn(4, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(draws[0], fresh)


# --- resuming to fewer steps (issue 10, §2.5) ------------------------------------------------------


@pytest.mark.parametrize("steps", [2, 4])
def test_resume_to_no_more_steps_is_refused_and_config_kept(
    run: Path, tiny_data: Path, steps: int, capsys: pytest.CaptureFixture
) -> None:
    before = (run / "config.yaml").read_bytes()
    code = main(resume_args(run, tiny_data, "--steps", str(steps)))
    clean_error(code, capsys, "already at step 4", f"--steps {steps} would not train", "larger")
    assert (run / "config.yaml").read_bytes() == before
    assert load_config(run / "config.yaml").train.steps == 4
    assert steps_of(run) == [4]


def test_resume_of_a_finished_run_says_there_is_nothing_to_train(
    run: Path, tiny_data: Path, capsys: pytest.CaptureFixture
) -> None:
    capsys.readouterr()
    assert main(resume_args(run, tiny_data)) == 0
    err = capsys.readouterr().err
    assert "already at step 4" in err and "nothing to train" in err and "--steps" in err
    assert steps_of(run) == [4]


def test_resume_to_more_steps_still_extends_the_run(run: Path, tiny_data: Path) -> None:
    assert main(resume_args(run, tiny_data, "--steps", "5")) == 0
    assert steps_of(run)[-1] == 5 and load_config(run / "config.yaml").train.steps == 5


# --- --print-config, --version, --help, --set mistakes (issue 10, §3) ------------------------------


def test_print_config_shows_the_resolved_config_and_trains_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text("train:\n  seed: 7\nmodel:\n  nz: 4\n")
    out = tmp_path / "run"
    argv = ["train", "--task", "en2fr", "--out", str(out), "--config", str(extra), "--steps", "9"]
    argv += ["--device", "cpu", "--set", "loss.lambda_kl=5e-3", "--print-config"]
    capsys.readouterr()
    assert main(argv) == 0
    cfg = config_from_dict(load_yaml(capsys.readouterr().out))
    assert (cfg.task, cfg.objective) == ("en2fr", "full")
    assert (cfg.train.lr, cfg.train.batch_size) == (1e-3, 32)  # the task's defaults
    assert (cfg.train.seed, cfg.model.nz) == (7, 4)  # --config
    assert (cfg.train.steps, cfg.train.device, cfg.loss.lambda_kl) == (
        9,
        "cpu",
        5e-3,
    )  # flags, --set
    assert cfg.model.gen_blocks == Config().model.gen_blocks  # everything else: the defaults
    assert not out.exists()


def test_print_config_needs_no_run_folder_and_training_does(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["train", "--task", "emoji2text", "--print-config"]) == 0
    cfg = config_from_dict(load_yaml(capsys.readouterr().out))
    assert cfg.task == "emoji2text" and cfg.train.warmup_code == "zero"  # the task's recipe
    # a switch the task cannot take is refused here as a run would refuse it
    assert main(["train", "--task", "digits", "--set", "model.subwords=500", "--print-config"]) == 2
    assert "model.subwords=500" in capsys.readouterr().err
    for argv in (["train", "--task", "emoji2text"], ["train", "--resume", "--print-config"]):
        assert main(argv) == 2
        assert "needs --out" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_print_config_of_a_resumed_run(run: Path, capsys: pytest.CaptureFixture) -> None:
    before = (run / "config.yaml").read_bytes()
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(run), "--steps", "8", "--print-config"]) == 0
    cfg = config_from_dict(load_yaml(capsys.readouterr().out))
    assert cfg.train.steps == 8 and cfg.model.nz == 4
    assert (run / "config.yaml").read_bytes() == before and steps_of(run) == [4]


def test_version(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"m3dgan {m3dgan.__version__}"
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'attr = "m3dgan.__version__"' in pyproject
    assert "\nversion = " not in pyproject.split("[project]")[1].split("\n[")[0]
    citation = (Path(__file__).parents[1] / "CITATION.cff").read_text()
    assert f'version: "{m3dgan.__version__}"' in citation


def _parsers(parser: argparse.ArgumentParser, name: str = "m3dgan"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def test_every_option_has_help_and_shows_its_default() -> None:
    problems = []
    for name, parser in _parsers(build_parser()):
        formatter = parser._get_formatter()
        in_required_group = {
            a for g in parser._mutually_exclusive_groups if g.required for a in g._group_actions
        }
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            label = f"{name} {'/'.join(action.option_strings) or action.dest}"
            if not action.help:
                problems.append(f"{label}: no help text")
                continue
            is_flag = action.nargs == 0  # store_true & co.: off unless given
            needs_default = action.option_strings and not (
                is_flag or action.required or action in in_required_group
            )
            if needs_default and "default" not in formatter._expand_help(action):
                problems.append(f"{label}: help does not show the default")
    assert not problems, "\n".join(problems)


def test_help_shows_defaults(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: auto)" in text and "(default: 0)" in text


def test_a_wrong_set_key_lists_the_valid_keys(tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "run")
    code = main(["train", "--out", out, "--set", "train.lrr=1", "--print-config"])
    err = clean_error(code, capsys, "train.lrr", "valid keys of train:", "did you mean 'lr'")
    for key in ("steps", "batch_size", "lr", "device", "amp"):
        assert f" {key}," in err or f" {key} " in err, key
    code = main(["train", "--out", out, "--set", "trian.lr=1", "--print-config"])
    clean_error(code, capsys, "no section 'trian'", "sections: model, loss, train")
    code = main(["train", "--out", out, "--set", "nothing=1", "--print-config"])
    clean_error(code, capsys, "unknown key 'nothing'", "task, objective", "model, loss, train")
