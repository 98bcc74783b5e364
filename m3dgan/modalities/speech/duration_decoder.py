"""M_out for speech targets without attention: durations, then all frames at once
(``model.speech_decoder = "duration"``; not the paper's decoder, which is ``"attention"``).

The paper's Tacotron-style decoder has to *discover* which text position each frame speaks, one
frame after the other, and on a CPU budget it rarely does. This decoder is told instead, as
FastSpeech 2 (Ren et al. 2021) and FastPitch (Łańcucki 2021) are, and learns the alignment the way
RAD-TTS does (Badlani et al. 2022), so it needs no durations from the synthesizer and trains on
any corpus:

    source memory ⊕ z ─┬─ aligner (forward-sum loss) ─ monotonic alignment search ─► durations
                       ├─ duration predictor (2 convs, on the memory without gradient; MSE of
                       │  log(1 + d), FastSpeech 2) ─► durations when decoding
                       └─ length regulator: each position's state repeated for its frames,
                          plus the frame's relative place inside its position
                          ─ residual conv stack ─► mel frames (tanh)
                            (``model.frame_layers`` convs of kernel 5, dilation
                            ``model.frame_dilation``^i: what a frame sees of its neighbours;
                            ``model.frame_style_norm``: z sets each LayerNorm's gain and bias)
                          ─ postnet (``model.speech_postnet`` > 0: a residual from 5 convs,
                            Tacotron 2's) ─► refined mel frames (tanh)

In training both branches use the target's durations (teacher forcing, as the attention decoder
feeds the target's frames); decoding uses the predicted ones, so an output always ends, and its
length follows z (the style's speaking rate) through the memory. The aligner's and the duration
predictor's losses join the reconstruction loss through ``SpeechDecoderOutput.align_loss``.
The length is known from the durations, so there is no stop head: the stop logits are ±
``STOP_LOGIT`` from each row's length (the stop loss is then about 0, with no gradient).
``alignment`` is the aligner's soft alignment, for the training figures.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from m3dgan.audio.config import PAD_VALUE
from m3dgan.config import ModelConfig
from m3dgan.modalities.base import Modality
from m3dgan.modalities.sequence_decoder import SourceMemory
from m3dgan.modalities.speech.align import Aligner, forward_sum_loss, monotonic_alignment
from m3dgan.modalities.speech.decoder import SpeechDecoderOutput
from m3dgan.modalities.speech.frames import frame_lengths, stop_targets

PREDICTOR_CHANNELS = 256  # FastSpeech 2's variance predictors: 2 convs of 256, kernel 3
PREDICTOR_DROPOUT = 0.5
FRAME_KERNEL = 5  # the frame stack's convs (model.frame_layers of them)
FRAME_DROPOUT = 0.1
POSTNET_LAYERS, POSTNET_DROPOUT = 5, 0.5  # Tacotron 2's
STOP_LOGIT = 20.0  # the certain stop logit: BCE of ±20 against its own target is ~2e-9


class DurationPredictor(nn.Module):
    """Memory [B, N, D] → log(1 + frames) per position [B, N] (FastSpeech 2's predictor)."""

    def __init__(self, dim: int, channels: int = PREDICTOR_CHANNELS) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [nn.Conv1d(dim, channels, 3, padding=1), nn.Conv1d(channels, channels, 3, padding=1)]
        )
        self.norms = nn.ModuleList([nn.LayerNorm(channels), nn.LayerNorm(channels)])
        self.out = nn.Linear(channels, 1)

    def forward(self, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = memory * mask[..., None]
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = conv(x.transpose(1, 2)).transpose(1, 2)
            x = F.dropout(norm(F.relu(x)), PREDICTOR_DROPOUT, self.training) * mask[..., None]
        return self.out(x).squeeze(-1)


class Postnet(nn.Module):
    """Mels [B, T, n_mels] → a residual [B, T, n_mels] (pre-tanh): 5 convs of kernel 5, the
    first four ``channels`` wide with LayerNorm, tanh and dropout 0.5, the last back to the mels
    (Tacotron 2's postnet, with LayerNorm for its BatchNorm). Frames past each row's end are
    zeroed before every conv, so a row does not depend on its batch's padding."""

    def __init__(self, n_mels: int, channels: int, layers: int = POSTNET_LAYERS) -> None:
        super().__init__()
        dims = [n_mels] + [channels] * (layers - 1) + [n_mels]
        self.convs = nn.ModuleList(
            nn.Conv1d(a, b, FRAME_KERNEL, padding=FRAME_KERNEL // 2)
            for a, b in zip(dims, dims[1:], strict=False)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(channels) for _ in range(layers - 1))

    def forward(self, mels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = mels * valid
        for i, conv in enumerate(self.convs):
            x = conv(x.transpose(1, 2)).transpose(1, 2)
            if i < len(self.norms):
                x = F.dropout(torch.tanh(self.norms[i](x)), POSTNET_DROPOUT, self.training)
            x = x * valid
        return x


class StyleAdaptiveNorm(nn.Module):
    """LayerNorm over the channels of [B, T, C] whose gain and bias come from the style code
    z [B, z_dim]: norm(x) · (1 + γ(z)) + β(z) (Meta-StyleSpeech's style-adaptive layer norm,
    Min et al. 2021). γ and β start at zero, so a new stack starts as a plain LayerNorm."""

    def __init__(self, channels: int, z_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, elementwise_affine=False)
        self.affine = nn.Linear(z_dim, 2 * channels)
        nn.init.zeros_(self.affine.weight)
        nn.init.zeros_(self.affine.bias)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        gain, bias = self.affine(z)[:, None, :].chunk(2, dim=-1)
        return self.norm(x) * (1 + gain) + bias


class DurationSpeechDecoder(SourceMemory):
    """Speech M_out by durations (module docstring). Same calls and outputs as
    :class:`~m3dgan.modalities.speech.decoder.SpeechDecoder`: teacher-forced with ``target``
    mels [B, T, n_mels] → :class:`SpeechDecoderOutput`; without → mels [B, T', n_mels] in
    [-1, 1], silence (``PAD_VALUE``) after each row's end."""

    def __init__(
        self, source: Modality, n_mels: int, max_frames: int, z_dim: int, cfg: ModelConfig
    ) -> None:
        super().__init__(source, z_dim, cfg)
        self.n_mels, self.max_frames = n_mels, max_frames
        self.aligner = Aligner(self.mem_dim, n_mels)
        self.durations = DurationPredictor(self.mem_dim)
        width = cfg.decoder_rnn
        self.frame_in = nn.Linear(self.mem_dim + 1, width)
        dilations = [cfg.frame_dilation**i for i in range(cfg.frame_layers)]
        self.frame_convs = nn.ModuleList(
            nn.Conv1d(width, width, FRAME_KERNEL, padding=d * (FRAME_KERNEL // 2), dilation=d)
            for d in dilations
        )
        if cfg.frame_style_norm and not z_dim:
            raise ValueError("model.frame_style_norm needs a style code: z_dim is 0")
        self.style_norm = cfg.frame_style_norm
        self.frame_norms = nn.ModuleList(
            StyleAdaptiveNorm(width, z_dim) if self.style_norm else nn.LayerNorm(width)
            for _ in dilations
        )
        self.to_frames = nn.Linear(width, n_mels)
        self.postnet = Postnet(n_mels, cfg.speech_postnet) if cfg.speech_postnet else None

    def forward(
        self,
        source,
        z: torch.Tensor | None,
        target: torch.Tensor | None = None,
        max_frames: int | None = None,
    ) -> SpeechDecoderOutput | torch.Tensor:
        memory, mask = self.memory(source, z)
        positions = mask.sum(1)
        predicted = self.durations(memory.detach(), mask)  # log(1 + frames) [B, N]
        if target is None:
            return self._decode(memory, mask, predicted, max_frames or 2 * self.max_frames)
        target = target[..., : self.n_mels]
        t = target.shape[1]
        lengths = frame_lengths(target, self.n_mels)
        log_p = self.aligner(memory, mask, target, lengths)
        path = monotonic_alignment(log_p.detach(), lengths, positions)  # [B, T]
        valid = torch.arange(t, device=target.device)[None] < lengths[:, None]
        # frames per position, float32 (exact counts under autocast too)
        counts = torch.zeros(predicted.shape, device=path.device).scatter_add_(
            1, path, valid.float()
        )
        duration_loss = ((predicted.float() - torch.log1p(counts)) ** 2 * mask).sum(1)
        duration_loss = duration_loss / positions.clamp_min(1)
        frames, before = self._frames(memory, path, counts, lengths)
        stop = (2 * stop_targets(lengths, t) - 1) * STOP_LOGIT  # the length is known
        return SpeechDecoderOutput(
            frames=frames,
            stop_logits=stop.to(frames.dtype),
            guide=frames.new_zeros(frames.shape[:2]),
            alignment=log_p.exp().to(frames.dtype),
            align_loss=forward_sum_loss(log_p, lengths, positions) + duration_loss,
            frames_before_postnet=before,
        )

    def _frames(
        self, memory: torch.Tensor, path: torch.Tensor, counts: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The length regulator, the frame convs and the postnet: memory [B, N, D], each frame's
        position ``path`` [B, T], frames per position ``counts`` [B, N], ``lengths`` [B] → mels
        [B, T, n_mels], PAD_VALUE after each row's end, and the mels before the postnet (None
        without one)."""
        t = path.shape[1]
        regulated = memory.gather(1, path[..., None].expand(-1, -1, memory.shape[-1]))
        starts = torch.cumsum(counts, 1) - counts  # first frame of each position
        frame = torch.arange(t, device=path.device, dtype=counts.dtype)[None]
        inside = (frame - starts.gather(1, path)) / counts.gather(1, path).clamp_min(1)
        x = self.frame_in(torch.cat([regulated, inside[..., None].to(regulated.dtype)], -1))
        valid = (torch.arange(t, device=path.device)[None] < lengths[:, None])[..., None]
        x = x * valid
        z = memory[:, 0, -self.z_dim :] if self.style_norm else None  # z sits at every position
        for conv, norm in zip(self.frame_convs, self.frame_norms, strict=True):
            h = F.relu(conv(x.transpose(1, 2)).transpose(1, 2))
            h = F.dropout(norm(h, z) if self.style_norm else norm(h), FRAME_DROPOUT, self.training)
            x = (x + h) * valid  # zeros past the end: a row does not depend on its batch's padding
        logits = self.to_frames(x)
        silence = torch.full(logits.shape, PAD_VALUE, dtype=logits.dtype, device=logits.device)
        decoded = torch.tanh(logits)
        frames = torch.where(valid, decoded, silence)
        if self.postnet is None:
            return frames, None
        refined = torch.tanh(logits + self.postnet(decoded, valid))
        return torch.where(valid, refined, silence), frames

    def _decode(
        self, memory: torch.Tensor, mask: torch.Tensor, predicted: torch.Tensor, limit: int
    ) -> torch.Tensor:
        """Predicted durations (rounded, at least one frame per real position) → mels, at most
        ``limit`` frames per row."""
        counts = torch.expm1(predicted.float()).round().clamp_min(1) * mask
        ends = torch.cumsum(counts, 1)  # [B, N]
        lengths = ends[:, -1].long().clamp(1, limit)
        t = int(lengths.max())
        frame = torch.arange(t, device=memory.device, dtype=ends.dtype)[None].expand(len(ends), -1)
        last = (mask.sum(1) - 1).clamp_min(0)[:, None]
        path = torch.minimum(
            torch.searchsorted(ends.contiguous(), frame.contiguous(), right=True), last
        )
        return self._frames(memory, path, counts, lengths)[0]
