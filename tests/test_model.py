"""The M3DGAN model: shapes and ranges for every objective, the universal attention module
(reference encoder + universal token layer) and the ways a domain can be chosen at inference."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model_config

from m3dgan.core.attention import (
    Posterior,
    ReferenceEncoder,
    UniversalAttention,
    UniversalTokenLayer,
)
from m3dgan.core.model import M3DGAN
from m3dgan.core.objectives import OBJECTIVES, get_objective
from m3dgan.errors import ConfigError
from m3dgan.modalities import ModalitySpec, get_modality, modality_for
from m3dgan.modalities.image.nets import downsample_plan

pytestmark = pytest.mark.usefixtures("isolated_env")

TOKEN_OBJECTIVES = [name for name, o in OBJECTIVES.items() if o.tokens]
NO_TOKEN_OBJECTIVES = [name for name, o in OBJECTIVES.items() if not o.tokens]
Z_OBJECTIVES = [name for name, o in OBJECTIVES.items() if o.uses_z]


def build(objective: str, cs: int = 1, ct: int = 3, size: int = 16, **cfg) -> M3DGAN:
    torch.manual_seed(0)
    model = M3DGAN(
        ModalitySpec("image", cs, size),
        ModalitySpec("image", ct, size),
        get_objective(objective),
        tiny_model_config(**cfg),
    )
    return model.eval()


def images(n: int, c: int, size: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, size, size, generator=gen) * 2 - 1


def assert_image_batch(x: torch.Tensor, shape: tuple[int, ...]) -> None:
    assert tuple(x.shape) == shape
    assert torch.isfinite(x).all()
    assert x.min() >= -1.0 and x.max() <= 1.0


def test_objective_table_matches_the_ablation() -> None:
    assert list(OBJECTIVES) == [
        "pix2pix",
        "cvae-gan",
        "bicycle",
        "vae",
        "vae+lat",
        "full",
        "full-noatt",
        "mle",
        "gst",
    ]
    assert not OBJECTIVES["pix2pix"].uses_z
    assert OBJECTIVES["full"].tokens and OBJECTIVES["full"].distance
    assert not OBJECTIVES["full-noatt"].tokens and OBJECTIVES["full-noatt"].distance
    with pytest.raises(ConfigError, match="unknown objective"):
        get_objective("cyclegan")


# --- every objective: shapes and ranges -------------------------------------------------------


@pytest.mark.parametrize("objective", list(OBJECTIVES))
@pytest.mark.parametrize(("cs", "ct", "size"), [(1, 3, 16), (3, 1, 32)])
def test_shapes_and_range_for_every_objective(objective: str, cs: int, ct: int, size: int) -> None:
    model = build(objective, cs, ct, size)
    obj = OBJECTIVES[objective]
    source, target = images(2, cs, size), images(2, ct, size, seed=1)

    # discriminators: conditional, patch scores, one per branch
    scores = model.disc_enc(source, target)
    assert scores.ndim == 4 and scores.shape[:2] == (2, 1)
    assert (model.disc_rand is not None) == obj.random_branch

    # default: e ~ N(0, I) (or no z at all for pix2pix)
    assert_image_batch(model.translate(source), (2, ct, size, size))

    if not obj.uses_z:
        assert model.attention is None and model.z_dim == 0
        assert_image_batch(model.generate(source, None), (2, ct, size, size))
        return

    expected_z = model.cfg.domain_dim if obj.tokens else model.cfg.nz
    assert model.z_dim == expected_z
    e = model.sample_e(2)
    assert e.shape == (2, model.cfg.nz)
    z = model.embed(e)
    assert z.shape == (2, expected_z)
    assert_image_batch(model.generate(source, z), (2, ct, size, size))
    assert_image_batch(model.translate(source, reference=target), (2, ct, size, size))
    assert_image_batch(model.translate(source, e=e), (2, ct, size, size))
    # one e (or one token-weight row) for the whole batch is broadcast
    assert_image_batch(model.translate(source, e=e[:1]), (2, ct, size, size))
    if obj.tokens:
        w = torch.softmax(torch.randn(2, model.cfg.num_tokens), dim=-1)
        assert_image_batch(model.translate(source, token_weights=w), (2, ct, size, size))
        assert_image_batch(model.translate(source, token_weights=w[:1]), (2, ct, size, size))
        per_head = torch.softmax(torch.randn(2, model.cfg.token_heads, model.cfg.num_tokens), -1)
        assert_image_batch(model.translate(source, token_weights=per_head), (2, ct, size, size))


@pytest.mark.parametrize("objective", ["pix2pix", "full"])
@pytest.mark.parametrize("size", [48, 24])
def test_sizes_that_are_not_powers_of_two(objective: str, size: int) -> None:
    model = build(objective, 3, 3, size, gen_blocks=6)
    out = model.translate(images(1, 3, size))
    assert_image_batch(out, (1, 3, size, size))


def test_downsample_plan_halves_only_even_maps_of_at_least_8() -> None:
    assert downsample_plan(32, 6) == [2, 2, 2, 1, 1, 1]
    assert downsample_plan(48, 6) == [2, 2, 2, 1, 1, 1]  # 48 -> 24 -> 12 -> 6
    assert downsample_plan(128, 6) == [2, 2, 2, 2, 2, 1]
    assert downsample_plan(20, 3) == [2, 2, 1]  # 20 -> 10 -> 5, odd: kept


def test_resize_upsampling_replaces_every_strided_deconvolution() -> None:
    """``model.upsample = "resize"``: nearest ×2 + 3×3 conv in every up block (no transposed
    conv of stride 2 left, the checkerboard's source); same shapes, and gradients reach it."""
    from torch import nn

    side = ModalitySpec("image", 3, 32)
    for how, strided_deconvs in (("deconv", 2), ("resize", 0)):  # tiny: 2 blocks, both ×2
        model = M3DGAN(side, side, get_objective("full"), tiny_model_config(upsample=how))
        found = [
            m
            for m in model.generator.modules()
            if isinstance(m, nn.ConvTranspose2d) and m.stride == (2, 2)
        ]
        assert len(found) == strided_deconvs, how
        assert sum(isinstance(m, nn.Upsample) for m in model.generator.modules()) == (
            2 if how == "resize" else 0
        )
        x = torch.rand(2, 3, 32, 32) * 2 - 1
        out = model.translate(x)
        assert out.shape == (2, 3, 32, 32)
        z = model.embed(model.sample_e(2))
        model.generate(x, z).square().mean().backward()
        assert all(p.grad is not None for p in model.generator.up.parameters())


def test_image_generator_refuses_sources_of_another_size() -> None:
    with pytest.raises(ValueError, match="one size"):
        target = modality_for(ModalitySpec("image", 3, 16))
        target.build_generator(modality_for(ModalitySpec("image", 3, 32)), 0, tiny_model_config())
    with pytest.raises(ValueError, match="unknown modality"):
        get_modality("smell")


def test_generator_and_discriminator_parameters_partition_the_model() -> None:
    model = build("full")
    g = {id(p) for p in model.generator_parameters()}
    d = {id(p) for p in model.discriminator_parameters()}
    assert g and d and not g & d
    assert g | d == {id(p) for p in model.parameters()}
    assert {id(p) for p in model.attention.parameters()} <= g
    assert {id(p) for p in model.disc_rand.parameters()} <= d


# --- pix2pix: no attention, z is ignored ---------------------------------------------------------


def test_pix2pix_has_no_attention_and_ignores_z() -> None:
    model = build("pix2pix")
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.startswith(("attention.", "reference_prenet.")) for n in names)
    assert model.reference_prenet is None and model.disc_rand is None
    source = images(2, 1, 16)
    base = model.generate(source, None)
    # the generator was built with z_dim = 0: no FiLM layer has a z projection
    assert all(
        m.to_scale_shift is None for m in model.generator.modules() if hasattr(m, "to_scale_shift")
    )
    assert torch.equal(model.generate(source, torch.randn(2, 8)), base)
    assert torch.equal(model.translate(source), base)
    assert torch.equal(model.translate(source, e=torch.randn(2, 4)), base)
    with pytest.raises(RuntimeError, match="no reference encoder"):
        model.encode(images(2, 3, 16))


