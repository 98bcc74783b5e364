"""Token tensors as the text subnets see them: ids for real text, distributions for fake text.

Real text is int64 ids [B, L] (0 = padding). Generated text is a float distribution over the
vocabulary at each position, [B, L, V], with all-zero rows at padded positions. Every subnet
that reads text embeds both the same way — ids by lookup, distributions by a matrix product
with the same embedding table (the expected embedding) — so D and Enc_r can take generated text
and still pass gradients to the generator.
"""

from __future__ import annotations

import torch
from torch import nn

from m3dgan.modalities.text.vocab import PAD


def token_mask(x: torch.Tensor) -> torch.Tensor:
    """True at real (non-padding) positions, [B, L]."""
    if x.dtype in (torch.long, torch.int32, torch.int64):
        return x != PAD
    return x.sum(dim=-1) > 0.5


def embed_tokens(x: torch.Tensor, embedding: nn.Embedding) -> torch.Tensor:
    """[B, L] ids or [B, L, V] distributions → [B, L, E]."""
    if x.dtype in (torch.long, torch.int32, torch.int64):
        return embedding(x)
    return x.to(embedding.weight.dtype) @ embedding.weight


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of h [B, L, D] over the positions where mask [B, L] is True."""
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


def one_hot(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Ids [B, L] → distributions [B, L, V] with zero rows at padding (the real-text form of a
    generated sample, for distances between real and fake text)."""
    out = torch.nn.functional.one_hot(ids, vocab_size).float()
    return out * (ids != PAD).unsqueeze(-1)
