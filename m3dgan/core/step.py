"""One training iteration of M3D-GAN: a discriminator update, then a generator-side update.

Both branches see the whole batch (unlike BicycleGAN, which halves it), because the distance
term (eq. 7) compares G(S, z_s) with G(S, z_r) for the *same* S. ``train.random_share`` < 1 runs
the random branch on the batch's first rows only (its D_rand, latent-regression and distance
terms on those rows): a cheaper step, closer to BicycleGAN's split. Per iteration:

1. encoded branch: e_r ~ q(e | R), z_r = UTL(e_r), T̂_enc = G(S, z_r)       (cVAE-GAN, eq. 1–4)
   R = T in the paper; ``train.domain_reference`` passes another sample of T's domain instead
   (``m3dgan.data.pairing``)
2. random branch:  e_s ~ N(0, I),     z_s = UTL(e_s), T̂_sam = G(S, z_s)   (eq. 5–6)
3. D update: D_enc on (S, T) vs (S, T̂_enc), D_rand on (S, T) vs (S, T̂_sam)
4. G update: λ1·[GAN + λ_rec·rec + λ_kl·KL] + λ2·[GAN + λ_lat·|e_s − μ(Enc_r(T̂_sam))|]
             + λ3·relu(τ − ratio)                                     (eq. 8)
   During ``train.adversarial_warmup`` a step is 1 and the λ1 term without GAN only
   (``train.warmup_code=zero``: e = 0, no Enc_r pass, no KL: about 1.13× an ``mle`` step).
With ``train.stack_branches`` steps 1 and 2 run G once on a batch of 2B (see GeneratorSide).
   The latent-regression term reaches G (and the token layer) but not Enc_r: its parameters are
   frozen for that forward pass, otherwise G and Enc_r learn to hide the code between them.
5. with ``train.ema_decay`` > 0: the moving average of the generator side takes the new weights
   (``core.ema``).

Distributed training (DistributedDataParallel). DDP averages gradients over ranks from hooks
that fire in the backward of a *forward of the wrapped module*, and expects one backward per
forward. A GAN step has two optimizers and reuses modules across passes, so wrapping the whole
model would be wrong (the D update's backward would have to reduce G's gradients, which it
does not produce). The step is cut into two modules instead, each run once per step:

- :class:`GeneratorSide` (prenets, E_att, G: exactly the parameters of ``opt_g``): the
  generator-side forward of both branches. Its one backward is the G update's, so DDP reduces
  the generator-side gradients there.
- :class:`DiscriminatorLoss` (D_enc, D_rand: the parameters of ``opt_d``): the D loss on real
  and detached fake pairs. Its one backward is the D update's.

The G update's other passes — D scoring the fakes with D frozen, Enc_r re-encoding T̂_sam with
Enc_r frozen — call the plain (unwrapped) modules: their parameters take no gradient there, so
there is nothing for DDP to reduce; gradients only flow *through* them into G's graph, whose
reduction the GeneratorSide forward has set up. Every loss is a mean over this rank's equal
share of the batch, so the averaged gradient is the gradient of the global batch. The random
draws (e_s and the reparameterisation noise) are drawn for the global batch from one generator
seeded alike on every rank and sliced like the data (``batch_indices``), so N processes compute
what one process computes on the whole batch.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, fields

import torch
from torch import nn

from m3dgan.config import LossConfig, diffaugment_policy
from m3dgan.core import augment, losses
from m3dgan.core.model import M3DGAN, domain_scores
from m3dgan.core.state import RunState
from m3dgan.distributed import Distributed
from m3dgan.errors import ConfigError, M3DGANError

_DISCRIMINATORS = ("disc_enc", "disc_rand")


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


class GeneratorSide(nn.Module):
    """The generator-side forward of one step (both branches), as one module for DDP.

    Its registered children are the model's children except the discriminators, i.e. exactly
    ``model.generator_parameters()``; the model itself is kept unregistered (its methods route
    through the prenets and E_att) so that DDP does not see D's parameters here.
    """

    def __init__(self, model: M3DGAN, stack_branches: bool = False) -> None:
        super().__init__()
        for name, child in model.named_children():
            if name not in _DISCRIMINATORS:
                self.add_module(name, child)
        self.__dict__["owner"] = model  # not a submodule (see above)
        self.stack_branches = stack_branches  # ``train.stack_branches``: one G pass for both

    def forward(
        self,
        source: torch.Tensor,
        target: torch.Tensor,
        eps_r: torch.Tensor | None,
        e_s: torch.Tensor | None,
        reference: torch.Tensor | None = None,
        zero_code: bool = False,
    ) -> dict[str, torch.Tensor | None]:
        """``eps_r``: reparameterisation noise (None: no encoded branch); ``e_s``: random codes
        for the batch's first ``len(e_s)`` rows (None: no random branch); ``reference``: R for
        the encoder (None: R = T); ``zero_code``: the encoded branch gets e = 0 without running
        Enc_r (``train.warmup_code=zero``; no posterior, so no KL)."""
        m: M3DGAN = self.__dict__["owner"]
        out: dict[str, torch.Tensor | None] = dict.fromkeys(
            ("fake_enc", "fake_rand", "mu", "logvar", "e_r")
        )
        # the source representation is shared by both branches: one prenet pass per step;
        # ``target`` teacher-forces sequential (text) outputs, image generators ignore it
        src_repr = m.source_prenet(source)
        k = len(e_s) if e_s is not None else 0  # the random branch's rows: the first k
        src_k, target_k = first_rows(src_repr, k), first_rows(target, k)
        if eps_r is not None and zero_code:
            out["fake_enc"] = m.generator(src_repr, m.embed(torch.zeros_like(eps_r)), target)
        elif eps_r is not None:
            post = m.encode(target if reference is None else reference)
            e_r = post.mu + eps_r.to(post.mu.dtype) * torch.exp(0.5 * post.logvar)
            out.update(mu=post.mu, logvar=post.logvar, e_r=e_r)
            if e_s is not None and self.stack_branches:
                # both branches as one batch of B + k rows: one pass of G (one decoding loop
                # for text and speech) instead of two; the same function row by row
                z = m.embed(torch.cat([e_r, e_s.to(e_r.dtype)]))
                both = m.generator(stack_rows(src_repr, src_k), z, stack_rows(target, target_k))
                out["fake_enc"], out["fake_rand"] = halves(both, len(e_r))
                return out
            out["fake_enc"] = m.generator(src_repr, m.embed(e_r), target)
        else:
            out["fake_enc"] = m.generator(src_repr, None, target)
        if e_s is not None:
            out["fake_rand"] = m.generator(src_k, m.embed(e_s), target_k)
        return out


def stack_rows(x, y):
    """Batch ``x`` with batch ``y`` stacked after it along dim 0: tensors, dataclasses of
    tensors (a source's ``SequenceFeatures``), or None (both)."""
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        return torch.cat([x, y])
    parts = {f.name: stack_rows(getattr(x, f.name), getattr(y, f.name)) for f in fields(x)}
    return type(x)(**parts)


def twice(x):
    """A batch stacked on itself along dim 0 (see :func:`stack_rows`)."""
    return stack_rows(x, x)


def first_rows(x, k: int):
    """Rows [:k] of a batch: a tensor, a dataclass of tensors, or None; ``x`` itself when it
    has no more than ``k`` rows."""
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        return x if k >= len(x) else x[:k]
    return type(x)(**{f.name: first_rows(getattr(x, f.name), k) for f in fields(x)})


def halves(x, n: int) -> tuple:
    """Rows [:n] and [n:] of a generator output: a tensor or a dataclass of tensors (speech's
    ``SpeechDecoderOutput``)."""
    if x is None:
        return None, None
    if isinstance(x, torch.Tensor):
        return x[:n], x[n:]
    parts = {f.name: halves(getattr(x, f.name), n) for f in fields(x)}
    return (
        type(x)(**{k: v[0] for k, v in parts.items()}),
        type(x)(**{k: v[1] for k, v in parts.items()}),
    )


class DiscriminatorLoss(nn.Module):
    """The discriminator loss of one step, as one module for DDP: D_enc on real vs encoded
    fakes, D_rand on real vs random fakes (fakes detached)."""

    def __init__(
        self,
        model: M3DGAN,
        gan_mode: str,
        policy: tuple[str, ...] = (),
        mismatch: float = 0.0,
    ) -> None:
        super().__init__()
        self.disc_enc = model.disc_enc
        self.disc_rand = model.disc_rand
        self.gan_mode = gan_mode
        self.policy = policy  # DiffAugment (``core.augment``); () = off
        self.mismatch = mismatch  # ``loss.mismatch``: weight of (wrong source, real) as fake

    def forward(
        self,
        source: torch.Tensor,
        target: torch.Tensor,
        fake_enc: torch.Tensor,
        fake_rand: torch.Tensor | None,
        domain: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``domain``: T's domain per row, where D_enc has per-domain outputs (else None)."""
        loss = gan_pair(self.disc_enc, source, target, fake_enc, self.gan_mode, self.policy, domain)
        loss = loss + self._mismatched(self.disc_enc, source, target, domain)
        if fake_rand is not None:  # the random branch may cover the first rows only
            k = len(fake_rand)
            src_k, tgt_k = first_rows(source, k), first_rows(target, k)
            loss = loss + gan_pair(
                self.disc_rand, src_k, tgt_k, fake_rand, self.gan_mode, self.policy
            )
            loss = loss + self._mismatched(self.disc_rand, src_k, tgt_k)
        return loss

    def _mismatched(
        self,
        disc: nn.Module,
        source: torch.Tensor,
        real: torch.Tensor,
        domain: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``loss.mismatch`` × the loss of D calling (the previous row's source, this row's real
        target) fake; 0 when off or with a single row (no other source to pair)."""
        if not self.mismatch or len(real) < 2:
            return real.new_zeros((), dtype=torch.float32)
        wrong = torch.roll(source, 1, dims=0)  # row i gets row i − 1's source
        scores = domain_scores(judge(disc, wrong, real, self.policy), domain)
        return self.mismatch * losses.gan_loss(scores, False, self.gan_mode)


@dataclass
class TrainStep:
    """One iteration on a run's :class:`RunState` (its model, optimizers and noise generator,
    which it updates in place): ``step(source, target)`` → the losses as floats.

    ``autocast_dtype``: bf16 autocast (``train.amp``) or None; ``dist``: None or world 1 for one
    process, else the DDP split of the module docstring."""

    state: RunState
    loss_cfg: LossConfig
    autocast_dtype: torch.dtype | None = None
    dist: Distributed | None = None
    stack_branches: bool = False  # ``train.stack_branches``: see GeneratorSide.forward
    random_share: float = 1.0  # ``train.random_share``: the random branch's share of the rows
    warmup_code: str = "encoded"  # ``train.warmup_code``: e during the warm-up ("zero": e = 0)

    @property
    def model(self) -> M3DGAN:
        return self.state.model

    @property
    def opt_g(self) -> torch.optim.Optimizer:
        return self.state.opt_g

    @property
    def opt_d(self) -> torch.optim.Optimizer:
        return self.state.opt_d

    @property
    def generator(self) -> torch.Generator:
        """The RNG of e_s and the reparameterisation noise."""
        return self.state.noise

    def __post_init__(self) -> None:
        d = self.dist or Distributed()
        self._rank, self._world = d.rank, d.world
        self.generator_side = d.wrap(
            GeneratorSide(self.model, self.stack_branches),
            find_unused=self.warmup_code == "zero",  # Enc_r sits out the warm-up's steps
        )
        self.policy = diffaugment_policy(self.loss_cfg.diffaugment)
        if self.policy and self.model.target_spec.kind != "image":
            raise ConfigError(
                f"loss.diffaugment={self.loss_cfg.diffaugment!r} augments images; this task's "
                f"target is {self.model.target_spec.kind}"
            )
        self.discriminator_loss = d.wrap(
            DiscriminatorLoss(
                self.model, self.loss_cfg.gan_mode, self.policy, self.loss_cfg.mismatch
            )
        )

    def _autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.autocast_dtype)

    def _noise(self, n: int, device: torch.device) -> torch.Tensor:
        """N(0, I) codes for this rank's ``n`` samples: drawn for the global batch (n × world),
        then this rank's rows, strided like ``batch_indices`` slices the data."""
        e = torch.randn(n * self._world, self.model.cfg.nz, generator=self.generator, device=device)
        return e[self._rank :: self._world]

    def _check(self, name: str, loss: torch.Tensor) -> None:
        """Raise on a non-finite loss; under DDP every rank raises when any rank's loss is bad."""
        if self.dist is None or not self.dist.enabled:
            check_finite(name, loss)
            return
        finite = bool(torch.isfinite(loss).all())
        if self.dist.all_true(finite):
            return
        if finite:
            raise NonFiniteLossError(f"{name} loss is non-finite on another process")
        raise NonFiniteLossError(f"{name} loss is {loss.item()} (rank {self._rank})")

    def __call__(
        self,
        source: torch.Tensor,
        target: torch.Tensor,
        reference: torch.Tensor | None = None,
        domain: torch.Tensor | None = None,
        warmup: bool = False,
    ) -> dict[str, float]:
        """One iteration on a batch; ``reference``: R for the encoded branch (None: R = T, the
        paper's setting); ``domain``: int64 [B], T's (and R's) domain, needed when D_enc has
        per-domain outputs (``model.domain_discriminator``); ``warmup``: a step of
        ``train.adversarial_warmup`` (reconstruction + KL only: no D update, no random branch;
        with ``train.warmup_code=zero`` reconstruction only, from e = 0).
        Returns the losses as floats."""
        if self.model.domain_outputs and domain is None:
            raise ValueError("model.domain_discriminator: the step needs each row's domain")
        if not self.model.domain_outputs:
            domain = None
        m, obj, lc = self.model, self.model.objective, self.loss_cfg
        gan, n, device = lc.gan_mode, len(source), source.device
        adversarial = obj.adversarial and not warmup
        eps_r = self._noise(n, device) if obj.encoded_branch else None
        if eps_r is not None and not obj.variational:
            eps_r = torch.zeros_like(eps_r)  # ``gst``: e = μ(Enc_r(R)), no sampling
        e_s = self._noise(n, device) if obj.random_branch else None
        if e_s is not None:  # drawn for every row all the same: the noise stream stays put
            e_s = e_s[: random_rows(n, self.random_share)]
        if warmup:
            e_s = None  # drawn all the same: the noise stream does not depend on the warm-up
        logs: dict[str, float] = {}
        with self._autocast(device):
            # -- generator-side forward (one DDP forward) ----------------------------------------
            zero_code = warmup and self.warmup_code == "zero"
            out = self.generator_side(source, target, eps_r, e_s, reference, zero_code=zero_code)
            # generator outputs may carry more than the sample (speech: stop logits, alignment);
            # D, Enc_r and the distance read the sample, the reconstruction loss the whole output
            tgt = m.target_modality
            fake_enc = tgt.output_sample(out["fake_enc"])
            fake_rand = (
                tgt.output_sample(out["fake_rand"]) if out["fake_rand"] is not None else None
            )
            # -- discriminator update (one DDP forward) -----------------------------------------
            if adversarial:
                d_loss = self.discriminator_loss(source, target, fake_enc, fake_rand, domain)
        if adversarial:
            self._check("discriminator", d_loss)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            logs["loss_D"] = d_loss.item()

        # -- generator-side update (discriminators frozen, plain modules: see module doc) --------
        with frozen(m.disc_enc, m.disc_rand), self._autocast(device):
            if adversarial:
                g_gan = losses.gan_loss(
                    domain_scores(judge(m.disc_enc, source, fake_enc, self.policy), domain),
                    True,
                    gan,
                    for_discriminator=False,
                )
            else:
                g_gan = fake_enc.new_zeros(())
            # text-only terms, passed only when set (other modalities do not take them)
            rec_args = {"label_smoothing": lc.label_smoothing} if lc.label_smoothing else {}
            if lc.normalization != "tokens":
                rec_args["normalization"] = lc.normalization
            if m.cfg.ctc_weight:
                rec_args["ctc_weight"] = m.cfg.ctc_weight
            rec = tgt.reconstruction_loss(out["fake_enc"], target, **rec_args)  # in float32
            vae = g_gan + lc.lambda_rec * rec
            logs.update(G_gan_enc=g_gan.float().item(), rec=rec.item())
            logs.update(tgt.output_logs(out["fake_enc"], target))
            if out["mu"] is not None and obj.variational:
                kl = losses.kl_divergence(out["mu"].float(), out["logvar"].float())
                vae = vae + lc.lambda_kl * kl
                logs["kl"] = kl.item()
            total = lc.lambda_1 * vae
            if fake_rand is not None:
                k = len(fake_rand)
                g_gan_rand = losses.gan_loss(
                    judge(m.disc_rand, first_rows(source, k), fake_rand, self.policy),
                    True,
                    gan,
                    for_discriminator=False,
                )
                with frozen(m.attention.encoder, m.reference_prenet):
                    mu_hat = m.encode(fake_rand).mu
                lat = losses.latent_regression(e_s, mu_hat.float())
                total = total + lc.lambda_2 * (g_gan_rand + lc.lambda_lat * lat)
                logs.update(G_gan_rand=g_gan_rand.item(), lat=lat.item())
            if obj.distance and fake_rand is not None:
                # the encoded output is the anchor: were it not detached, Enc_r could satisfy the
                # term by pushing e_r off the prior (huge KL) instead of G learning to use z
                k = len(fake_rand)
                dist = losses.distance_regularization(
                    fake_rand.float(),
                    fake_enc[:k].detach().float(),
                    e_s,
                    out["e_r"][:k].detach(),
                    form=lc.dist_form,
                    tau=lc.dist_tau,
                    out_distance=tgt.output_distance,
                )
                total = total + lc.lambda_3 * dist
                logs["dist"] = dist.item()
        self._check("generator", total)
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.opt_g.step()
        if self.state.ema is not None:  # under DDP every rank holds the same weights: same average
            self.state.ema.update(m)
        logs["loss_G"] = total.item()
        return logs


def random_rows(n: int, share: float) -> int:
    """How many of a batch's ``n`` rows the random branch takes at ``train.random_share``
    ``share`` in (0, 1]: round(share · n), at least 1. Under DDP ``n`` is this process's rows,
    so N processes take what one process takes of the whole batch when share · n is whole."""
    return max(1, min(n, round(share * n)))


def judge(
    disc: nn.Module, source: torch.Tensor, image: torch.Tensor, policy: tuple[str, ...] = ()
) -> torch.Tensor:
    """D(S, image), on a random DiffAugment view of the pair when ``policy`` is set."""
    return disc(*augment.augment_pair(source, image, policy))


def gan_pair(
    disc: nn.Module,
    source: torch.Tensor,
    real: torch.Tensor,
    fake: torch.Tensor,
    mode: str,
    policy: tuple[str, ...] = (),
    domain: torch.Tensor | None = None,
) -> torch.Tensor:
    """Discriminator loss on one real and one (detached) fake batch (each its own view);
    ``domain``: read a per-domain D at each row's domain."""
    real_scores = domain_scores(judge(disc, source, real, policy), domain)
    fake_scores = domain_scores(judge(disc, source, fake.detach(), policy), domain)
    return losses.gan_loss(real_scores, True, mode) + losses.gan_loss(fake_scores, False, mode)


def check_finite(name: str, loss: torch.Tensor) -> None:
    if not torch.isfinite(loss).all():
        raise NonFiniteLossError(f"{name} loss is {loss.item()}")
