"""Checkpoints: exact round trips, pruning, damaged files, and refusing pickles for real."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import pytest
import torch
from conftest import synthetic_split, tiny_model_config
from safetensors.torch import save_file
from torch import nn

from m3dgan import checkpoint as ckpt
from m3dgan.config import LossConfig
from m3dgan.core.model import M3DGAN
from m3dgan.core.objectives import get_objective
from m3dgan.core.state import RunState
from m3dgan.core.step import TrainStep
from m3dgan.data.store import sha256_file, to_float
from m3dgan.errors import CheckpointError
from m3dgan.modalities import ModalitySpec

pytestmark = pytest.mark.usefixtures("isolated_env")


def make_run(channels_last: bool = False, fused: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    model = M3DGAN(
        ModalitySpec("image", 3, 16),
        ModalitySpec("image", 1, 16),
        get_objective("full"),
        tiny_model_config(),
    )
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    kw = {"lr": 2e-4, "betas": (0.5, 0.999), "fused": fused}
    opt_g = torch.optim.Adam(model.generator_parameters(), **kw)
    opt_d = torch.optim.Adam(model.discriminator_parameters(), **kw)
    noise = torch.Generator().manual_seed(seed + 1)
    step = TrainStep(RunState(model, opt_g, opt_d, noise), LossConfig())
    return model, opt_g, opt_d, noise, step


def batches(n: int, channels_last: bool = False):
    out = []
    for i in range(n):
        data = synthetic_split(4, 100 + i)
        s, t = to_float(data["source"]), to_float(data["target"])
        if channels_last:
            s = s.contiguous(memory_format=torch.channels_last)
            t = t.contiguous(memory_format=torch.channels_last)
        out.append((s, t))
    return out


def save_run(run_dir: Path, step: int, model, opt_g, opt_d, noise, keep: int = 3, **meta) -> Path:
    return ckpt.save_checkpoint(
        run_dir,
        step,
        model,
        optimizers={"g": opt_g, "d": opt_d},
        rng={"noise": noise.get_state(), "torch": torch.get_rng_state()},
        meta=meta,
        keep=keep,
    )


def small_checkpoint(run_dir: Path, step: int, keep: int = 3, value: float = 0.0) -> Path:
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.fill_(value)
    return ckpt.save_checkpoint(run_dir, step, model, keep=keep)


# --- round trip -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channels_last", "fused"), [(False, False), (True, True)], ids=["plain", "channels_last-fused"]
)
def test_round_trip_is_exact_and_training_continues_identically(
    tmp_path: Path, channels_last: bool, fused: bool
) -> None:
    data = batches(4, channels_last)
    # reference: four uninterrupted steps
    model, opt_g, opt_d, noise, step = make_run(channels_last, fused)
    for s, t in data:
        step(s, t)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    # two steps, save, fresh objects, load, two more steps
    model, opt_g, opt_d, noise, step = make_run(channels_last, fused)
    for s, t in data[:2]:
        step(s, t)
    torch.manual_seed(1234)
    rng_before = torch.get_rng_state()
    path = save_run(tmp_path, 2, model, opt_g, opt_d, noise, note="hello")
    assert path == tmp_path / "checkpoints" / "step_00000002.safetensors"
    assert not list((tmp_path / "checkpoints").glob("*.tmp")) and not list(
        (tmp_path / "checkpoints").glob(".*")
    )

    c = ckpt.load_latest(tmp_path)
    assert c.step == 2 and c.meta["note"] == "hello"
    for k, v in model.state_dict().items():
        assert torch.equal(c.model_state()[k], v), k
    for name, opt in (("g", opt_g), ("d", opt_d)):
        saved, live = c.optimizer_state(name), opt.state_dict()
        assert saved["state"].keys() == live["state"].keys() and live["state"]
        for i, entry in live["state"].items():
            for key, value in entry.items():
                assert torch.equal(saved["state"][i][key], value), (name, i, key)
        assert [g["params"] for g in saved["param_groups"]] == [
            g["params"] for g in live["param_groups"]
        ]
        assert saved["param_groups"][0]["lr"] == live["param_groups"][0]["lr"]
    assert torch.equal(c.rng_state("noise"), noise.get_state())
    assert torch.equal(c.rng_state("torch"), rng_before)
    assert c.rng_state("missing") is None

    model2, opt_g2, opt_d2, noise2, step2 = make_run(channels_last, fused, seed=99)
    model2.load_state_dict(c.model_state())
    c.restore_optimizer("g", opt_g2)
    c.restore_optimizer("d", opt_d2)
    noise2.set_state(c.rng_state("noise"))
    for s, t in data[2:]:
        step2(s, t)
    differ = [k for k, v in model2.state_dict().items() if not torch.equal(v, expected[k])]
    assert not differ, f"{len(differ)} tensors differ after resuming, e.g. {differ[:3]}"


def test_restore_optimizer_gives_moments_the_parameter_layout(tmp_path: Path) -> None:
    model, opt_g, opt_d, noise, step = make_run(channels_last=True, fused=True)
    step(*batches(1, channels_last=True)[0])
    save_run(tmp_path, 1, model, opt_g, opt_d, noise)
    c = ckpt.load_latest(tmp_path)
    c.restore_optimizer("g", opt_g)
    four_d = [p for p in model.generator_parameters() if p.ndim == 4]
    assert four_d
    for p in four_d:
        assert opt_g.state[p]["exp_avg"].stride() == p.stride()
    with pytest.raises(CheckpointError, match="no state for optimizer 'x'"):
        c.optimizer_state("x")


def test_meta_cannot_overwrite_the_sidecars_own_fields(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    ckpt.save_checkpoint(
        tmp_path, 7, model, meta={"step": 999, "format": "evil", "sha256": "0", "config": {"a": 1}}
    )
    c = ckpt.load_latest(tmp_path)
    assert c.step == 7 and c.meta["format"] == ckpt.FORMAT and c.meta["config"] == {"a": 1}


# --- pruning --------------------------------------------------------------------------------------


def test_keep_last_k(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    for s in range(1, 6):
        small_checkpoint(tmp_path, s, keep=2, value=s)
    assert [p.name for p in ckpt.list_checkpoints(folder)] == [
        "step_00000004.json",
        "step_00000005.json",
    ]
    assert sorted(p.name for p in folder.glob("*.safetensors")) == [
        "step_00000004.safetensors",
        "step_00000005.safetensors",
    ]
    assert ckpt.load_latest(tmp_path).model_state()["weight"].eq(5).all()
    # keep <= 0 keeps everything
    for s in range(6, 9):
        small_checkpoint(tmp_path, s, keep=0)
    assert len(ckpt.list_checkpoints(folder)) == 5


def test_steps_sort_numerically_and_orphans_are_cleaned(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    small_checkpoint(tmp_path, 9)
    # a crash between the two renames leaves a tensor file without sidecar
    orphan = small_checkpoint(tmp_path, 10)
    orphan.with_suffix(".json").unlink()
    assert ckpt.load_latest(tmp_path).step == 9  # a checkpoint exists once its sidecar does
    small_checkpoint(tmp_path, 100)
    assert not orphan.exists()
    assert [ckpt.load_checkpoint(p).step for p in ckpt.list_checkpoints(folder)] == [9, 100]
    assert ckpt.resolve(tmp_path) == folder / "step_00000100.json"
    assert ckpt.resolve(folder) == folder / "step_00000100.json"


def test_no_checkpoints_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoints found"):
        ckpt.load_latest(tmp_path)
    with pytest.raises(CheckpointError, match="no such run folder"):
        ckpt.resolve(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="no such run folder"):
        ckpt.load_latest(tmp_path / "nowhere")


# --- damaged files --------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncate", "flip", "sidecar", "missing_tensors"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path: Path, damage: str) -> None:
    small_checkpoint(tmp_path, 1, value=1.0)
    newest = small_checkpoint(tmp_path, 2, value=2.0)
    sidecar = newest.with_suffix(".json")
    if damage == "truncate":
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
        message = "checksum mismatch"
    elif damage == "flip":
        raw = bytearray(newest.read_bytes())
        raw[-1] ^= 0xFF
        newest.write_bytes(bytes(raw))
        message = "checksum mismatch"
    elif damage == "sidecar":
        sidecar.write_text(sidecar.read_text()[:20])
        message = "damaged sidecar"
    else:
        newest.unlink()  # a sidecar without its tensors
        message = "incomplete checkpoint"
    with pytest.raises(CheckpointError, match=message):
        ckpt.load_checkpoint(sidecar)
    with pytest.warns(UserWarning, match=f"skipping damaged checkpoint.*{message}"):
        c = ckpt.load_latest(tmp_path)
    assert c.step == 1 and c.model_state()["weight"].eq(1).all()


def test_every_checkpoint_damaged(tmp_path: Path) -> None:
    path = small_checkpoint(tmp_path, 1)
    path.write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckpointError, match="no usable checkpoint.*checksum"):
            ckpt.load_latest(tmp_path)


def test_sidecar_problems(tmp_path: Path) -> None:
    path = small_checkpoint(tmp_path, 3)
    sidecar = path.with_suffix(".json")
    good = json.loads(sidecar.read_text())
    for bad, message in (
        ({**good, "format": "something-else"}, "not an m3dgan checkpoint sidecar"),
        ({**good, "version": 99}, "format version 99"),
        ({k: v for k, v in good.items() if k != "step"}, "bad 'step'"),
        ([1, 2, 3], "not an m3dgan checkpoint sidecar"),
    ):
        sidecar.write_text(json.dumps(bad))
        with pytest.raises(CheckpointError, match=message):
            ckpt.load_checkpoint(sidecar)
    sidecar.write_text(json.dumps(good))
    assert ckpt.load_checkpoint(path).step == 3  # by tensor path or by sidecar path
    assert ckpt.load_checkpoint(sidecar).step == 3


def test_safetensors_whose_header_length_starts_with_0x80_is_not_a_pickle(tmp_path: Path) -> None:
    """safetensors starts with a u64 header length; 128, 384, 640, ... begin with the byte 0x80,
    which is also pickle's protocol marker. Such checkpoints must load."""
    for n in range(1, 200):
        model = nn.Module()
        model.register_parameter("p" * n, nn.Parameter(torch.zeros(1)))
        path = ckpt.save_checkpoint(tmp_path / str(n), 1, model)
        if path.read_bytes()[:1] == b"\x80":
            break
    else:
        pytest.fail("no parameter name gave a header length starting with 0x80")
    c = ckpt.load_checkpoint(path)
    assert list(c.model_state()) == ["p" * n]


