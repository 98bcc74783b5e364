"""Loss terms (eq. 1-8) and the training step: which parameters each update may touch,
the frozen encoder under latent regression, non-finite losses, and that latent regression
is learnable."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from conftest import synthetic_split, tiny_model_config
from torch import nn

from m3dgan.config import LossConfig, ModelConfig
from m3dgan.core import losses
from m3dgan.core import step as step_mod
from m3dgan.core.model import M3DGAN
from m3dgan.core.objectives import get_objective
from m3dgan.core.state import RunState
from m3dgan.core.step import NonFiniteLossError, TrainStep, frozen
from m3dgan.data.store import to_float
from m3dgan.modalities import ModalitySpec

pytestmark = pytest.mark.usefixtures("isolated_env")


# --- loss functions ------------------------------------------------------------------------------


def test_lsgan_loss() -> None:
    ones, zeros = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    assert losses.gan_loss(ones, True).item() == 0.0
    assert losses.gan_loss(zeros, False).item() == 0.0
    assert losses.gan_loss(zeros, True).item() == 1.0
    assert losses.gan_loss(torch.full((3,), 0.5), False).item() == pytest.approx(0.25)
    # the generator's loss is the "real" target, whatever for_discriminator says
    assert losses.gan_loss(zeros, True, for_discriminator=False).item() == 1.0


def test_vanilla_gan_loss_is_bce_on_logits() -> None:
    logits = torch.zeros(4)
    assert losses.gan_loss(logits, True, "vanilla").item() == pytest.approx(math.log(2))
    assert losses.gan_loss(torch.full((4,), 20.0), True, "vanilla").item() < 1e-6
    assert losses.gan_loss(torch.full((4,), 20.0), False, "vanilla").item() == pytest.approx(20.0)


def test_hinge_gan_loss() -> None:
    s = torch.tensor([2.0, 0.5, -0.5, -2.0])
    assert losses.gan_loss(s, True, "hinge").item() == pytest.approx((0 + 0.5 + 1.5 + 3) / 4)
    assert losses.gan_loss(s, False, "hinge").item() == pytest.approx((3 + 1.5 + 0.5 + 0) / 4)
    assert losses.gan_loss(s, True, "hinge", for_discriminator=False).item() == pytest.approx(0.0)
    assert losses.gan_loss(
        torch.tensor([1.0, 3.0]), True, "hinge", for_discriminator=False
    ).item() == pytest.approx(-2.0)


def test_unknown_gan_mode() -> None:
    with pytest.raises(ValueError, match="unknown gan_mode"):
        losses.gan_loss(torch.zeros(2), True, "wasserstein")


def test_kl_is_zero_at_the_prior_and_positive_elsewhere() -> None:
    zeros = torch.zeros(5, 4)
    assert losses.kl_divergence(zeros, zeros).item() == 0.0
    # KL(N(1, 1) || N(0, 1)) = 1/2 per dimension, summed over 4 dims
    assert losses.kl_divergence(torch.ones(5, 4), zeros).item() == pytest.approx(2.0)
    # variance alone: 0.5 * (σ² - 1 - log σ²) per dim
    lv = torch.full((5, 4), math.log(4.0))
    assert losses.kl_divergence(zeros, lv).item() == pytest.approx(4 * 0.5 * (4 - 1 - math.log(4)))
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        mu, logvar = torch.randn(3, 4, generator=gen), torch.randn(3, 4, generator=gen)
        assert losses.kl_divergence(mu, logvar).item() > 0


def test_latent_regression_is_mean_absolute_error() -> None:
    a = torch.tensor([[1.0, -1.0], [0.0, 2.0]])
    b = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
    assert losses.latent_regression(a, b).item() == pytest.approx((1 + 0 + 1 + 2) / 4)
    assert losses.latent_regression(a, a).item() == 0.0


def test_distance_ratio_is_output_distance_over_code_distance() -> None:
    ratio = losses.distance_ratio(
        torch.ones(2, 3), torch.zeros(2, 3), torch.ones(2, 2), -torch.ones(2, 2)
    )
    torch.testing.assert_close(ratio, torch.full((2,), 0.5))


@pytest.mark.parametrize("form", ["hinge", "mode-seeking"])
def test_distance_regularization_punishes_a_collapsed_generator(form: str) -> None:
    gen = torch.Generator().manual_seed(0)
    z_a, z_b = torch.randn(4, 8, generator=gen), torch.randn(4, 8, generator=gen)
    out = torch.rand(4, 3, 16, 16, generator=gen) * 2 - 1

    def loss(a, b):
        return losses.distance_regularization(a, b, z_a, z_b, form=form)

    collapsed, diverse = loss(out, out + 1e-4), loss(out, -out)
    assert collapsed > diverse >= 0
    if form == "mode-seeking":
        assert collapsed > 100 * diverse and collapsed <= 1 / 1e-5  # 1 / (ratio + ε)
    else:
        assert diverse == 0 and 0 < collapsed <= 0.2  # relu(τ − ratio), τ = 0.2
    # the gradient pushes the two outputs apart
    a = out.clone().requires_grad_()
    loss(a, out + 0.01).backward()
    assert a.grad is not None
    with torch.no_grad():
        assert loss(a - 0.1 * a.grad.sign(), out + 0.01) < loss(out, out + 0.01)
    with pytest.raises(ValueError, match="unknown distance form"):
        losses.distance_regularization(out, out, z_a, z_b, form="nope")


# --- helpers for the training step ----------------------------------------------------------------


def make_step(
    objective: str, seed: int = 0, lr: float = 2e-4, loss: LossConfig | None = None, **model_cfg
) -> TrainStep:
    torch.manual_seed(seed)
    model = M3DGAN(
        ModalitySpec("image", 3, 16),
        ModalitySpec("image", 1, 16),
        get_objective(objective),
        tiny_model_config(**model_cfg),
    )
    opt_g = torch.optim.Adam(model.generator_parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(model.discriminator_parameters(), lr=lr, betas=(0.5, 0.999))
    state = RunState(model, opt_g, opt_d, torch.Generator().manual_seed(seed))
    return TrainStep(state, loss or LossConfig())


def batch(n: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    data = synthetic_split(n, seed)
    return to_float(data["source"]), to_float(data["target"])


def snapshot(params) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def changed(before: list[torch.Tensor], params) -> list[bool]:
    return [not torch.equal(b, p.detach()) for b, p in zip(before, params, strict=True)]


# --- frozen --------------------------------------------------------------------------------------


def test_frozen_blocks_gradients_and_restores_requires_grad() -> None:
    a, b = nn.Linear(3, 3), nn.Linear(3, 1)
    b.bias.requires_grad_(False)  # already frozen before: must stay frozen after
    x = torch.randn(2, 3)
    with frozen(b, None):
        assert not any(p.requires_grad for p in b.parameters())
        b(a(x)).sum().backward()
    assert b.weight.requires_grad and not b.bias.requires_grad
    assert b.weight.grad is None and b.bias.grad is None
    assert a.weight.grad is not None and a.weight.grad.abs().sum() > 0  # gradient flows through b
    with pytest.raises(RuntimeError, match="boom"), frozen(a):
        raise RuntimeError("boom")
    assert all(p.requires_grad for p in a.parameters())


@pytest.mark.parametrize("objective", ["full", "bicycle"])
def test_latent_regression_sends_no_gradient_into_the_reference_encoder(
    objective: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # only the random branch counts (λ1 = λ3 = 0): its GAN term never touches Enc_r, so any
    # gradient on Enc_r would have come through the latent-regression term
    loss = LossConfig(lambda_1=0.0, lambda_3=0.0, lambda_lat=1.0)

    def encoder_grads(step: TrainStep) -> list[float]:
        m = step.model
        params = [*m.attention.encoder.parameters(), *m.reference_prenet.parameters()]
        return [0.0 if p.grad is None else p.grad.abs().sum().item() for p in params]

    step = make_step(objective, loss=loss)
    logs = step(*batch())
    assert logs["lat"] > 0
    assert max(encoder_grads(step)) == 0.0
    m = step.model
    gen_grads = [p.grad for p in m.generator.parameters() if p.grad is not None]
    assert gen_grads and sum(g.abs().sum().item() for g in gen_grads) > 0
    if objective == "full":  # the token layer is trained by the latent regression
        assert m.attention.tokens.tokens.grad is not None
        assert m.attention.tokens.tokens.grad.abs().sum() > 0
    assert all(p.requires_grad for p in m.parameters())  # frozen() restored everything

    # the test is sensitive: without freezing, the same step does reach Enc_r
    @__import__("contextlib").contextmanager
    def not_frozen(*modules):
        yield

    monkeypatch.setattr(step_mod, "frozen", not_frozen)
    step = make_step(objective, loss=loss)
    step(*batch())
    assert max(encoder_grads(step)) > 0.0


# --- which update touches which parameters -------------------------------------------------------


@pytest.mark.parametrize("objective", ["pix2pix", "full"])
def test_discriminator_step_changes_only_d_and_generator_step_leaves_d(objective: str) -> None:
    step = make_step(objective)
    m = step.model
    g_params, d_params = m.generator_parameters(), m.discriminator_parameters()
    g0, d0 = snapshot(g_params), snapshot(d_params)
    after_d: dict[str, list[torch.Tensor]] = {}
    original = step.opt_d.step

    def d_step_then_look(*args, **kwargs):
        out = original(*args, **kwargs)
        after_d["g"], after_d["d"] = snapshot(g_params), snapshot(d_params)
        return out

    step.opt_d.step = d_step_then_look
    step(*batch())
    assert after_d, "the discriminator optimizer never stepped"
    # right after the D update: every D tensor moved, no G tensor did
    assert all(changed(d0, after_d["d"]))
    assert not any(changed(g0, after_d["g"]))
    # the G update then moved G and left D exactly where the D update put it
    assert not any(changed(after_d["d"], d_params))
    assert sum(changed(g0, g_params)) > 0.9 * len(g_params)


def test_logs_name_every_term_of_the_objective() -> None:
    logs = make_step("full")(*batch())
    assert {"loss_D", "loss_G", "G_gan_enc", "rec", "kl", "G_gan_rand", "lat", "dist"} <= set(logs)
    assert all(math.isfinite(v) for v in logs.values())
    logs = make_step("pix2pix")(*batch())
    assert {"loss_D", "loss_G", "rec"} <= set(logs) and not {"kl", "lat", "dist"} & set(logs)
    logs = make_step("vae")(*batch())
    assert "kl" in logs and "lat" not in logs and "dist" not in logs


# --- non-finite losses ----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["source", "target"])
def test_nan_input_raises_and_changes_nothing(where: str) -> None:
    step = make_step("full")
    m = step.model
    params = list(m.parameters())
    before = snapshot(params)
    source, target = batch()
    (source if where == "source" else target)[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="loss is nan"):
        step(source, target)
    assert not any(changed(before, params))
    assert not step.opt_g.state and not step.opt_d.state  # no Adam moment was touched
    # and the step still works on good data afterwards
    assert math.isfinite(step(*batch())["loss_G"])


def test_non_finite_generator_loss_leaves_the_generator_untouched() -> None:
    """The D update of that step has happened (its loss was finite); G and E_att must not move."""
    step = make_step("full", loss=LossConfig(lambda_kl=float("inf")))
    params = step.model.generator_parameters()
    before = snapshot(params)
    with pytest.raises(NonFiniteLossError):
        step(*batch())
    assert not any(changed(before, params))


# --- latent regression is learnable ---------------------------------------------------------------


def test_reference_encoder_sees_its_input_at_initialisation() -> None:
    torch.manual_seed(0)
    model = M3DGAN(
        ModalitySpec("image", 3, 32),
        ModalitySpec("image", 1, 32),
        get_objective("full"),
        ModelConfig(),
    )
    refs = torch.cat([torch.full((1, 1, 32, 32), -1.0), torch.full((1, 1, 32, 32), 1.0)])
    with torch.no_grad():
        mu = model.encode(refs).mu
    # a reference encoder whose posterior ignores the reference gives the generator no code to
    # learn from (cVAE branch) and no gradient to invert (latent regression)
    assert (mu[0] - mu[1]).abs().mean() > 0.05


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="open problem: in the *joint* objective (GAN + rec + KL + lat) at the tiny test size, "
    "lat does not fall within 100 steps (it hovers around E|N(0,1)| ≈ 0.8); G alone on L_lat "
    "does lower it (test_latent_regression_falls_when_the_generator_learns_to_use_z)",
)
def test_latent_regression_loss_falls_when_training() -> None:
    step = make_step("bicycle", seed=0)
    data = synthetic_split(32, 0)
    source, target = to_float(data["source"]), to_float(data["target"])
    gen = torch.Generator().manual_seed(0)
    lat = []
    for _ in range(100):
        idx = torch.randint(0, 32, (8,), generator=gen)
        lat.append(step(source[idx], target[idx])["lat"])
    first, last = statistics.mean(lat[:10]), statistics.mean(lat[-10:])
    assert last < 0.85 * first, f"lat went from {first:.3f} to {last:.3f}"


def test_latent_regression_falls_when_the_generator_learns_to_use_z() -> None:
    """Optimising G alone on L_lat through a frozen Enc_r must lower it: the loss gives G a
    usable gradient to write the code e_s into its output where Enc_r can read it back."""
    torch.manual_seed(0)
    model = M3DGAN(
        ModalitySpec("image", 3, 16),
        ModalitySpec("image", 1, 16),
        get_objective("bicycle"),
        tiny_model_config(nz=2),
    )
    source = to_float(synthetic_split(32, 0)["source"][:16])
    opt = torch.optim.Adam(model.generator.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    lat = []
    for _ in range(300):
        e_s = torch.randn(16, 2, generator=gen)
        with frozen(model.attention.encoder, model.reference_prenet):
            loss = losses.latent_regression(
                e_s, model.encode(model.generate(source, model.embed(e_s))).mu
            )
        opt.zero_grad()
        loss.backward()
        opt.step()
        lat.append(loss.item())
    first, last = statistics.mean(lat[:10]), statistics.mean(lat[-10:])
    assert last < 0.85 * first, f"lat went from {first:.3f} to {last:.3f}"
    assert all(p.grad is None for p in model.attention.encoder.parameters())
