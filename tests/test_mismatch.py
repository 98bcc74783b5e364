"""loss.mismatch (matching-aware discriminators, GAN-INT-CLS): the extra term's value, where it
is off, that a discriminator trained with it learns whether a target fits its source (and one
trained without it need not), and a training step with it."""

from __future__ import annotations

import pytest
import torch
from conftest import SIZE, tiny_model_config

from m3dgan.config import LossConfig
from m3dgan.core import losses
from m3dgan.core.model import M3DGAN
from m3dgan.core.objectives import get_objective
from m3dgan.core.state import RunState
from m3dgan.core.step import DiscriminatorLoss, TrainStep, first_rows
from m3dgan.modalities import ModalitySpec

pytestmark = pytest.mark.usefixtures("isolated_env")
IMAGE_S, IMAGE_T = ModalitySpec("image", 3, SIZE), ModalitySpec("image", 1, SIZE)


def _model(objective: str = "full", **changes) -> M3DGAN:
    torch.manual_seed(0)
    return M3DGAN(IMAGE_S, IMAGE_T, get_objective(objective), tiny_model_config(**changes))


def _batch(n: int = 4, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, 3, SIZE, SIZE, generator=gen),
        torch.randn(n, 1, SIZE, SIZE, generator=gen),
    )


def test_the_term_scores_real_targets_beside_the_previous_rows_source_as_fake() -> None:
    model = _model()
    s, t = _batch()
    fake_enc, fake_rand = torch.randn_like(t), torch.randn_like(t[:2])
    with torch.no_grad():
        plain = DiscriminatorLoss(model, "lsgan")(s, t, fake_enc, fake_rand)
        both = DiscriminatorLoss(model, "lsgan", mismatch=0.5)(s, t, fake_enc, fake_rand)
        wrong = torch.roll(s, 1, dims=0)
        enc = losses.gan_loss(model.disc_enc(wrong, t), False, "lsgan")
        rand_wrong = torch.roll(first_rows(s, 2), 1, dims=0)
        rand = losses.gan_loss(model.disc_rand(rand_wrong, t[:2]), False, "lsgan")
    assert torch.isclose(both - plain, 0.5 * (enc + rand), rtol=1e-5)
    one = DiscriminatorLoss(model, "lsgan", mismatch=0.5)
    with torch.no_grad():  # a single row has no other source to pair with: no term
        assert torch.isclose(
            one(s[:1], t[:1], fake_enc[:1], None),
            DiscriminatorLoss(model, "lsgan")(s[:1], t[:1], fake_enc[:1], None),
        )


def _fit_gap(mismatch: float, steps: int = 300) -> float:
    """Train D_enc alone where a real target is its source's first channel (white noise) and a
    fake is quieter noise, so that realism alone is told by the noise level; then return how much
    higher D scores a right pair than a wrong one (real targets both, sources rolled by a row)."""
    model = _model("cvae-gan", disc_channels=8)
    opt = torch.optim.Adam(model.disc_enc.parameters(), 2e-3, betas=(0.5, 0.999))
    d_loss = DiscriminatorLoss(model, "lsgan", mismatch=mismatch)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        s = torch.randn(8, 3, SIZE, SIZE, generator=gen)
        t, fake = s[:, :1].clone(), 0.3 * torch.randn(8, 1, SIZE, SIZE, generator=gen)
        opt.zero_grad()
        d_loss(s, t, fake, None).backward()
        opt.step()
    s = torch.randn(16, 3, SIZE, SIZE, generator=gen)
    t = s[:, :1]
    with torch.no_grad():
        right = model.disc_enc(s, t).mean()
        wrong = model.disc_enc(torch.roll(s, 1, dims=0), t).mean()
    return float(right - wrong)


def test_a_discriminator_trained_with_it_checks_the_pair() -> None:
    """Measured: a gap of 0.93 with the term, 0.13 without (LSGAN targets: 1 right, 0 wrong)."""
    with_term, without = _fit_gap(1.0), _fit_gap(0.0)
    assert with_term > 0.5
    assert with_term > without + 0.4


def test_a_training_step_with_it_and_the_paper_setting() -> None:
    assert LossConfig().mismatch == 0.0  # the paper's discriminator
    model = _model()
    opt_g = torch.optim.Adam(model.generator_parameters(), 1e-3)
    opt_d = torch.optim.Adam(model.discriminator_parameters(), 1e-3)
    state = RunState(model, opt_g, opt_d, torch.Generator().manual_seed(0))
    logs = TrainStep(state, LossConfig(mismatch=0.5))(*_batch())
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
