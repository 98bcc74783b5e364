"""One training iteration of M3D-GAN: a discriminator update, then a generator-side update.

Both branches see the whole batch (unlike BicycleGAN, which halves it), because the distance
term (eq. 7) compares G(S, z_s) with G(S, z_r) for the *same* S. Per iteration:

1. encoded branch: e_r ~ q(e | R = T), z_r = UTL(e_r), T̂_enc = G(S, z_r)   (cVAE-GAN, eq. 1–4)
2. random branch:  e_s ~ N(0, I),     z_s = UTL(e_s), T̂_sam = G(S, z_s)   (eq. 5–6)
3. D update: D_enc on (S, T) vs (S, T̂_enc), D_rand on (S, T) vs (S, T̂_sam)
4. G update: λ1·[GAN + λ_rec·rec + λ_kl·KL] + λ2·[GAN + λ_lat·|e_s − μ(Enc_r(T̂_sam))|]
             + λ3·relu(τ − ratio)                                     (eq. 8)
   The latent-regression term reaches G (and the token layer) but not Enc_r: its parameters are
   frozen for that forward pass, otherwise G and Enc_r learn to hide the code between them.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from m3dgan.config import LossConfig
from m3dgan.core import losses
from m3dgan.core.model import M3DGAN
from m3dgan.errors import M3DGANError


@contextmanager
def frozen(*modules: nn.Module | None):
    """Parameters of ``modules`` do not collect gradients inside the block."""
    params = [p for m in modules if m is not None for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class NonFiniteLossError(M3DGANError, FloatingPointError):
    """A loss became NaN or Inf. Raised before the update it would have fed: a non-finite D
    loss leaves every weight untouched; a non-finite G loss comes after that step's D update."""


@dataclass
class TrainStep:
    model: M3DGAN
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    loss_cfg: LossConfig
    autocast_dtype: torch.dtype | None = None
    generator: torch.Generator | None = None  # RNG for e_s and the reparameterisation

    def _autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.autocast_dtype)

    def __call__(self, source: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        m, obj, lc = self.model, self.model.objective, self.loss_cfg
        gan = lc.gan_mode
        with self._autocast(source.device):
            # -- generator-side forward ------------------------------------------------------
            e_r = post = e_s = fake_rand = None
            # the source representation is shared by both branches: one prenet pass per step
            src_repr = m.source_prenet(source)
            if obj.encoded_branch:
                post = m.encode(target)
                e_r = post.sample(self.generator)
                fake_enc = m.generator(src_repr, m.embed(e_r), target)
            else:
                fake_enc = m.generator(src_repr, None, target)
            if obj.random_branch:
                e_s = m.sample_e(len(source), self.generator, source.device)
                fake_rand = m.generator(src_repr, m.embed(e_s), target)

            # -- discriminator update -------------------------------------------------------
            if obj.adversarial:
                d_loss = gan_pair(m.disc_enc, source, target, fake_enc, gan)
                if fake_rand is not None:
                    d_loss = d_loss + gan_pair(m.disc_rand, source, target, fake_rand, gan)
        logs: dict[str, float] = {}
        if obj.adversarial:
            check_finite("discriminator", d_loss)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            logs["loss_D"] = d_loss.item()

        # -- generator-side update (discriminators frozen) -----------------------------------
        with frozen(m.disc_enc, m.disc_rand), self._autocast(source.device):
            if obj.adversarial:
                g_gan = losses.gan_loss(
                    m.disc_enc(source, fake_enc), True, gan, for_discriminator=False
                )
            else:
                g_gan = fake_enc.new_zeros(())
            rec = m.target_modality.reconstruction_loss(fake_enc.float(), target.float())
            vae = g_gan + lc.lambda_rec * rec
            logs.update(G_gan_enc=g_gan.float().item(), rec=rec.item())
            if post is not None:
                kl = losses.kl_divergence(post.mu.float(), post.logvar.float())
                vae = vae + lc.lambda_kl * kl
                logs["kl"] = kl.item()
            total = lc.lambda_1 * vae
            if fake_rand is not None:
                g_gan_rand = losses.gan_loss(
                    m.disc_rand(source, fake_rand), True, gan, for_discriminator=False
                )
                with frozen(m.attention.encoder, m.reference_prenet):
                    mu_hat = m.encode(fake_rand).mu
                lat = losses.latent_regression(e_s, mu_hat.float())
                total = total + lc.lambda_2 * (g_gan_rand + lc.lambda_lat * lat)
                logs.update(G_gan_rand=g_gan_rand.item(), lat=lat.item())
            if obj.distance:
                # the encoded output is the anchor: were it not detached, Enc_r could satisfy the
                # term by pushing e_r off the prior (huge KL) instead of G learning to use z
                dist = losses.distance_regularization(
                    fake_rand.float(),
                    fake_enc.detach().float(),
                    e_s,
                    e_r.detach(),
                    form=lc.dist_form,
                    tau=lc.dist_tau,
                    out_distance=m.target_modality.output_distance,
                )
                total = total + lc.lambda_3 * dist
                logs["dist"] = dist.item()
        check_finite("generator", total)
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.opt_g.step()
        logs["loss_G"] = total.item()
        return logs


def gan_pair(
    disc: nn.Module, source: torch.Tensor, real: torch.Tensor, fake: torch.Tensor, mode: str
) -> torch.Tensor:
    """Discriminator loss on one real and one (detached) fake batch."""
    return losses.gan_loss(disc(source, real), True, mode) + losses.gan_loss(
        disc(source, fake.detach()), False, mode
    )


def check_finite(name: str, loss: torch.Tensor) -> None:
    if not torch.isfinite(loss).all():
        raise NonFiniteLossError(f"{name} loss is {loss.item()}")
