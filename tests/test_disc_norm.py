"""``model.disc_norm``: spectral normalisation in the image discriminators."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import TINY_OVERRIDES, set_args, tiny_model_config
from torch import nn

from m3dgan.cli import main
from m3dgan.infer import Translator
from m3dgan.modalities.image.nets import ImageDiscriminator

pytestmark = pytest.mark.usefixtures("isolated_env")


def _convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def test_spectral_discriminator_has_unit_norm_weights_and_no_instance_norm() -> None:
    torch.manual_seed(0)
    disc = ImageDiscriminator(3, 1, 16, tiny_model_config(disc_norm="spectral"))
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in disc.modules())
    convs = _convs(disc)
    assert convs and all(nn.utils.parametrize.is_parametrized(c, "weight") for c in convs)
    for _ in range(30):  # power iterations run in train-mode forwards
        disc(torch.randn(2, 3, 16, 16), torch.randn(2, 1, 16, 16))
    for conv in convs:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
        assert sigma == pytest.approx(1.0, abs=0.05)
    plain = ImageDiscriminator(3, 1, 16, tiny_model_config())
    assert any(isinstance(m, nn.InstanceNorm2d) for m in plain.modules())
    assert not any(nn.utils.parametrize.is_parametrized(c, "weight") for c in _convs(plain))


def test_a_run_with_spectral_norm_trains_saves_and_translates(tmp_path: Path, tiny_data: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "--task", "edges2emoji", "--data", str(tiny_data), "--out", str(run)]
    assert main([*args, "--steps", "2", "--no-progress", *set_args(TINY_OVERRIDES),
                 "--set", "model.disc_norm=spectral"]) == 0  # fmt: skip
    translator = Translator.from_checkpoint(run)
    assert translator.cfg.model.disc_norm == "spectral"
    bad = ["--steps", "2", "--no-progress", "--set", "model.disc_norm=batch"]
    assert main([*args[:-1], str(tmp_path / "bad"), *bad]) == 2