# --- pickles are refused, never unpickled ---------------------------------------------------------


class Evil:
    """Unpickling this object creates the marker file (a stand-in for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch):
    """Fail the test if anything calls pickle.load(s) or torch.load while it runs."""

    def forbidden(*args, **kwargs):
        raise AssertionError("something tried to unpickle a checkpoint")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)


def evil_payloads(marker: Path, tmp_path: Path) -> dict[str, bytes]:
    payloads = {f"pickle-protocol-{p}": pickle.dumps(Evil(marker), protocol=p) for p in (0, 2, 5)}
    torch_file = tmp_path / "evil_torch_save.pt"
    torch.save({"weights": Evil(marker)}, torch_file)
    payloads["torch.save"] = torch_file.read_bytes()
    return payloads


def test_the_payload_is_real(tmp_path: Path) -> None:
    """Guard against a test that passes because the payload is harmless."""
    probe = tmp_path / "probe_marker"
    for name, payload in evil_payloads(probe, tmp_path).items():
        if name == "torch.save":
            continue
        pickle.loads(payload).close()
        assert probe.exists(), name
        probe.unlink()


@pytest.mark.parametrize(
    "kind", ["pickle-protocol-0", "pickle-protocol-2", "pickle-protocol-5", "torch.save"]
)
@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt", ".safetensors", ".json"])
def test_malicious_pickle_is_refused(tmp_path: Path, no_unpickling, kind: str, suffix: str) -> None:
    marker = tmp_path / "pwned"
    payload = evil_payloads(marker, tmp_path)[kind]
    folder = tmp_path / "run" / "checkpoints"
    good = small_checkpoint(tmp_path / "run", 1, value=1.0)
    evil = folder / f"step_00000099{suffix}"
    evil.write_bytes(payload)
    if suffix == ".safetensors":
        # a sidecar that vouches for the pickle with its exact checksum
        sidecar = json.loads(good.with_suffix(".json").read_text())
        sidecar.update(step=99, sha256=sha256_file(evil))
        evil.with_suffix(".json").write_text(json.dumps(sidecar))
    elif suffix == ".json":
        good.with_suffix(".safetensors").replace(evil.with_suffix(".safetensors"))
        small_checkpoint(tmp_path / "run", 1, value=1.0)  # step 1 stays a good checkpoint

    with pytest.raises(CheckpointError):
        ckpt.load_checkpoint(evil)
    assert not marker.exists()
    if suffix in (".safetensors", ".json"):  # it is in the run's checkpoint list
        with pytest.warns(UserWarning, match="skipping damaged checkpoint"):
            c = ckpt.load_latest(tmp_path / "run")
        assert c.step == 1
    else:  # not a checkpoint name: ignored when loading a run
        assert ckpt.load_latest(tmp_path / "run").step == 1
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["pickle-protocol-2", "torch.save"])
def test_pickle_refusal_names_the_danger(tmp_path: Path, no_unpickling, kind: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    path.write_bytes(evil_payloads(marker, tmp_path)[kind])
    with pytest.raises(CheckpointError, match="pickle"):
        ckpt.load_checkpoint(path)
    with pytest.raises(CheckpointError, match="pickle"):
        ckpt.load_latest(path)
    assert not marker.exists()


def test_a_plain_safetensors_file_without_sidecar_is_incomplete(tmp_path: Path) -> None:
    path = tmp_path / "weights.safetensors"
    save_file({"model.weight": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="incomplete checkpoint"):
        ckpt.load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not an m3dgan checkpoint"):
        ckpt.load_checkpoint(tmp_path / "weights.bin")
