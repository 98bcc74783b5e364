"""M_out for speech targets: the shared attention-RNN decoder predicting mel frames and when to
stop (paper §4; Tacotron's decoder with the paper's z concatenated to the memory).

    previous frame ─ prenet FC [256, 128] (dropout 0.5, on at inference too) ─┐
    source memory ⊕ z ─ attention RNN (2-layer residual GRU) ─ attention ─ decoder GRU
                                    └─► r mel frames (tanh) + r stop logits per step

``frames_per_step`` (r) frames per step shortens the recurrence r times. Teacher forcing feeds
the last real frame of the previous step, so training is one GRU call per layer, as for text.
Decoding runs step by step until every row's stop probability passes 0.5 (or a frame limit).
With ``model.speech_attention = "location"`` (default) the attention RNN also reads the previous
context (input feeding) and the attention adds location features of its previous and cumulative
weights (Tacotron 2's location-sensitive attention), so it knows where it is in the text; steps
then run one at a time in training too. ``"content"`` is the text decoder's parallel form
(content-only attention, one GRU call per layer), kept for comparison.
The prenet dropout stays on when decoding: Tacotron found the decoder otherwise leans on its
input frame and fails to generalise from ground-truth inputs to its own.

Guided attention (Tachibana et al. 2018, not in the paper): under teacher forcing the decoder
also reports, per frame, how much of its attention falls far from the diagonal of the
(source position, output step) plane, W = 1 − exp(−(n/N − g/G)² / 2g²). The reconstruction loss
adds its mean (× ``guided_attention``). Speech follows its text monotonically, and without this
prior the alignment takes thousands of steps to appear — more than a CPU benchmark can run.
Every objective gets it, baselines included. With ``model.attention_guide = "learned"`` the
penalty is measured from a learned monotonic alignment instead of the diagonal
(``speech.align``: an aligner trained by the forward-sum loss, its path by monotonic alignment
search), so it follows how long each text position is actually spoken; the aligner's loss joins
the reconstruction loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from m3dgan.audio.config import PAD_VALUE
from m3dgan.config import ModelConfig
from m3dgan.modalities.base import Modality
from m3dgan.modalities.sequence_decoder import AttentionRNNDecoder
from m3dgan.modalities.speech.align import Aligner, forward_sum_loss, monotonic_alignment
from m3dgan.modalities.speech.frames import frame_lengths

PATH_WIDTH = 1.0  # σ of the learned guide, in text positions


@dataclass
class SpeechDecoderOutput:
    """The speech decoder's teacher-forced output.

    - ``frames``: mels [B, T, n_mels] (silence after each utterance's end): the sample;
    - ``stop_logits``: [B, T], the logit of "this is the last frame";
    - ``guide``: [B, T], each frame's guided-attention penalty (× ``guided_attention``);
    - ``alignment``: attention weights [B, ceil(T / r), M] over the M source positions;
    - ``align_loss``: with ``model.attention_guide = "learned"``, the aligner's forward-sum
      loss per row, float32 [B] (nats per text position; ``speech.align``), else None;
    - ``frames_before_postnet``: with a postnet (``model.speech_postnet``), the mels before it
      [B, T, n_mels], which the reconstruction loss also pulls to the target (Tacotron 2);
      else None.

    ``stop_logits`` and ``guide`` have the frames' dtype (bf16 under autocast)."""

    frames: torch.Tensor
    stop_logits: torch.Tensor
    guide: torch.Tensor
    alignment: torch.Tensor
    align_loss: torch.Tensor | None = None
    frames_before_postnet: torch.Tensor | None = None


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
        source: Modality,
        n_mels: int,
        max_frames: int,
        z_dim: int,
        cfg: ModelConfig,
    ) -> None:
        prenet = FramePrenet(n_mels, cfg.frame_prenet, cfg.frame_dropout)
        if cfg.speech_attention not in ("location", "content"):
            raise ValueError(
                f"model.speech_attention must be 'location' or 'content', not {cfg.speech_attention!r}"
            )
        self.location = cfg.speech_attention == "location"
        if self.location and cfg.attention_score != "additive":
            raise ValueError(
                "location-sensitive attention (model.speech_attention=location) is additive; "
                f"model.attention_score={cfg.attention_score!r} needs speech_attention=content"
            )
        super().__init__(source, prenet.out_dim, z_dim, cfg, input_feeding=self.location)
        if self.location:
            a = cfg.decoder_attention_rnn
            # location features from the previous and the cumulative attention (Tacotron 2)
            self.location_conv = nn.Conv1d(2, 32, 31, padding=15, bias=False)
            self.location_proj = nn.Linear(32, a, bias=False)
        self.frame_prenet = prenet
        self.n_mels, self.max_frames, self.r = n_mels, max_frames, cfg.frames_per_step
        self.guided_attention, self.guide_width = cfg.guided_attention, 0.2
        # "learned": the guide follows an aligner's monotonic path instead of the diagonal
        self.aligner = Aligner(self.mem_dim, n_mels) if cfg.attention_guide == "learned" else None
        self.to_frames = nn.Linear(self.out_dim, self.r * n_mels)
        self.to_stop = nn.Linear(self.out_dim, self.r)

    def _step(self, previous, memory, keys, mask, state=None):
        """Previous frames [B, G, n_mels] → (frames [B, G·r, n_mels], stop logits [B, G·r],
        state, attention weights [B, G, M])."""
        if self.location:
            h, state, weights = self._located(
                self.frame_prenet(previous), memory, keys, mask, state
            )
        else:
            h, state, weights = self._core(self.frame_prenet(previous), memory, keys, mask, state)
        b, t, _ = h.shape
        frames = torch.tanh(self.to_frames(h)).view(b, t * self.r, self.n_mels)
        return frames, self.to_stop(h).view(b, t * self.r), state, weights

    def _located(self, x, memory, keys, mask, state=None):
        """The core with input feeding and location-sensitive attention, one step at a time.
        ``state`` = (GRU states, previous context, previous and cumulative attention)."""
        b, m = memory.shape[0], memory.shape[1]
        if state is None:
            zeros = memory.new_zeros(b, m)
            state = (None, None, None, memory.new_zeros(b, memory.shape[2]), zeros, zeros)
        s1, s2, s3, context, w_prev, w_cum = state
        outs, all_weights = [], []
        for g in range(x.shape[1]):
            h1, s1 = self.attention_rnn[0](torch.cat([x[:, g], context], -1)[:, None], s1)
            h2, s2 = self.attention_rnn[1](h1, s2)
            query = (h1 + h2)[:, 0]
            loc = self.location_conv(torch.stack([w_prev, w_cum], 1)).transpose(1, 2)
            energy = self.score(
                torch.tanh(self.query(query)[:, None] + keys + self.location_proj(loc))
            ).squeeze(-1)
            weights = F.softmax(energy.masked_fill(~mask, float("-inf")), dim=-1)
            context = (weights[:, None] @ memory)[:, 0]
            h3, s3 = self.decoder_rnn(torch.cat([query, context], -1)[:, None], s3)
            outs.append(torch.cat([h3[:, 0], context], -1))
            all_weights.append(weights)
            w_prev, w_cum = weights, w_cum + weights
        state = (s1, s2, s3, context, w_prev, w_cum)
        return torch.stack(outs, 1), state, torch.stack(all_weights, 1)

    def forward(
        self,
        source,
        z: torch.Tensor | None,
        target: torch.Tensor | None = None,
        max_frames: int | None = None,
    ) -> SpeechDecoderOutput | torch.Tensor:
        """Teacher forcing when ``target`` mels are given: a :class:`SpeechDecoderOutput`.
        Otherwise decoding: mels [B, T, n_mels], silence after each row's stop."""
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
        align_loss = None
        if self.aligner is not None and weights.shape[2] > 1:
            positions = mask.sum(1)
            log_p = self.aligner(memory, mask, target, lengths)
            align_loss = forward_sum_loss(log_p, lengths, positions)
            path = monotonic_alignment(log_p.detach(), lengths, positions)
            guide = self._off_path(weights, path)
        else:
            guide = self._off_diagonal(weights, mask, lengths)
        guide = guide.repeat_interleave(self.r, dim=1)[:, :t]
        return SpeechDecoderOutput(
            frames=frames,
            stop_logits=stop.to(frames.dtype),
            guide=(self.guided_attention * guide).to(frames.dtype),
            alignment=weights,
            align_loss=align_loss,
        )

    def _off_path(self, weights, path) -> torch.Tensor:
        """Attention mass per decoder step weighted by its distance from the aligner's path,
        [B, G]: step g should attend near the text position the path gives its middle frame,
        W = 1 − exp(−(m − a_g)² / 2σ²) with σ = ``PATH_WIDTH`` positions."""
        b, g, m = weights.shape
        middle = (torch.arange(g, device=path.device) * self.r + self.r // 2).clamp_max(
            path.shape[1] - 1
        )
        centre = path[:, middle].float()  # [B, G]
        pos = torch.arange(m, device=weights.device, dtype=torch.float32)[None, None]
        w = 1 - torch.exp(-((pos - centre[:, :, None]) ** 2) / (2 * PATH_WIDTH**2))
        return (weights.float() * w).sum(-1)

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
