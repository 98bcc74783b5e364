"""Lengths and masks of padded mel batches.

A batch of utterances is padded with the silence floor (``m3dgan.audio.config.PAD_VALUE``), so
an utterance's length is the index after its last frame above the floor (:func:`frame_lengths`).
Every speech subnet masks the frames past each utterance's end, so an utterance's features do not
depend on how much padding its batch has.
"""

from __future__ import annotations

import torch
from torch import nn

from m3dgan.audio.config import PAD_VALUE

_FLOOR = PAD_VALUE + 1e-3


def frame_lengths(x: torch.Tensor, n_mels: int) -> torch.Tensor:
    """Frames up to and including the last one above the silence floor, int64 [B] (≥ 1)."""
    voiced = (x[..., :n_mels] > _FLOOR).any(dim=-1)  # [B, T]
    positions = torch.arange(1, x.shape[1] + 1, device=x.device)
    return (voiced * positions).amax(dim=1).clamp_min(1)


def strided_lengths(lengths: torch.Tensor, halvings: int) -> torch.Tensor:
    """Lengths after ``halvings`` convolutions of stride 2 (kernel 3, padding 1): ceil(L / 2)."""
    for _ in range(halvings):
        lengths = (lengths + 1) // 2
    return lengths


def time_mask(lengths: torch.Tensor, t: int, like: torch.Tensor) -> torch.Tensor:
    """[B, 1, 1, t] (or [B, 1, t] for 3-d ``like``): 1 on each utterance's frames, 0 after."""
    keep = torch.arange(t, device=like.device)[None] < lengths.to(like.device)[:, None]
    shape = (len(lengths), 1, 1, t) if like.ndim == 4 else (len(lengths), 1, t)
    return keep.view(shape).to(like.dtype)


def masked_conv_stack(layers: nn.Sequential, x: torch.Tensor, lengths: torch.Tensor):
    """Run (conv, activation) pairs over [B, C, F, T] (or [B, C, T]), zeroing the frames past
    each utterance's end after every pair. The convolutions' own zero padding then meets zeros,
    so an utterance's features do not depend on how much padding its batch has.
    Returns (output, lengths at the output's time resolution)."""
    mods = list(layers)
    for conv, act in zip(mods[::2], mods[1::2], strict=True):
        x = act(conv(x))
        stride = conv.stride[-1]
        if stride == 2:
            lengths = strided_lengths(lengths, 1)
        x = x * time_mask(lengths, x.shape[-1], x)
    return x, lengths


def stop_targets(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """1 from each utterance's last frame on, 0 before it, float [B, frames]."""
    positions = torch.arange(frames, device=lengths.device)[None]
    return (positions >= (lengths[:, None] - 1)).float()
