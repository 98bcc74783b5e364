"""Source summaries for conditional discriminators whose source and target differ in kind.

D(S, T) must see the source to judge whether T fits it. An image D can stack a source image
onto its input; when the source is text (text→image) or the target is text (→text), each D
summarises the source with its own small encoder into one vector instead.
"""

from __future__ import annotations

import torch
from torch import nn

from m3dgan.core.safe_conv import Conv2d
from m3dgan.modalities.base import ModalitySpec
from m3dgan.modalities.text_vocab import PAD
from m3dgan.modalities.tokens import embed_tokens, masked_mean, token_mask


class TextSummary(nn.Module):
    """Token ids [B, L] → mean of embedded tokens after a position-wise MLP, [B, dim]."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=PAD)
        self.conv = nn.Conv1d(dim, dim, 3, padding=1)
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = token_mask(x)
        h = embed_tokens(x, self.embedding).transpose(1, 2)
        h = torch.nn.functional.leaky_relu(self.conv(h), 0.2).transpose(1, 2)
        return masked_mean(h, mask)


class ImageSummary(nn.Module):
    """Image [B, C, H, W] → globally pooled conv features, [B, dim]."""

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            Conv2d(channels, dim // 2, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
            Conv2d(dim // 2, dim, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).mean(dim=(2, 3))


def source_summary(source: ModalitySpec, dim: int) -> nn.Module:
    if source.kind == "text":
        return TextSummary(source.channels, dim)
    if source.kind == "image":
        return ImageSummary(source.channels, dim)
    if source.kind == "speech":
        from m3dgan.modalities.speech import SpeechSummary

        return SpeechSummary(source.channels, dim)
    raise ValueError(f"no source summary for modality {source.kind!r}")
