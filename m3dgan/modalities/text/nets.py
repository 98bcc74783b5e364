"""Text modality subnets (paper §4, appendix §7).

- prenet M_in: 128-d token embeddings → FC [256, 128] → CBHG (Conv1D bank of widths 1..16 with
  128 units, max-pool, two conv projections, residual, 4 highway layers of 128) → bidirectional
  GRU of 128 per direction. Its output is the sequence of hidden states plus a padding mask
  (:class:`SequenceFeatures`). ``model.text_encoder=brnn`` replaces the CBHG by two stacked
  bidirectional GRU layers (:class:`BiRNN`; OpenNMT-py's ``brnn`` encoder; not the paper's).
- Enc_r for text: the paper's global sentence embedding — the mean of the hidden states over the
  sequence — mapped to the Gaussian posterior of E_att.
- generator M_out: the sequential decoder shared with speech (``modalities.sequence_decoder``).
- discriminator: ``modalities/text/discriminator.py`` (it reads distributions, see ``tokens``);
- as a source: the prenet states are an attention memory as they are; ``TextSummary`` is the
  summary vector for other modalities' discriminators.
- reconstruction: token cross-entropy under teacher forcing.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from m3dgan.config import ModelConfig
from m3dgan.core.attention import Posterior
from m3dgan.modalities.base import SequenceFeatures
from m3dgan.modalities.text.tokens import embed_tokens, masked_mean, token_mask
from m3dgan.modalities.text.vocab import PAD


class Highway(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.h = nn.Linear(dim, dim)
        self.t = nn.Linear(dim, dim)
        nn.init.constant_(self.t.bias, -1.0)  # start close to the identity (carry) path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.t(x))
        return gate * F.relu(self.h(x)) + (1 - gate) * x


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each position of [B, C, L] (affine, ε = 1e-5).

    Unlike BatchNorm it reads nothing from the rest of the batch, so a batch whose sentences
    all have one length (``train.length_buckets``) cannot tell the net that length through its
    statistics; it is the same function in training and evaluation."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class ConvBN(nn.Module):
    """Conv1d (no bias) → normalisation → optional ReLU. ``norm``: ``"batch"`` (BatchNorm,
    Tacotron's) or ``"layer"`` (:class:`ChannelLayerNorm`; ``model.cbhg_norm``)."""

    def __init__(self, cin: int, cout: int, width: int, relu: bool, norm: str = "batch") -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, width, padding=width // 2, bias=False)
        # named ``bn`` whatever the norm: BatchNorm checkpoints keep their state-dict keys
        self.bn = nn.BatchNorm1d(cout) if norm == "batch" else ChannelLayerNorm(cout)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x)[..., : x.shape[-1]])  # even widths pad one extra step
        return F.relu(y) if self.relu else y


