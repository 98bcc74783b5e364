"""M3DGAN: modality subnets wired around the universal attention module (paper Fig. 3).

    S ─ M_in(source) ─────────────────────────┐
                                              ├─ M_out (G) ─ T̂
    R ─ M_in(target) ─ Enc_r ─ e ─ UTL ─ z ───┘
                        └── or e ~ N(0, I) at test time

The class holds the generator side (prenets, E_att, G) and the conditional discriminators; the
training step (``core.step``) decides which parts an objective uses.
"""

from __future__ import annotations

import torch
from torch import nn

from m3dgan.config import Config, ModelConfig
from m3dgan.core.attention import Posterior, UniversalAttention
from m3dgan.core.objectives import Objective, get_objective
from m3dgan.core.switches import check_switches
from m3dgan.errors import ConfigError
from m3dgan.modalities import Modality, ModalitySpec, modality_for


def domain_scores(scores: torch.Tensor, domain: torch.Tensor | None) -> torch.Tensor:
    """Each row's own score map from a per-domain discriminator's [B, domains, ...] output
    (``domain``: int64 [B]); ``domain`` None: ``scores`` as they are (a one-output D)."""
    if domain is None:
        return scores
    index = domain.view(-1, *([1] * (scores.dim() - 1))).expand(-1, 1, *scores.shape[2:])
    return scores.gather(1, index.to(scores.device))