# --- inference: reference, e, token weights, random -----------------------------------------------


@pytest.mark.parametrize("objective", Z_OBJECTIVES)
def test_z_changes_the_output(objective: str) -> None:
    model = build(objective)
    source = images(1, 1, 16).expand(2, -1, -1, -1)
    e = torch.stack([torch.full((4,), -2.0), torch.full((4,), 2.0)])
    out = model.translate(source, e=e)
    assert (out[0] - out[1]).abs().mean() > 1e-4


def test_reference_uses_the_posterior_mean() -> None:
    model = build("full")
    source, reference = images(2, 1, 16), images(2, 3, 16, seed=7)
    out = model.translate(source, reference=reference)
    assert torch.equal(out, model.translate(source, reference=reference))  # deterministic
    with torch.no_grad():
        expected = model.generate(source, model.embed(model.encode(reference).mu))
    torch.testing.assert_close(out, expected)


def test_random_domains_follow_the_generator() -> None:
    model = build("full")
    source = images(3, 1, 16)
    a = model.translate(source, generator=torch.Generator().manual_seed(1))
    b = model.translate(source, generator=torch.Generator().manual_seed(1))
    c = model.translate(source, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_token_weights_select_a_domain() -> None:
    model = build("full")
    source = images(2, 1, 16)
    one_hot = torch.eye(model.cfg.num_tokens)[:2]
    out = model.translate(source, token_weights=one_hot)
    with torch.no_grad():
        expected = model.generate(source, model.attention.tokens.from_weights(one_hot))
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize(
    "objective",
    [name for name in NO_TOKEN_OBJECTIVES],
)
def test_objectives_without_tokens_reject_token_weights(objective: str) -> None:
    model = build(objective)
    with pytest.raises(ValueError, match="token"):
        model.translate(images(1, 1, 16), token_weights=torch.ones(1, 4) / 4)


# --- universal token layer ------------------------------------------------------------------------


def test_utl_weights_are_a_softmax_over_tokens_per_head() -> None:
    torch.manual_seed(0)
    utl = UniversalTokenLayer(query_dim=4, num_tokens=5, heads=2, out_dim=8)
    w = utl.attention_weights(torch.randn(3, 4) * 5)
    assert w.shape == (3, 2, 5)
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(dim=-1), torch.ones(3, 2))
    # forward = weighted sum with those weights
    q = torch.randn(3, 4)
    torch.testing.assert_close(utl(q), utl.from_weights(utl.attention_weights(q)))
    assert utl(q).shape == (3, 8)