class CBHG(nn.Module):
    """Conv1D bank + highway network + bidirectional GRU (Tacotron's encoder body).

    Padded positions are zeroed before every convolution, and the GRU runs on packed sequences,
    so in eval mode a sentence's states do not depend on how much padding its batch has. In
    training, BatchNorm's batch statistics still see the whole batch (padding and the other
    sentences' lengths included); ``norm="layer"`` (``model.cbhg_norm``) normalises each
    position on its own instead."""

    def __init__(
        self,
        dim: int,
        bank: int,
        channels: int,
        highway: int,
        gru_units: int,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        self.bank = nn.ModuleList(
            ConvBN(dim, channels, k, relu=True, norm=norm) for k in range(1, bank + 1)
        )
        self.proj1 = ConvBN(bank * channels, channels, 3, relu=True, norm=norm)
        self.proj2 = ConvBN(channels, dim, 3, relu=False, norm=norm)
        self.highways = nn.ModuleList(Highway(dim) for _ in range(highway))
        self.gru = nn.GRU(dim, gru_units, batch_first=True, bidirectional=True)
        self.out_dim = 2 * gru_units

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(1).to(x.dtype)  # [B, 1, L]
        h = x.transpose(1, 2) * m  # [B, D, L]
        length = h.shape[-1]
        y = torch.cat([conv(h) for conv in self.bank], dim=1) * m
        y = F.max_pool1d(y, 2, stride=1, padding=1)[..., :length] * m
        y = self.proj1(y) * m
        y = self.proj2(y) * m
        y = (y + h).transpose(1, 2)  # residual, [B, L, D]
        for hw in self.highways:
            y = hw(y)
        return _packed(self.gru, y, mask)


def _packed(rnn: nn.GRU, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``rnn`` over the real positions of each row of x [B, L, D] (mask [B, L]) → [B, L, H],
    zeros at padding: a row's states do not depend on how long the rest of its batch is."""
    lengths = mask.sum(dim=1).clamp_min(1).cpu()
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out


class BiRNN(nn.Module):
    """Stacked bidirectional GRU layers on packed sequences (``model.text_encoder=brnn``):
    [B, L, dim] with mask [B, L] → [B, L, 2 · units], zeros at padding.

    OpenNMT-py's default encoder (``encoder_type brnn``, ``layers 2``, LSTM there; GRU here, as
    every recurrent layer of this model) in place of the CBHG: no conv bank, no highways. Why:
    on en2fr's short subword sentences the CBHG costs ~5× the multiply-adds per token of a
    two-layer bidirectional RNN of the same width (docs/benchmarks.md, "Length buckets")."""

    def __init__(self, dim: int, units: int, layers: int = 2) -> None:
        super().__init__()
        self.gru = nn.GRU(dim, units, num_layers=layers, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return _packed(self.gru, x, mask)


class TokenBag(nn.Module):
    """A position-wise layer and nothing else (``model.text_encoder=bag``): [B, L, dim] with
    mask [B, L] → [B, L, 2 · units], zeros at padding. No context crosses positions, so the
    prenet's pooled mean (``SequenceFeatures.pooled``) is a bag of token embeddings: the deep
    averaging network of Iyyer et al. (2015), fastText's sentence vector (Joulin et al., 2017).

    Not the paper's. Why: a caption names its emoji by its words, not their order, and the
    bag's sentence vectors differ between captions from the first step, where the CBHG's
    averaged GRU states start nearly alike and a text → image generator learns the mean
    picture first (docs/benchmarks.md, "text2emoji: what the caption encoder costs")."""

    def __init__(self, dim: int, units: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 2 * units)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.proj(x) * mask.unsqueeze(-1).to(x.dtype)


def token_prenet(cfg: ModelConfig) -> nn.Sequential:
    """The FC layers over embedded tokens (``text_prenet``, ReLU, dropout 0.2; Tacotron's
    prenet), shared by the text prenet M_in and the text decoder's input."""
    layers: list[nn.Module] = []
    prev = cfg.text_embed
    for width in cfg.text_prenet:
        layers += [nn.Linear(prev, width), nn.ReLU(), nn.Dropout(0.2)]
        prev = width
    return nn.Sequential(*layers)


class TextPrenet(nn.Module):
    """M_in for text: ids [B, L] or distributions [B, L, V] → :class:`SequenceFeatures`
    (states [B, L, 2 · ``text_gru``]). The body after the FC layers is ``cfg.text_encoder``'s:
    the CBHG (module ``cbhg``), :class:`BiRNN` (module ``brnn``) or :class:`TokenBag` (module
    ``bag``). ``bank``: K of the CBHG's conv bank (0: ``cfg.cbhg_bank``; a reference prenet
    under ``model.reference_cbhg_bank`` takes its own; unread by the others)."""

    def __init__(self, vocab_size: int, cfg: ModelConfig, bank: int = 0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, cfg.text_embed, padding_idx=PAD)
        self.fc = token_prenet(cfg)
        width = cfg.text_prenet[-1] if cfg.text_prenet else cfg.text_embed
        # the body's attribute name keeps the state-dict keys of CBHG checkpoints
        self.body = cfg.text_encoder
        if self.body == "brnn":
            self.brnn = BiRNN(width, cfg.text_gru)
        elif self.body == "bag":
            self.bag = TokenBag(width, cfg.text_gru)
        else:
            self.cbhg = CBHG(
                width,
                bank or cfg.cbhg_bank,
                cfg.cbhg_channels,
                cfg.cbhg_highway,
                cfg.text_gru,
                norm=cfg.cbhg_norm,
            )

    def forward(self, x: torch.Tensor) -> SequenceFeatures:
        mask = token_mask(x)
        h = self.fc(embed_tokens(x, self.embedding))
        return SequenceFeatures(getattr(self, self.body)(h, mask), mask)


class TextReferenceEncoder(nn.Module):
    """Enc_r for text: the mean hidden state (global sentence embedding) → (μ, log σ²)."""

    def __init__(self, in_dim: int, nz: int) -> None:
        super().__init__()
        self.to_posterior = nn.Sequential(
            nn.Linear(in_dim, in_dim), nn.LeakyReLU(0.2), nn.Linear(in_dim, 2 * nz)
        )

    def forward(self, features: SequenceFeatures) -> Posterior:
        mu, logvar = self.to_posterior(features.pooled()).chunk(2, dim=-1)
        return Posterior(mu, logvar.clamp(-10.0, 10.0))


class TextSummary(nn.Module):
    """A text *source* summarised for another modality's conditional discriminator: token ids
    [B, L] → mean of embedded tokens after a position-wise conv, [B, dim]."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=PAD)
        self.conv = nn.Conv1d(dim, dim, 3, padding=1)
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = token_mask(x)
        h = embed_tokens(x, self.embedding).transpose(1, 2)
        h = F.leaky_relu(self.conv(h), 0.2).transpose(1, 2)
        return masked_mean(h, mask)