class M3DGAN(nn.Module):
    def __init__(
        self,
        source: ModalitySpec,
        target: ModalitySpec,
        objective: Objective,
        cfg: ModelConfig,
        domains: int = 0,
    ) -> None:
        """``domains``: how many domains the data set labels (0: none); with
        ``cfg.domain_discriminator`` D_enc gives one score map per domain.

        Raises ConfigError when ``cfg.domain_discriminator`` is set and there are fewer than two
        domains, or the target modality's discriminator has a single output."""
        super().__init__()
        self.source_spec, self.target_spec, self.objective, self.cfg = (
            source,
            target,
            objective,
            cfg,
        )
        # the sides' modalities (subnets and training terms; no codec: the body reads no files)
        src_mod, tgt_mod = modality_for(source), modality_for(target)
        self.source_modality: Modality = src_mod
        self.target_modality: Modality = tgt_mod
        self.source_prenet = src_mod.build_prenet(cfg)
        if objective.uses_z:
            self.reference_prenet = tgt_mod.build_reference_prenet(cfg)
            self.attention: UniversalAttention | None = UniversalAttention(
                tgt_mod.build_reference_encoder(cfg),
                cfg.nz,
                use_tokens=objective.tokens,
                num_tokens=cfg.num_tokens,
                heads=cfg.token_heads,
                domain_dim=cfg.domain_dim,
            )
            z_dim = self.attention.domain_dim
        else:
            self.reference_prenet, self.attention, z_dim = None, None, 0
        self.z_dim = z_dim
        self.generator = tgt_mod.build_generator(src_mod, z_dim, cfg)
        if cfg.domain_discriminator and domains < 2:
            raise ConfigError(
                "model.domain_discriminator needs a data set with two or more domains; this one "
                f"has {domains}"
            )
        # one score map per domain (``model.domain_discriminator``), else one
        self.domain_outputs = domains if cfg.domain_discriminator else 0
        self.disc_enc = (
            tgt_mod.build_discriminator(src_mod, cfg, self.domain_outputs)
            if self.domain_outputs
            else tgt_mod.build_discriminator(src_mod, cfg)  # a modality may not take outputs
        )
        # BicycleGAN's finding: one discriminator per branch trains better than a shared one
        self.disc_rand = (
            tgt_mod.build_discriminator(src_mod, cfg) if objective.random_branch else None
        )

    @classmethod
    def from_config(
        cls, cfg: Config, source: ModalitySpec, target: ModalitySpec, domains: int = 0
    ) -> M3DGAN:
        """The model a run config describes for these sides and a data set with ``domains``
        domains: the one place training (``m3dgan.train.build_model``) and inference
        (``Translator.from_checkpoint``) build it.

        Raises ConfigError for an unknown objective or a technique switch set for sides it does
        not apply to (``core.switches``), ValueError for sides no modality pairs."""
        check_switches(cfg, source, target)
        return cls(source, target, get_objective(cfg.objective), cfg.model, domains)

    # -- the generator side -------------------------------------------------------------------
    def encode(self, reference: torch.Tensor) -> Posterior:
        """q(e | R) from a reference sample of the target modality."""
        if self.attention is None:
            raise RuntimeError(f"objective {self.objective.name!r} has no reference encoder")
        return self.attention.encode(self.reference_prenet(reference))

    def embed(self, e: torch.Tensor) -> torch.Tensor:
        """Gaussian reference embedding → domain embedding z (through the token layer if any)."""
        return self.attention.embed(e)

    def sample_e(
        self, n: int, generator: torch.Generator | None = None, device=None
    ) -> torch.Tensor:
        device = device or next(self.parameters()).device
        return torch.randn(n, self.cfg.nz, generator=generator, device=device)

    def generate(
        self,
        source: torch.Tensor,
        z: torch.Tensor | None,
        target: torch.Tensor | None = None,
        beam_size: int = 1,
    ) -> torch.Tensor:
        """G(S, z). ``target`` enables teacher forcing for sequential (text) outputs; image
        generators ignore it. Text outputs: distributions when teacher-forced (with a CTC head,
        ``model.ctc_weight``: a ``TextDecoderOutput`` carrying them), else ids (greedy, or beam
        search when ``beam_size`` > 1, joint CTC/attention with a CTC head); teacher-forced speech: a named output
        (``SpeechDecoderOutput``, the sample is ``target_modality.output_sample(out)``)."""
        if beam_size > 1:
            if not self.target_modality.beam_search:
                raise ValueError(f"beam search applies to text outputs, not {self.target_spec.kind}")
            return self.generator(self.source_prenet(source), z, target, beam_size=beam_size)
        return self.generator(self.source_prenet(source), z, target)

    @torch.no_grad()
    def translate(
        self,
        source: torch.Tensor,
        *,
        reference: torch.Tensor | None = None,
        e: torch.Tensor | None = None,
        token_weights: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        beam_size: int = 1,
        style_scale: float = 1.0,
    ) -> torch.Tensor:
        """Inference: the domain comes from a reference (posterior mean), an explicit e, explicit
        token weights, or, by default, e ~ N(0, I). ``style_scale`` multiplies the domain
        embedding z (GST's style scale: above 1 exaggerates the style, below 1 tones it down)."""
        if self.attention is None:
            # a model without z (pix2pix) has one output per source: references and codes do
            # not apply, explicit token weights cannot be honoured
            if token_weights is not None:
                raise ValueError(f"objective {self.objective.name!r} has no token layer to weight")
            return self.generate(source, None, beam_size=beam_size)
        if token_weights is not None:
            if self.attention.tokens is None:
                raise ValueError(f"objective {self.objective.name!r} has no token layer to weight")
            z = self.attention.tokens.from_weights(token_weights)
        else:
            if reference is not None:
                e = self.encode(reference).mu
            elif e is None:
                e = self.sample_e(len(source), generator, source.device)
            z = self.embed(e)
        if len(z) == 1 and len(source) > 1:
            z = z.expand(len(source), -1)
        return self.generate(source, z * style_scale, beam_size=beam_size)

    def generator_parameters(self) -> list[nn.Parameter]:
        skip = {id(p) for p in self.discriminator_parameters()}
        return [p for p in self.parameters() if id(p) not in skip]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        params = list(self.disc_enc.parameters())
        if self.disc_rand is not None:
            params += list(self.disc_rand.parameters())
        return params
