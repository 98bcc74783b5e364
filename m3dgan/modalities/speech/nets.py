"""Speech modality subnets (paper §4, appendix §7): speech is a mel spectrogram treated as an image.

Samples are normalised log-mels [B, T, n_mels] in [-1, 1] (``m3dgan.audio``); -1 is the silence
floor and pads a batch (lengths and masks: ``modalities/speech/frames.py``). The subnets read
the first ``n_mels`` channels of what they are given.

- prenet M_in: 2-layer conv2d [32, 32] over the mel "image" (the image prenet), plus lengths;
- Enc_r: the shared reference encoder (4 conv2d [64, 64, 128, 128], stride 2 in time and
  frequency as in GST) with its GRU run on the real frames only;
- generator M_out: ``modalities/speech/decoder.py`` (the shared attention-RNN decoder);
- discriminator: a conditional 1-D conv net over frames (``SpeechDiscriminator``);
- as a source: an attention memory for sequential decoders (``SpeechMemory``, speech→text) and
  a summary vector for other modalities' discriminators (``SpeechSummary``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from m3dgan.audio.config import PAD_VALUE
from m3dgan.config import ModelConfig
from m3dgan.core.attention import Posterior, ReferenceEncoder
from m3dgan.core.safe_conv import Conv2d
from m3dgan.modalities.base import Modality, SequenceFeatures
from m3dgan.modalities.image.nets import ImagePrenet
from m3dgan.modalities.speech.frames import (
    frame_lengths,
    masked_conv_stack,
    strided_lengths,
    time_mask,
)


@dataclass
class SpeechFeatures:
    """A speech prenet's output: a conv grid [B, C, n_mels, T] and the utterance lengths [B]."""

    grid: torch.Tensor
    lengths: torch.Tensor


class SpeechPrenet(nn.Module):
    """M_in for speech: mels [B, T, ≥ n_mels] → :class:`SpeechFeatures` (conv2d [32, 32]):
    a grid [B, channels[-1], n_mels / stride, T / stride] (rounded up) and its lengths.
    ``stride``: the first conv's, in time and frequency (``model.reference_stride``).

    The mel is shifted by +1 so that silence (and padding) is 0, like a convolution's padding."""

    def __init__(self, n_mels: int, channels: list[int], stride: int = 1) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.convs = ImagePrenet(1, channels, stride)

    def forward(self, x: torch.Tensor) -> SpeechFeatures:
        mel = x[..., : self.n_mels]
        lengths = frame_lengths(mel, self.n_mels)
        grid = (mel - PAD_VALUE).transpose(1, 2).unsqueeze(1)  # [B, 1, n_mels, T]
        grid = grid * time_mask(lengths, grid.shape[-1], grid)
        grid, lengths = masked_conv_stack(self.convs.net, grid, lengths)
        return SpeechFeatures(grid, lengths)


class SpeechReferenceEncoder(ReferenceEncoder):
    """Enc_r for speech: the shared conv stack, then the GRU over each utterance's own frames
    (packed), so padding never reaches the reference embedding."""

    def forward(self, features: SpeechFeatures) -> Posterior:  # type: ignore[override]
        h, lengths = masked_conv_stack(self.convs, features.grid, features.lengths)
        b, c, f, t = h.shape
        h = h.permute(0, 3, 1, 2).reshape(b, t, c * f)
        lengths = lengths.clamp(1, t)
        packed = pack_padded_sequence(h, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed)
        mu, logvar = self.to_posterior(last[-1]).chunk(2, dim=-1)
        return Posterior(mu, logvar.clamp(-10.0, 10.0))


