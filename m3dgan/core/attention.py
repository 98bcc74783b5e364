"""Universal attention module E_att (paper §3.1, §4, Fig. 4).

E_att = reference encoder Enc_r + universal token layer (UTL).

Design choice the paper leaves open — where the Gaussian lives. Enc_r predicts a Gaussian
posterior q(e | R) = N(μ, σ²) over a small *reference embedding* e (``nz`` dims). The KL term
(eq. 3) pulls q towards N(0, I), so at test time e ~ N(0, I) is a valid stand-in for a reference.
The UTL then turns e into the *domain embedding* z = Σ_k w_k · V(tanh(token_k)), with w the softmax
attention of e over the tokens. Latent regression (eq. 5) and the distance term (eq. 7) are
measured in the same e-space: e_s ~ N(0, I) → UTL → G → Enc_r → μ̂, loss |e_s − μ̂|₁. Putting the
KL before the UTL keeps the bottleneck where the paper puts it (the tokens) while the Gaussian
prior stays exact; putting it after would make z a convex combination of tokens that a
Gaussian cannot describe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from m3dgan.core.init import init_leaky_convs
from m3dgan.core.safe_conv import Conv2d


@dataclass
class Posterior:
    """q(e | R): mean and log-variance of the reference embedding."""

    mu: torch.Tensor
    logvar: torch.Tensor

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(
            self.mu.shape, generator=generator, device=self.mu.device, dtype=self.mu.dtype
        )
        return self.mu + eps * torch.exp(0.5 * self.logvar)


class ReferenceEncoder(nn.Module):
    """Enc_r: 4 conv2d [64, 64, 128, 128] → GRU(128) over the time (width) axis → (μ, log σ²).

    Input is a modality subnet's 2-D representation [B, C, F, T] (an image's prenet features,
    a mel "image"; text supplies [B, C, 1, 1]). Strides of 2 halve F at every layer; along T they
    halve only while ``time_stride`` is 2, so a sequence keeps its time resolution for the GRU,
    whose last state is the reference embedding.
    """

    def __init__(
        self,
        in_channels: int,
        nz: int,
        channels: list[int] | tuple[int, ...] = (64, 64, 128, 128),
        gru_units: int = 128,
        freq_size: int = 32,
        time_stride: int = 2,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        f = freq_size
        for ch in channels:
            stride_f = 2 if f >= 2 else 1
            layers += [
                Conv2d(prev, ch, 3, stride=(stride_f, time_stride), padding=1),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            prev, f = ch, math.ceil(f / stride_f)
        self.convs = nn.Sequential(*layers)
        init_leaky_convs(self.convs)
        self.gru = nn.GRU(prev * f, gru_units, batch_first=True)
        self.to_posterior = nn.Linear(gru_units, 2 * nz)
        self.freq_out = f

    def forward(self, x: torch.Tensor) -> Posterior:
        h = self.convs(x)  # [B, C, F', T']
        b, c, f, t = h.shape
        h = h.permute(0, 3, 1, 2).reshape(b, t, c * f)
        _, last = self.gru(h)  # last: [1, B, units]
        mu, logvar = self.to_posterior(last[-1]).chunk(2, dim=-1)
        return Posterior(mu, logvar.clamp(-10.0, 10.0))


class UniversalTokenLayer(nn.Module):
    """UTL: a bank of randomly initialised tokens; the reference embedding queries them with
    multi-head scaled dot-product attention; the softmax-weighted sum is the domain embedding.

    Besides a query, the layer accepts explicit token weights (``from_weights``): the direct
    token control that users of global style tokens ask for most.
    """

    def __init__(
        self, query_dim: int, num_tokens: int = 10, heads: int = 4, out_dim: int = 64
    ) -> None:
        super().__init__()
        if out_dim % heads:
            raise ValueError(f"domain_dim {out_dim} must be divisible by token_heads {heads}")
        self.heads, self.num_tokens, self.out_dim = heads, num_tokens, out_dim
        self.tokens = nn.Parameter(torch.randn(num_tokens, out_dim) * 0.5)
        self.query = nn.Linear(query_dim, out_dim, bias=False)
        self.key = nn.Linear(out_dim, out_dim, bias=False)
        self.value = nn.Linear(out_dim, out_dim, bias=False)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # [..., D] -> [..., H, D/H]
        return x.unflatten(-1, (self.heads, self.out_dim // self.heads))

    def attention_weights(self, query: torch.Tensor) -> torch.Tensor:
        """Softmax weights over tokens, [B, heads, num_tokens]."""
        q = self._split(self.query(query))  # [B, H, d]
        k = self._split(self.key(torch.tanh(self.tokens)))  # [K, H, d]
        scores = torch.einsum("bhd,khd->bhk", q, k) / math.sqrt(q.shape[-1])
        return F.softmax(scores, dim=-1)

    def from_weights(self, weights: torch.Tensor) -> torch.Tensor:
        """Domain embedding from token weights [B, K] (all heads) or [B, heads, K]."""
        if weights.ndim == 2:
            weights = weights.unsqueeze(1).expand(-1, self.heads, -1)
        if weights.shape[1:] != (self.heads, self.num_tokens):
            raise ValueError(
                f"token weights must be [B, {self.num_tokens}] or [B, {self.heads}, {self.num_tokens}], got {tuple(weights.shape)}"
            )
        v = self._split(self.value(torch.tanh(self.tokens)))  # [K, H, d]
        return torch.einsum("bhk,khd->bhd", weights, v).flatten(1)

    def forward(self, query: torch.Tensor) -> torch.Tensor:
        return self.from_weights(self.attention_weights(query))


class UniversalAttention(nn.Module):
    """E_att: Enc_r and, unless disabled (ablation ``*-noatt``, ``cvae-gan``, ``bicycle``), the UTL.

    Without the UTL the domain embedding is the Gaussian sample itself (BicycleGAN's encoder).
    """

    def __init__(
        self,
        encoder: nn.Module,
        nz: int,
        *,
        use_tokens: bool,
        num_tokens: int = 10,
        heads: int = 4,
        domain_dim: int = 64,
    ) -> None:
        """``encoder`` is the target modality's Enc_r: prenet features → :class:`Posterior` over
        an ``nz``-dimensional e (images and mels: :class:`ReferenceEncoder`; text: the mean of
        its hidden states, see ``modalities.text``)."""
        super().__init__()
        self.nz = nz
        self.encoder = encoder
        self.tokens = UniversalTokenLayer(nz, num_tokens, heads, domain_dim) if use_tokens else None
        self.domain_dim = domain_dim if use_tokens else nz

    def encode(self, reference_features: torch.Tensor) -> Posterior:
        return self.encoder(reference_features)

    def embed(self, e: torch.Tensor) -> torch.Tensor:
        """Reference embedding e (Gaussian space) → domain embedding z fed to the generator."""
        return self.tokens(e) if self.tokens is not None else e
