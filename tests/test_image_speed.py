"""The speed paths of the image subnets compute what the plain formulation computes, at every
size that is a multiple of 16, in fp32 and in the fast recipe (bf16 autocast + channels_last);
and the throughput benchmark's row runner works (on a tiny model)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_OVERRIDES, tiny_model_config
from torch.nn import functional as F

from m3dgan.config import LossConfig
from m3dgan.core.model import M3DGAN
from m3dgan.core.objectives import get_objective
from m3dgan.core.state import RunState
from m3dgan.core.step import TrainStep
from m3dgan.modalities import ModalitySpec
from m3dgan.modalities.image.nets import FiLM, ImageGenerator, instance_norm_affine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import throughput  # noqa: E402

pytestmark = pytest.mark.usefixtures("isolated_env")


def reference_film(film: FiLM, x: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
    """The textbook AdaIN: instance norm, learned affine, then z's scale and shift."""
    h = F.instance_norm(x, eps=film.eps) * film.weight + film.bias
    if film.to_scale_shift is not None and z is not None:
        scale, shift = film.to_scale_shift(z)[:, :, None, None].chunk(2, dim=1)
        h = h * (1 + scale) + shift
    return h


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("z_dim", [0, 6])
def test_film_matches_instance_norm_then_affine(layout: str, z_dim: int) -> None:
    torch.manual_seed(0)
    film = FiLM(5, z_dim)
    with torch.no_grad():  # non-trivial learned affine
        film.weight.normal_()
        film.bias.normal_()
    x = (torch.randn(3, 5, 8, 12) * 4 + 2).requires_grad_()
    z = torch.randn(3, z_dim) if z_dim else None
    xin = x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x
    got = film(xin, z)
    want = reference_film(film, x, z)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    if layout == "channels_last":
        assert got.is_contiguous(memory_format=torch.channels_last)  # the layout is kept
    grad = torch.randn_like(want)
    params = [x, film.weight, film.bias, *film.parameters()]
    got_grads = torch.autograd.grad(got, params, grad, allow_unused=True)
    want_grads = torch.autograd.grad(want, params, grad, allow_unused=True)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def test_instance_norm_affine_per_sample() -> None:
    """Each sample gets its own gain and offset; statistics never mix across samples."""
    x = torch.randn(2, 3, 4, 4)
    x[1] *= 100  # a second sample on another scale must not change the first one's result
    gain, offset = torch.rand(2, 3) + 0.5, torch.randn(2, 3)
    out = instance_norm_affine(x, gain, offset)
    alone = instance_norm_affine(x[:1], gain[:1], offset[:1])
    torch.testing.assert_close(out[:1], alone)
    torch.testing.assert_close(out.mean(dim=(2, 3)), offset, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [48, 80, 112])
@pytest.mark.parametrize("recipe", ["fp32", "bf16+cl"])
def test_train_step_at_multiples_of_16(size: int, recipe: str) -> None:
    """Sizes that are not powers of two: the paper's 6 + 6 blocks, one full training step."""
    fast = recipe == "bf16+cl"
    torch.manual_seed(0)
    side = ModalitySpec("image", 3, size)
    model = M3DGAN(side, side, get_objective("full"), tiny_model_config(gen_blocks=6))
    gen = model.generator
    assert isinstance(gen, ImageGenerator) and len(gen.down) == len(gen.up) == 6
    s, t = torch.rand(2, 3, size, size) * 2 - 1, torch.rand(2, 3, size, size) * 2 - 1
    if fast:
        model = model.to(memory_format=torch.channels_last)
        s = s.contiguous(memory_format=torch.channels_last)
        t = t.contiguous(memory_format=torch.channels_last)
    opt_g = torch.optim.Adam(model.generator_parameters(), fused=True)
    opt_d = torch.optim.Adam(model.discriminator_parameters(), fused=True)
    state = RunState(model, opt_g, opt_d, torch.Generator())
    step = TrainStep(state, LossConfig(), autocast_dtype=torch.bfloat16 if fast else None)
    before = [p.detach().clone() for p in model.parameters()]
    logs = step(s, t)
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    moved = sum(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    assert moved > 0.9 * len(before)
    out = model.translate(s[:1])
    assert out.shape == (1, 3, size, size) and out.dtype == torch.float32


def test_benchmark_row_runs_and_reports() -> None:
    """The benchmark's row runner end to end, on a tiny model, in this process."""
    spec = {
        "device": "cpu",
        "threads": 1,
        "objective": "full",
        "size": 32,
        "batch": 2,
        "amp": True,
        "channels_last": True,
        "warmup": 1,
        "min_steps": 1,
        "min_seconds": 0.0,
        "max_steps": 1,
        "overrides": [o for o in TINY_OVERRIDES if o.startswith("model.")],
        "label": "tiny",
    }
    row = throughput.run_row(spec)
    assert row["timed_steps"] == 1 and row["images_per_s"] > 0
    assert row["gflop_per_image"] > 0 and row["peak_rss_mb"] > 0
    row = throughput.add_ratios(row, {"fp32": 100.0, "bf16": 400.0})
    assert row["fraction_bf16_matmul"] == pytest.approx(row["fraction_fp32_matmul"] / 4)
    assert "vs_reference" not in row  # the reference point is 128×128 only
    assert "| tiny |" in throughput.table([row])
