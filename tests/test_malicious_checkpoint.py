"""Loading never runs code from a file: real malicious pickles, under every name a user might hand
us, through every public loader (library, Translator, CLI), are refused and their payload never
runs.

Each payload is a real exploit: unpickling it runs ``os.system``, ``exec`` or
``pathlib.Path.write_text`` and creates a marker file. ``test_the_payloads_are_real`` proves that
by unpickling them (and ``torch.load``-ing the archives) in a throw-away subprocess; every other
test then asserts that m3dgan raises a clear :class:`CheckpointError` (exit code 2 from the CLI)
and that the marker file was never written.
"""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import subprocess
import sys
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest
import torch
from conftest import TINY_OVERRIDES
from PIL import Image
from torch import nn

from m3dgan import checkpoint as ckpt
from m3dgan.cli import main
from m3dgan.config import apply_overrides, layered_config, load_config
from m3dgan.data.store import sha256_file
from m3dgan.errors import CheckpointError, ConfigError
from m3dgan.infer import Translator

pytestmark = pytest.mark.usefixtures("isolated_env")


class SystemPayload:
    """Unpickling runs a shell command that writes the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > '{self.marker}'",))


class ExecPayload:
    """Unpickling runs arbitrary Python source."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


class WriteTextPayload:
    """Unpickling calls a bound-looking method with attacker-chosen arguments."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.write_text, (pathlib.Path(self.marker), "pwned"))


def payloads(marker: Path, scratch: Path) -> dict[str, bytes]:
    """Every flavour of malicious file, as bytes: raw pickles and torch.save archives."""
    out = {
        "system-pickle-p2": pickle.dumps(SystemPayload(marker), protocol=2),
        "exec-pickle-p5": pickle.dumps(ExecPayload(marker), protocol=5),
        "write_text-pickle-p4": pickle.dumps(WriteTextPayload(marker), protocol=4),
        "system-pickle-p0": pickle.dumps(SystemPayload(marker), protocol=0),  # ASCII, no magic
    }
    scratch.mkdir(parents=True, exist_ok=True)
    archive = scratch / "zip.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hook": SystemPayload(marker)}, archive)
    out["torch.save-zip"] = archive.read_bytes()
    legacy = scratch / "legacy.pt"
    torch.save({"hook": ExecPayload(marker)}, legacy, _use_new_zipfile_serialization=False)
    out["torch.save-legacy"] = legacy.read_bytes()
    return out


KINDS = list(payloads(Path("/nonexistent/m"), Path("/tmp/m3dgan-payload-probe")))


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch):
    """Belt and braces: fail loudly if anything even tries to unpickle while the test runs."""

    def forbidden(*args, **kwargs):
        raise AssertionError("something tried to unpickle a checkpoint")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)


def test_the_payloads_are_real(tmp_path: Path) -> None:
    """Guard against a suite that passes because its exploits are harmless: unpickle each one in a
    subprocess (torch.load with weights_only=False for the archives) and see its marker appear."""
    files = {}
    for kind in KINDS:
        marker = tmp_path / f"proof-{kind}"
        path = tmp_path / f"{kind}.bin"
        path.write_bytes(payloads(marker, tmp_path / "scratch" / kind)[kind])
        files[kind] = (path, marker)
    script = (
        "import pickle, sys, torch\n"
        "for path in sys.argv[1:]:\n"
        "    if 'torch.save' in path:\n"
        "        torch.load(path, weights_only=False)\n"
        "    else:\n"
        "        pickle.loads(open(path, 'rb').read())\n"
    )
    # the payload classes are only referenced at pickling time; unpickling needs nothing of ours
    subprocess.run(
        [sys.executable, "-c", script, *(str(p) for p, _ in files.values())],
        check=True,
        cwd=tmp_path,
        capture_output=True,
    )
    for kind, (_, marker) in files.items():
        assert marker.exists(), f"payload {kind} did not run: the test would prove nothing"


# --- where a user (or an attacker) puts the file -------------------------------------------------


def tiny_config_yaml(path: Path) -> None:
    cfg = apply_overrides(layered_config("digits", "full"), TINY_OVERRIDES)
    path.write_text(json.dumps(cfg.to_dict()))  # JSON is YAML


def plant(tmp_path: Path, kind: str, placement: str) -> tuple[Path, Path, Path]:
    """Write payload ``kind`` where ``placement`` says; return (path to pass, run folder, marker)."""
    marker = tmp_path / "pwned"
    payload = payloads(marker, tmp_path / "scratch")[kind]
    run = tmp_path / "run"
    folder = run / "checkpoints"
    folder.mkdir(parents=True)
    tiny_config_yaml(run / "config.yaml")
    if placement == "model.pt":
        target = run / "model.pt"
        target.write_bytes(payload)
        return target, run, marker
    if placement == "weights.safetensors":
        target = run / "weights.safetensors"
        target.write_bytes(payload)
        return target, run, marker
    if placement == "checkpoint-tensors":
        # the attacker also forges a sidecar that vouches for the pickle (right sha256, a sidecar
        # checksum of its own): the checksums pass, the content is still refused
        real = ckpt.save_checkpoint(tmp_path / "donor", 7, nn.Linear(2, 2))
        target = folder / "step_00000007.safetensors"
        target.write_bytes(payload)
        sidecar = json.loads(real.with_suffix(".json").read_text())
        sidecar["sha256"] = sha256_file(target)
        sidecar.pop(ckpt.SIDECAR_CHECKSUM, None)
        sidecar[ckpt.SIDECAR_CHECKSUM] = ckpt.sidecar_checksum(sidecar)
        (folder / "step_00000007.json").write_text(json.dumps(sidecar))
        return run, run, marker
    if placement == "checkpoint-sidecar":
        real = ckpt.save_checkpoint(tmp_path / "donor", 7, nn.Linear(2, 2))
        real.replace(folder / "step_00000007.safetensors")
        (folder / "step_00000007.json").write_bytes(payload)
        return run, run, marker
    raise AssertionError(placement)


PLACEMENTS = ["model.pt", "weights.safetensors", "checkpoint-tensors", "checkpoint-sidecar"]


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("kind", KINDS)
def test_library_loaders_refuse(tmp_path: Path, no_unpickling, kind: str, placement: str) -> None:
    path, run, marker = plant(tmp_path, kind, placement)
    # a run folder: the bad checkpoint is reported (warning), skipped, and nothing else is left
    skipped = pytest.warns(UserWarning, match="skipping") if path == run else nullcontext()
    with skipped, pytest.raises(CheckpointError) as raised:
        ckpt.load_latest(path)
    assert path.name in str(raised.value) or "step_00000007" in str(raised.value)
    skipped = pytest.warns(UserWarning, match="skipping") if path == run else nullcontext()
    with skipped, pytest.raises(CheckpointError):
        Translator.from_checkpoint(path, device="cpu")
    if path.is_file():
        with pytest.raises(CheckpointError):
            ckpt.load_checkpoint(path)
    assert not marker.exists()


def test_refusal_says_why(tmp_path: Path, no_unpickling) -> None:
    """A torch.save file gets a message that tells the user what happened and what we accept."""
    path, _, marker = plant(tmp_path, "torch.save-zip", "model.pt")
    with pytest.raises(CheckpointError, match=r"pickle.*never unpickles.*arbitrary code"):
        ckpt.load_latest(path)
    path, _, marker = plant(tmp_path / "b", "system-pickle-p2", "weights.safetensors")
    with pytest.raises(CheckpointError, match="pickle"):
        ckpt.load_latest(path)
    assert not marker.exists()


# --- through the command line, as a user would run it --------------------------------------------


@pytest.fixture
def source_png(tmp_path: Path) -> Path:
    path = tmp_path / "seven.png"
    Image.new("RGB", (16, 16), (200, 200, 200)).save(path)
    return path


@contextmanager
def quiet():
    """load_latest warns for each bad checkpoint it skips; the CLI tests judge only the exit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def assert_refused(code: int, capsys: pytest.CaptureFixture, marker: Path) -> None:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err, err
    assert not marker.exists()


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("kind", ["system-pickle-p2", "torch.save-zip"])
def test_cli_refuses(
    tmp_path: Path,
    tiny_data: Path,
    source_png: Path,
    capsys,
    no_unpickling,
    kind: str,
    placement: str,
) -> None:
    path, run, marker = plant(tmp_path, kind, placement)
    out = tmp_path / "out"
    with quiet():
        code = main(
            [
                *("translate", "--checkpoint", str(path), "--input", str(source_png)),
                *("--out", str(out), "--device", "cpu"),
            ]
        )
    assert_refused(code, capsys, marker)
    assert not out.exists() or not any(out.iterdir())
    with quiet():
        code = main(
            [
                *("evaluate", "--checkpoint", str(path), "--out", str(tmp_path / "m.json")),
                *("--data", str(tiny_data), "--device", "cpu"),
            ]
        )
    assert_refused(code, capsys, marker)
    assert not (tmp_path / "m.json").exists()
    if placement.startswith("checkpoint-"):  # what --resume picks up from the run folder
        with quiet():
            code = main(
                [
                    *("train", "--resume", "--out", str(run), "--data", str(tiny_data)),
                    "--no-progress",
                ]
            )
        assert_refused(code, capsys, marker)


