"""DiffAugment (``loss.diffaugment``, ``m3dgan.core.augment``): what each policy does to a
(source, image) pair, that gradients pass, and that the switch reaches the discriminators."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import TINY_OVERRIDES, set_args

from m3dgan.cli import main
from m3dgan.config import layered_config
from m3dgan.core import augment
from m3dgan.core.step import judge
from m3dgan.errors import ConfigError

pytestmark = pytest.mark.usefixtures("isolated_env")


def _pair(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """A source whose pixels are the image's, stacked 3 times: alignment is checkable."""
    torch.manual_seed(0)
    image = torch.rand(n, 1, 16, 16) * 2 - 1
    return image.repeat(1, 3, 1, 1), image


def test_off_returns_the_inputs() -> None:
    source, image = _pair()
    out_s, out_i = augment.augment_pair(source, image, ())
    assert out_s is source and out_i is image


def test_geometric_policies_move_source_and_image_alike() -> None:
    source, image = _pair()
    out_s, out_i = augment.augment_pair(source, image, ("translation", "cutout"))
    assert not torch.equal(out_i, image)  # something moved or was cut
    for c in range(3):
        assert torch.equal(out_s[:, c : c + 1], out_i)  # the condition stays aligned
    assert (out_i == 0).float().mean() > 0.2  # cutout zeroes a quarter, shifts fill zeros


def _shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``image`` [H, W] moved down by dy and right by dx, zeros where nothing was."""
    out = torch.zeros_like(image)
    h, w = image.shape
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def test_translation_is_a_whole_pixel_shift_within_the_ratio() -> None:
    torch.manual_seed(3)
    x = torch.arange(64.0).view(1, 1, 8, 8).repeat(6, 1, 1, 1) + 1
    moved = augment.translation(x, ratio=0.25)  # up to 2 pixels each way
    shifts = []
    for i in range(6):
        found = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(moved[i, 0], _shifted(x[i, 0], dy, dx))
        ]
        assert len(found) == 1  # exactly one whole-pixel shift in range explains the image
        shifts.append(found[0])
    assert len(set(shifts)) > 1  # each image draws its own shift


def test_color_changes_only_the_judged_image_and_passes_gradients() -> None:
    source, image = _pair()
    image.requires_grad_(True)
    out_s, out_i = augment.augment_pair(source, image, ("color",))
    assert out_s is source and not torch.allclose(out_i, image)
    out_i.sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0


def test_a_text_condition_passes_unchanged() -> None:
    ids = torch.randint(0, 10, (4, 7))
    image = torch.rand(4, 3, 16, 16)
    out_s, out_i = augment.augment_pair(ids, image, ("translation", "cutout", "color"))
    assert out_s is ids and out_i.shape == image.shape


def test_the_discriminator_sees_augmented_pairs() -> None:
    seen: list[torch.Tensor] = []

    def disc(s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        return x.mean()

    source, image = _pair()
    judge(disc, source, image, ())
    judge(disc, source, image, ("cutout",))
    assert torch.equal(seen[0], image) and not torch.equal(seen[1], image)


def test_bad_policies_are_config_errors(tmp_path: Path, tiny_data: Path) -> None:
    with pytest.raises(ConfigError, match="unknown policy \\['zoom'\\]"):
        layered_config(task="digits", overrides=["loss.diffaugment=color,zoom"])
    args = ["train", "--task", "edges2emoji", "--data", str(tiny_data), "--out", str(tmp_path / "r")]
    tiny = ["--steps", "2", "--no-progress", *set_args(TINY_OVERRIDES)]
    assert main([*args, *tiny, "--set", "loss.diffaugment=color,translation,cutout"]) == 0
    assert main([*args[:-1], str(tmp_path / "bad"), *tiny, "--set", "loss.diffaugment=zoom"]) == 2
