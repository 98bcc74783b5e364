"""Speech modality subnets (paper §4, appendix §7): speech is a mel spectrogram treated as an image.

Samples are normalised log-mels [B, T, n_mels] in [-1, 1] (``m3dgan.audio``); -1 is the silence
floor and pads a batch, so an utterance's length is the index after its last frame above the floor
(:func:`frame_lengths`). Generated speech under teacher forcing carries two more channels per
frame, its stop logit and its guided-attention penalty ([B, T, n_mels + 2]); every speech subnet
reads only the first n_mels channels, and the reconstruction loss reads all (L1 on frames,
cross-entropy on stop, the mean penalty).

- prenet M_in: 2-layer conv2d [32, 32] over the mel "image" (the image prenet), plus lengths;
- Enc_r: the shared reference encoder (4 conv2d [64, 64, 128, 128], stride 2 in time and
  frequency as in GST) with its GRU run on the real frames only;
- generator M_out: ``speech_decoder.SpeechDecoder`` (the shared attention-RNN decoder);
- discriminator: a conditional 1-D conv net over frames (``SpeechDiscriminator``);
- as a source (speech→text), the prenet grid becomes an attention memory (``SpeechMemory``).
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
from m3dgan.modalities.base import Modality, ModalitySpec
from m3dgan.modalities.text import TextFeatures

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


@dataclass
class SpeechFeatures:
    """A speech prenet's output: a conv grid [B, C, n_mels, T] and the utterance lengths [B]."""

    grid: torch.Tensor
    lengths: torch.Tensor


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


class SpeechPrenet(nn.Module):
    """M_in for speech: mels [B, T, ≥ n_mels] → :class:`SpeechFeatures` (conv2d [32, 32]).

    The mel is shifted by +1 so that silence (and padding) is 0, like a convolution's padding."""

    def __init__(self, n_mels: int, channels: list[int]) -> None:
        super().__init__()
        from m3dgan.modalities.image import ImagePrenet

        self.n_mels = n_mels
        self.convs = ImagePrenet(1, channels)

    def forward(self, x: torch.Tensor) -> SpeechFeatures:
        mel = x[..., : self.n_mels]
        lengths = frame_lengths(mel, self.n_mels)
        grid = (mel - PAD_VALUE).transpose(1, 2).unsqueeze(1)  # [B, 1, n_mels, T]
        grid = grid * time_mask(lengths, grid.shape[-1], grid)
        grid, _ = masked_conv_stack(self.convs.net, grid, lengths)
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
    """Speech as a *source* (speech→text): prenet grid → 4× shorter sequence of ``dim`` states
    (two strided conv2d, a projection, a bidirectional GRU over real frames) for the decoder's
    attention."""

    def __init__(self, channels: int, n_mels: int, dim: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            Conv2d(channels, 64, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            Conv2d(64, 64, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        )
        freq = strided_lengths(torch.tensor(n_mels), 2).item()
        self.proj = nn.Linear(64 * freq, dim)
        self.gru = nn.GRU(dim, dim // 2, batch_first=True, bidirectional=True)

    def forward(self, features: SpeechFeatures) -> TextFeatures:
        h, lengths = masked_conv_stack(self.convs, features.grid, features.lengths)
        b, c, f, t = h.shape
        h = F.leaky_relu(self.proj(h.permute(0, 3, 1, 2).reshape(b, t, c * f)), 0.2)
        lengths = lengths.clamp(1, t)
        packed = pack_padded_sequence(h, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=t)
        mask = torch.arange(t, device=h.device)[None] < lengths.to(h.device)[:, None]
        return TextFeatures(out, mask)


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

    def __init__(self, source: ModalitySpec, n_mels: int, cfg: ModelConfig) -> None:
        super().__init__()
        from m3dgan.modalities.conditioning import source_summary

        dim = cfg.disc_channels
        self.n_mels, self.layers = n_mels, max(cfg.disc_layers, 1)
        layers: list[nn.Module] = []
        prev = n_mels
        for i in range(self.layers):
            width = dim * min(2**i, 4)
            layers += [nn.Conv1d(prev, width, 5, stride=2, padding=2), nn.LeakyReLU(0.2, True)]
            prev = width
        self.convs = nn.Sequential(*layers)
        self.source = source_summary(source, dim)
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


def stop_targets(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """1 from each utterance's last frame on, 0 before it, float [B, frames]."""
    positions = torch.arange(frames, device=lengths.device)[None]
    return (positions >= (lengths[:, None] - 1)).float()


class SpeechModality(Modality):
    """The speech factory. It learns the number of mel bins from the spec its builders are given
    (every model builds a generator and a discriminator for its target), so the losses can tell
    mel channels from the generator's stop channel."""

    kind = "speech"
    n_mels: int = 80

    def build_prenet(self, spec: ModalitySpec, cfg: ModelConfig) -> nn.Module:
        return SpeechPrenet(spec.channels, cfg.prenet_channels)

    def prenet_channels(self, cfg: ModelConfig) -> int:
        return cfg.prenet_channels[-1]

    def build_reference_encoder(self, spec: ModalitySpec, cfg: ModelConfig) -> nn.Module:
        return SpeechReferenceEncoder(
            self.prenet_channels(cfg),
            cfg.nz,
            cfg.ref_channels,
            cfg.ref_gru,
            freq_size=spec.channels,
            time_stride=2,
        )

    def build_generator(
        self,
        source: ModalitySpec,
        target: ModalitySpec,
        source_channels: int,
        z_dim: int,
        cfg: ModelConfig,
    ) -> nn.Module:
        self.n_mels = target.channels
        if source.kind == "image":
            raise ValueError("image→speech is not a task of the paper; no generator for it")
        from m3dgan.modalities.speech_decoder import SpeechDecoder

        return SpeechDecoder(source, source_channels, target.channels, target.size, z_dim, cfg)

    def build_discriminator(
        self, source: ModalitySpec, target: ModalitySpec, cfg: ModelConfig
    ) -> nn.Module:
        self.n_mels = target.channels
        return SpeechDiscriminator(source, target.channels, cfg)

    def reconstruction_loss(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """L1 between frames over each utterance's real frames, plus — when ``fake`` is
        teacher-forced generator output — the stop cross-entropy and the guided-attention
        penalty."""
        n_mels = self.n_mels
        real = real[..., :n_mels]
        lengths = frame_lengths(real, n_mels)
        t = min(fake.shape[1], real.shape[1])
        valid = (torch.arange(t, device=real.device)[None] < lengths[:, None]).unsqueeze(-1)
        l1 = ((fake[:, :t, :n_mels] - real[:, :t]).abs() * valid).sum() / (
            valid.sum().clamp_min(1) * n_mels
        )
        if fake.shape[-1] == n_mels:
            return l1
        stop = F.binary_cross_entropy_with_logits(
            fake[:, :t, n_mels].float(), stop_targets(lengths, t)
        )
        guide = (fake[:, :t, n_mels + 1].float() * valid[..., 0]).sum() / valid.sum().clamp_min(1)
        return l1 + stop + guide

    def output_distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Mean absolute frame difference over the frames either output has, [B] (mel channels
        only; stop logits are not part of the sound)."""
        n_mels = self.n_mels
        la, lb = frame_lengths(a, n_mels), frame_lengths(b, n_mels)
        t = min(a.shape[1], b.shape[1])
        valid = torch.arange(t, device=a.device)[None] < torch.maximum(la, lb)[:, None]
        diff = (a[:, :t, :n_mels] - b[:, :t, :n_mels]).abs().mean(-1)
        return (diff * valid).sum(1) / valid.sum(1).clamp_min(1)