def test_cli_in_a_real_process(tmp_path: Path, source_png: Path) -> None:
    """The installed entry point, no test harness in between: exit 2, one line, no payload."""
    path, _, marker = plant(tmp_path, "system-pickle-p2", "model.pt")
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "m3dgan", "translate", "--checkpoint", str(path)),
            *("--input", str(source_png), "--out", str(tmp_path / "out"), "--device", "cpu"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert "pickle" in proc.stderr
    assert not marker.exists()


# --- configs are files a user hands us too --------------------------------------------------------


YAML_EXPLOITS = [
    "!!python/object/apply:os.system ['echo pwned > {marker}']",
    "train: !!python/object/apply:os.system ['echo pwned > {marker}']",
    "!!python/object/new:type\n  args: ['x', !!python/tuple [], {{}}]\n",
    "task: !!python/name:os.system\n",
]


@pytest.mark.parametrize("text", YAML_EXPLOITS)
def test_yaml_configs_cannot_run_code(tmp_path: Path, capsys, text: str) -> None:
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    config.write_text(text.format(marker=marker))
    with pytest.raises(ConfigError, match="evil.yaml"):
        load_config(config)
    code = main(["train", "--config", str(config), "--out", str(tmp_path / "run")])
    assert_refused(code, capsys, marker)
    run = tmp_path / "resumed"
    run.mkdir()
    (run / "config.yaml").write_text(text.format(marker=marker))
    assert_refused(main(["train", "--resume", "--out", str(run)]), capsys, marker)