class SpeechMemory(nn.Module):
    """Speech as a *source* (speech→text): prenet grid → a ``time_stride``× shorter sequence of
    ``dim`` states (two conv2d, stride 2 in frequency, a projection, ``layers`` bidirectional GRU
    layers over real frames) for the decoder's attention and, under ``model.ctc_weight``, its
    CTC head.

    ``time_stride`` (``model.speech_memory_stride``): the memory's stride in time relative to
    the mel frames, prenet included. 4 — 62.5 frames/s → 15.6 positions/s, the default; 2 —
    31.25 positions/s. CTC (``model.ctc_weight``) needs at least one position per target
    character plus one per pair of equal neighbours: trimmed espeak-ng speech runs at about
    17 characters/s at 165–175 words/min and 21–24 at 210–220 (measured on the test sentences of
    tests/test_ctc.py), so at stride 4 almost no utterance can be aligned, while stride 2 leaves
    1.3–1.8 positions per character (ESPnet's 4× subsampling of 10 ms frames: 25 positions/s).
    The alternative, a CTC head on the first conv's 2× grid, would read features with a
    receptive field of about 0.1 s and no recurrence; here CTC and attention share the whole
    encoder, as in Watanabe et al. 2017.

    ``prenet_stride`` (``model.source_stride``): the stride the source prenet's first conv
    already took in time and frequency (1 or 2); the memory's convs stride by 2 in time only
    while the total is below ``time_stride`` (their stride in frequency is always 2).
    ``layers`` (``model.speech_memory_layers``): stacked bidirectional GRU layers (ESPnet's
    and the judge ASR's encoders stack 3 or more).

    Raises:
        ValueError: ``time_stride`` not 2 or 4, ``prenet_stride`` not 1 or 2, ``layers`` < 1.
    """

    def __init__(
        self,
        channels: int,
        n_mels: int,
        dim: int,
        time_stride: int = 4,
        prenet_stride: int = 1,
        layers: int = 1,
    ) -> None:
        super().__init__()
        if time_stride not in (2, 4):
            raise ValueError(f"speech memory time stride must be 2 or 4, got {time_stride}")
        if prenet_stride not in (1, 2):
            raise ValueError(f"speech source prenet stride must be 1 or 2, got {prenet_stride}")
        if layers < 1:
            raise ValueError(f"speech memory needs at least one GRU layer, got {layers}")
        remaining = time_stride // prenet_stride  # 1, 2 or 4: the time stride the convs add
        first = 2 if remaining >= 2 else (2, 1)  # (frequency, time)
        second = 2 if remaining == 4 else (2, 1)
        self.convs = nn.Sequential(
            Conv2d(channels, 64, 3, stride=first, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            Conv2d(64, 64, 3, stride=second, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        )
        # frequency: halved by a strided prenet, then by both convs
        freq = strided_lengths(torch.tensor(n_mels), prenet_stride // 2 + 2).item()
        self.proj = nn.Linear(64 * freq, dim)
        self.gru = nn.GRU(dim, dim // 2, num_layers=layers, batch_first=True, bidirectional=True)
        self.out_dim = dim
        self.time_stride = time_stride

    def forward(self, features: SpeechFeatures) -> SequenceFeatures:
        h, lengths = masked_conv_stack(self.convs, features.grid, features.lengths)
        b, c, f, t = h.shape
        h = F.leaky_relu(self.proj(h.permute(0, 3, 1, 2).reshape(b, t, c * f)), 0.2)
        lengths = lengths.clamp(1, t)
        packed = pack_padded_sequence(h, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=t)
        mask = torch.arange(t, device=h.device)[None] < lengths.to(h.device)[:, None]
        return SequenceFeatures(out, mask)


class SpeechSummary(nn.Module):
    """Speech source → one vector for a conditional discriminator: strided 1-D convs over frames,
    mean over each utterance's real frames, [B, dim]."""

    def __init__(self, n_mels: int, dim: int) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.net = nn.Sequential(
            nn.Conv1d(n_mels, dim, 5, stride=2, padding=2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv1d(dim, dim, 5, stride=2, padding=2),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lengths = frame_lengths(x, self.n_mels)
        h = self.net(x[..., : self.n_mels].transpose(1, 2))  # [B, dim, T/4]
        t = h.shape[-1]
        keep = torch.arange(t, device=h.device)[None] < strided_lengths(lengths, 2)[:, None]
        m = keep.unsqueeze(1).to(h.dtype)
        return (h * m).sum(-1) / m.sum(-1).clamp_min(1.0)


class SpeechDiscriminator(nn.Module):
    """D(S, T) for speech targets: 1-D convs over the frames (mel bins as channels), a score per
    position that is conditioned on the source summary by projection (ψ(h) + ⟨φ(S), h⟩), averaged
    over the utterance's real positions — a PatchGAN over time."""

    def __init__(self, source: Modality, n_mels: int, cfg: ModelConfig) -> None:
        """``source``: the source side's modality, which supplies its summary."""
        super().__init__()
        dim = cfg.disc_channels
        self.n_mels, self.layers = n_mels, max(cfg.disc_layers, 1)
        layers: list[nn.Module] = []
        prev = n_mels
        for i in range(self.layers):
            width = dim * min(2**i, 4)
            layers += [nn.Conv1d(prev, width, 5, stride=2, padding=2), nn.LeakyReLU(0.2, True)]
            prev = width
        self.convs = nn.Sequential(*layers)
        self.source = source.build_summary(dim)
        self.psi = nn.Conv1d(prev, 1, 3, padding=1)
        self.phi = nn.Linear(dim, prev, bias=False)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        lengths = frame_lengths(target, self.n_mels)
        h = self.convs(target[..., : self.n_mels].transpose(1, 2))  # [B, C, T']
        scores = self.psi(h).squeeze(1) + torch.einsum(
            "bc,bct->bt", self.phi(self.source(source)), h
        )
        t = h.shape[-1]
        keep = (
            torch.arange(t, device=h.device)[None] < strided_lengths(lengths, self.layers)[:, None]
        )
        keep = keep.to(scores.dtype)
        return ((scores * keep).sum(-1) / keep.sum(-1).clamp_min(1.0)).unsqueeze(-1)
