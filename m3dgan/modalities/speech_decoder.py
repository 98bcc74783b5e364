"""M_out for speech targets: the shared attention-RNN decoder predicting mel frames and when to
stop (paper §4; Tacotron's decoder with the paper's z concatenated to the memory).

    previous frame ─ prenet FC [256, 128] (dropout 0.5, on at inference too) ─┐
    source memory ⊕ z ─ attention RNN (2-layer residual GRU) ─ attention ─ decoder GRU
                                    └─► r mel frames (tanh) + r stop logits per step

``frames_per_step`` (r) frames per step shortens the recurrence r times. Teacher forcing feeds
the last real frame of the previous step, so training is one GRU call per layer, as for text.
Decoding runs step by step until every row's stop probability passes 0.5 (or a frame limit).
The prenet dropout stays on when decoding: Tacotron found the decoder otherwise leans on its
input frame and fails to generalise from ground-truth inputs to its own.

Guided attention (Tachibana et al. 2018, not in the paper): under teacher forcing the decoder
also reports, per frame, how much of its attention falls far from the diagonal of the
(source position, output step) plane, W = 1 − exp(−(n/N − g/G)² / 2g²). The reconstruction loss
adds its mean (× ``guided_attention``). Speech follows its text monotonically, and without this
prior the alignment takes thousands of steps to appear — more than a CPU benchmark can run.
Every objective gets it, baselines included.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from m3dgan.audio.config import PAD_VALUE
from m3dgan.config import ModelConfig
from m3dgan.modalities.base import ModalitySpec
from m3dgan.modalities.sequence_decoder import AttentionRNNDecoder
from m3dgan.modalities.speech import frame_lengths


class FramePrenet(nn.Module):
    def __init__(self, n_mels: int, widths: list[int], dropout: float) -> None:
        super().__init__()
        dims = [n_mels, *widths]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:], strict=False))
        self.dropout = dropout
        self.out_dim = dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = F.dropout(F.relu(layer(x)), self.dropout, training=True)  # always on (see above)
        return x


class SpeechDecoder(AttentionRNNDecoder):
    def __init__(
        self,
        source: ModalitySpec,
        source_channels: int,
        n_mels: int,
        max_frames: int,
        z_dim: int,
        cfg: ModelConfig,
    ) -> None:
        prenet = FramePrenet(n_mels, cfg.frame_prenet, cfg.frame_dropout)
        super().__init__(source, source_channels, prenet.out_dim, z_dim, cfg)
        self.frame_prenet = prenet
        self.n_mels, self.max_frames, self.r = n_mels, max_frames, cfg.frames_per_step
        self.guided_attention, self.guide_width = cfg.guided_attention, 0.2
        self.to_frames = nn.Linear(self.out_dim, self.r * n_mels)
        self.to_stop = nn.Linear(self.out_dim, self.r)

    def _step(self, previous, memory, keys, mask, state=None):
        h, state, weights = self._core(self.frame_prenet(previous), memory, keys, mask, state)
        b, t, _ = h.shape
        frames = torch.tanh(self.to_frames(h)).view(b, t * self.r, self.n_mels)
        return frames, self.to_stop(h).view(b, t * self.r), state, weights

    def forward(
        self,
        source,
        z: torch.Tensor | None,
        target: torch.Tensor | None = None,
        max_frames: int | None = None,
    ) -> torch.Tensor:
        """Teacher forcing when ``target`` mels are given: [B, T, n_mels + 2] (frames, then the
        stop logit and the weighted guided-attention penalty of each frame; frames after each
        utterance's end are silence). Otherwise decoding: mels [B, T, n_mels], silence after
        each row's stop."""
        memory, mask = self.memory(source, z)
        keys = self.key(memory)
        if target is None:
            return self._decode(memory, keys, mask, max_frames or 2 * self.max_frames)
        target = target[..., : self.n_mels]
        b, t, _ = target.shape
        steps = math.ceil(t / self.r)
        padded = F.pad(target, (0, 0, 0, steps * self.r - t), value=PAD_VALUE)
        go = torch.full_like(padded[:, :1], PAD_VALUE)
        previous = torch.cat([go, padded[:, self.r - 1 :: self.r][:, :-1]], dim=1)
        frames, stop, _, weights = self._step(previous, memory, keys, mask)
        frames, stop = frames[:, :t], stop[:, :t]
        lengths = frame_lengths(target, self.n_mels)
        valid = torch.arange(t, device=target.device)[None] < lengths[:, None]
        frames = torch.where(valid.unsqueeze(-1), frames, torch.full_like(frames, PAD_VALUE))
        guide = self._off_diagonal(weights, mask, lengths).repeat_interleave(self.r, dim=1)[:, :t]
        aux = torch.stack([stop, self.guided_attention * guide], dim=-1).to(frames.dtype)
        return torch.cat([frames, aux], dim=-1)

    def _off_diagonal(self, weights, mask, lengths) -> torch.Tensor:
        """Attention mass per decoder step weighted by its distance from the diagonal, [B, G]."""
        b, g, m = weights.shape
        if m == 1:  # a single global source embedding: nothing to align
            return weights.new_zeros(b, g)
        n_src = mask.sum(1, keepdim=True).float().clamp_min(1)  # [B, 1]
        n_out = torch.ceil(lengths.float() / self.r).clamp_min(1)[:, None]  # [B, 1]
        src_pos = torch.arange(m, device=weights.device)[None, None] / n_src[:, :, None]
        out_pos = torch.arange(g, device=weights.device)[None, :, None] / n_out[:, :, None]
        w = 1 - torch.exp(-((src_pos - out_pos) ** 2) / (2 * self.guide_width**2))
        return (weights.float() * w).sum(-1)

    def _decode(self, memory, keys, mask, limit: int) -> torch.Tensor:
        b, dev = memory.shape[0], memory.device
        previous = torch.full((b, 1, self.n_mels), PAD_VALUE, device=dev, dtype=memory.dtype)
        lengths = torch.full((b,), limit, dtype=torch.long, device=dev)
        done = torch.zeros(b, dtype=torch.bool, device=dev)
        chunks, state, produced = [], None, 0
        while produced < limit:
            frames, stop, state, _ = self._step(previous, memory, keys, mask, state)
            chunks.append(frames)
            stopping = torch.sigmoid(stop.float()) > 0.5  # [B, r]
            first = torch.where(stopping.any(1), stopping.float().argmax(1), self.r)
            newly = ~done & stopping.any(1)
            lengths = torch.where(newly, produced + first + 1, lengths)
            done |= newly
            produced += self.r
            previous = frames[:, -1:]
            if bool(done.all()):
                break
        mel = torch.cat(chunks, dim=1)[:, :limit]
        mel = mel[:, : int(lengths.max())]
        valid = torch.arange(mel.shape[1], device=dev)[None] < lengths[:, None]
        return torch.where(valid.unsqueeze(-1), mel, torch.full_like(mel, PAD_VALUE))