def test_one_hot_token_weights_give_the_value_projected_token() -> None:
    torch.manual_seed(0)
    utl = UniversalTokenLayer(query_dim=4, num_tokens=5, heads=2, out_dim=8)
    with torch.no_grad():
        values = utl.value(torch.tanh(utl.tokens))  # [K, D]
        for k in range(5):
            z = utl.from_weights(torch.nn.functional.one_hot(torch.tensor([k]), 5).float())
            torch.testing.assert_close(z[0], values[k])
        # per-head weights: head 0 takes token 1, head 1 takes token 3
        w = torch.zeros(1, 2, 5)
        w[0, 0, 1] = w[0, 1, 3] = 1.0
        z = utl.from_weights(w)[0]
        torch.testing.assert_close(z[:4], values[1, :4])
        torch.testing.assert_close(z[4:], values[3, 4:])
        # weights are linear: a mix of two tokens is the mix of their values
        mix = torch.zeros(1, 5)
        mix[0, 0], mix[0, 2] = 0.25, 0.75
        torch.testing.assert_close(utl.from_weights(mix)[0], 0.25 * values[0] + 0.75 * values[2])


def test_utl_validates_shapes() -> None:
    utl = UniversalTokenLayer(query_dim=4, num_tokens=5, heads=2, out_dim=8)
    with pytest.raises(ValueError, match="token weights"):
        utl.from_weights(torch.ones(1, 4))
    with pytest.raises(ValueError, match="divisible"):
        UniversalTokenLayer(query_dim=4, num_tokens=5, heads=3, out_dim=8)


def test_universal_attention_without_tokens_passes_e_through() -> None:
    enc = ReferenceEncoder(4, nz=6, channels=(4, 4, 8, 8), gru_units=8, freq_size=16)
    att = UniversalAttention(enc, nz=6, use_tokens=False)
    e = torch.randn(2, 6)
    assert att.tokens is None and att.domain_dim == 6
    assert torch.equal(att.embed(e), e)
    att = UniversalAttention(enc, nz=6, use_tokens=True, domain_dim=8, heads=2, num_tokens=3)
    assert att.domain_dim == 8 and att.embed(e).shape == (2, 8)


# --- reference encoder ----------------------------------------------------------------------------


@pytest.mark.parametrize(("freq", "time", "time_stride"), [(16, 16, 2), (32, 32, 2), (16, 20, 1)])
def test_reference_encoder_posterior_shapes(freq: int, time: int, time_stride: int) -> None:
    torch.manual_seed(0)
    enc = ReferenceEncoder(
        3, nz=5, channels=(4, 4, 8, 8), gru_units=8, freq_size=freq, time_stride=time_stride
    )
    post = enc(torch.randn(2, 3, freq, time))
    assert isinstance(post, Posterior)
    assert post.mu.shape == post.logvar.shape == (2, 5)
    assert (post.logvar >= -10).all() and (post.logvar <= 10).all()
    # the model's reference path, through its prenet
    model = build("full")
    post = model.encode(images(3, 3, 16))
    assert post.mu.shape == post.logvar.shape == (3, model.cfg.nz)


def test_posterior_sampling_is_reparameterised() -> None:
    mu, logvar = torch.randn(4, 3), torch.full((4, 3), -20.0)
    assert torch.allclose(Posterior(mu, logvar).sample(), mu, atol=1e-3)  # σ ≈ 0 → μ
    post = Posterior(torch.zeros(2000, 3), torch.full((2000, 3), 2 * torch.log(torch.tensor(3.0))))
    s = post.sample(torch.Generator().manual_seed(0))
    assert abs(s.std().item() - 3.0) < 0.2  # σ = 3
    a = post.sample(torch.Generator().manual_seed(5))
    b = post.sample(torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    # gradients reach μ and log σ² through the sample
    mu = torch.zeros(2, 3, requires_grad=True)
    lv = torch.zeros(2, 3, requires_grad=True)
    Posterior(mu, lv).sample().sum().backward()
    assert mu.grad is not None and lv.grad is not None and lv.grad.abs().sum() > 0
