"""The speech modality: normalised log-mels in and out, vocoded with Griffin-Lim (paper §4).

Its codec is the data set's :class:`~m3dgan.audio.MelConfig` (sample rate, FFT, hop, mel bins),
saved in every checkpoint: audio inputs are read and outputs vocoded with the settings the
model was trained on.

Input policy (``m3dgan.audio.inputs``): any rate and channel count; silence at the ends is
trimmed; a source longer than twice the longest training utterance is an error, a longer
reference is cut with a warning; empty, silent or unreadable files are errors.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from m3dgan import paths
from m3dgan.audio import MelConfig, mel_to_wave, save_wav
from m3dgan.audio.inputs import pad_mels, read_mels
from m3dgan.config import ModelConfig
from m3dgan.data.store import read_manifest
from m3dgan.errors import CheckpointError, ConfigError, M3DGANError
from m3dgan.modalities.base import Modality, single_output_only
from m3dgan.modalities.speech.decoder import SpeechDecoder, SpeechDecoderOutput
from m3dgan.modalities.speech.duration_decoder import DurationSpeechDecoder
from m3dgan.modalities.speech.figures import speech_figures
from m3dgan.modalities.speech.frames import frame_lengths, stop_targets
from m3dgan.modalities.speech.nets import (
    SpeechDiscriminator,
    SpeechMemory,
    SpeechPrenet,
    SpeechReferenceEncoder,
    SpeechSummary,
)
from m3dgan.report.audio_page import AudioClip, GridSection, copy_clip, write_audio_page
from m3dgan.report.grid import make_grid, save_image
from m3dgan.report.output_page import OutputPage

if TYPE_CHECKING:
    from m3dgan.run_record import RunRecord


def mel_image(mel: torch.Tensor, n_mels: int) -> torch.Tensor:
    """Mel [T, ≥ n_mels] in [-1, 1] → an image [1, n_mels, T] with low frequencies at the bottom."""
    return mel[:, :n_mels].T.flip(0)[None]


class SpeechModality(Modality):
    """Speech sides: ``spec.channels`` = mel bins, ``spec.size`` = longest training utterance in
    frames; ``codec`` = the :class:`MelConfig`."""

    kind = "speech"
    file_suffix = ".wav"
    codec: MelConfig

    @classmethod
    def codec_from_record(cls, record: RunRecord, side: str) -> MelConfig:
        """The mel settings the checkpoint records. Checkpoints written before the settings were
        saved lack them; for those, the settings of the data set they name are read from its
        manifest if it is on this machine.

        Raises:
            CheckpointError: the settings are missing (and the data set is not here) or damaged.
        """
        settings, where = record.audio, record.where
        if not settings:
            settings, where = _dataset_mel_settings(record.dataset), "data set manifest"
        try:
            return MelConfig.from_dict(settings)
        except (ConfigError, TypeError) as exc:
            raise CheckpointError(f"{where} has damaged mel settings ({exc})") from exc

    # -- subnets --------------------------------------------------------------------------------
    def build_prenet(self, cfg: ModelConfig) -> nn.Module:
        return SpeechPrenet(self.spec.channels, cfg.prenet_channels, cfg.source_stride)

    def build_reference_prenet(self, cfg: ModelConfig) -> nn.Module:
        return SpeechPrenet(self.spec.channels, cfg.prenet_channels, cfg.reference_stride)

    def prenet_channels(self, cfg: ModelConfig) -> int:
        return cfg.prenet_channels[-1]

    def build_reference_encoder(self, cfg: ModelConfig) -> nn.Module:
        return SpeechReferenceEncoder(
            self.prenet_channels(cfg),
            cfg.nz,
            cfg.ref_channels,
            cfg.ref_gru,
            freq_size=math.ceil(self.spec.channels / cfg.reference_stride),
            time_stride=2,
        )

    def build_generator(self, source: Modality, z_dim: int, cfg: ModelConfig) -> nn.Module:
        decoder = DurationSpeechDecoder if cfg.speech_decoder == "duration" else SpeechDecoder
        return decoder(source, self.spec.channels, self.spec.size, z_dim, cfg)

    def build_discriminator(
        self, source: Modality, cfg: ModelConfig, outputs: int = 1
    ) -> nn.Module:
        single_output_only(self.spec.kind, outputs)
        return SpeechDiscriminator(source, self.spec.channels, cfg)

    def build_memory(self, cfg: ModelConfig) -> nn.Module:
        return SpeechMemory(
            self.prenet_channels(cfg),
            self.spec.channels,
            cfg.decoder_rnn,
            cfg.speech_memory_stride,
            prenet_stride=cfg.source_stride,
            layers=cfg.speech_memory_layers,
        )

    def build_summary(self, dim: int) -> nn.Module:
        return SpeechSummary(self.spec.channels, dim)

    # -- training terms -------------------------------------------------------------------------
    def output_sample(self, output: Any) -> torch.Tensor:
        return output.frames if isinstance(output, SpeechDecoderOutput) else output

    def reconstruction_loss(self, output: Any, real: torch.Tensor) -> torch.Tensor:
        """L1 between frames over each utterance's real frames, plus — when ``output`` is the
        decoder's teacher-forced :class:`SpeechDecoderOutput` — the stop cross-entropy, the
        mean guided-attention penalty, with a learned guide the aligner's forward-sum loss, and
        with a postnet the L1 of the frames before it too."""
        n_mels = self.spec.channels
        fake = self.output_sample(output).float()
        real = real[..., :n_mels].float()
        lengths = frame_lengths(real, n_mels)
        t = min(fake.shape[1], real.shape[1])
        valid = (torch.arange(t, device=real.device)[None] < lengths[:, None]).unsqueeze(-1)

        def l1_to_real(frames: torch.Tensor) -> torch.Tensor:
            diff = (frames.float()[:, :t, :n_mels] - real[:, :t]).abs() * valid
            return diff.sum() / (valid.sum().clamp_min(1) * n_mels)

        l1 = l1_to_real(fake)
        if not isinstance(output, SpeechDecoderOutput):
            return l1
        if output.frames_before_postnet is not None:  # model.speech_postnet: both ends learn
            l1 = l1 + l1_to_real(output.frames_before_postnet)
        stop = F.binary_cross_entropy_with_logits(
            output.stop_logits[:, :t].float(), stop_targets(lengths, t)
        )
        guide = (output.guide[:, :t].float() * valid[..., 0]).sum() / valid.sum().clamp_min(1)
        if output.align_loss is not None:  # model.attention_guide = "learned"
            guide = guide + output.align_loss.float().mean()
        return l1 + stop + guide

    def output_distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Mean absolute frame difference over the frames either output has, [B]."""
        n_mels = self.spec.channels
        la, lb = frame_lengths(a, n_mels), frame_lengths(b, n_mels)
        t = min(a.shape[1], b.shape[1])
        valid = torch.arange(t, device=a.device)[None] < torch.maximum(la, lb)[:, None]
        diff = (a[:, :t, :n_mels] - b[:, :t, :n_mels]).abs().mean(-1)
        return (diff * valid).sum(1) / valid.sum(1).clamp_min(1)

    # -- files ----------------------------------------------------------------------------------
    def read(self, path: Path, role: str = "source") -> torch.Tensor:
        """Audio → mels [1, T, n_mels]; a reference longer than twice the longest training
        utterance is cut (with a warning), a source that long is an error."""
        mel = read_mels(path, self.codec, max_frames=2 * self.spec.size, crop=role == "reference")
        return mel[None]

    def read_batch(self, paths: list[Path], role: str = "reference") -> torch.Tensor:
        return pad_mels([self.read(Path(p), role)[0] for p in paths])

    def to_waves(self, mels: torch.Tensor, iterations: int = 32) -> list[torch.Tensor]:
        """Generated mels [N, T, n_mels] → one waveform per row (Griffin-Lim, cut at its own
        end), at ``codec.sample_rate``."""
        lengths = frame_lengths(mels, mels.shape[-1])
        waves = mel_to_wave(mels.float().cpu(), self.codec, iterations, lengths.cpu())
        hop = self.codec.hop_length
        return [w[: max(int(n) - 1, 1) * hop] for w, n in zip(waves, lengths, strict=True)]

    def write(self, outputs: torch.Tensor, stems: list[Path]) -> list[Path]:
        paths = []
        for wave, stem in zip(self.to_waves(outputs), stems, strict=True):
            path = Path(f"{stem}{self.file_suffix}")
            save_wav(path, wave, self.codec.sample_rate)
            paths.append(path)
        return paths

    def output_page(
        self,
        folder: Path,
        page: OutputPage,
    ) -> Path | None:
        """An index.html with ``page.notes`` at the top and a player per output: one row per
        input, one column per reference (the content–style swap grid), token setting or random
        code. Each of the ``page.reference_files`` is copied into ``folder`` as
        ``reference<k><suffix>`` (as given, not as the model heard it) and played at the head of
        its column."""
        folder = Path(folder)
        heads = None
        if page.reference_files:
            heads = [
                copy_clip(path, folder, f"reference{k}{Path(path).suffix.lower()}", "as given")
                for k, path in enumerate(page.reference_files)
            ]
        cells = [[AudioClip(p.name) for p in written] for written in page.files]
        grid = GridSection("Outputs", page.rows, page.columns, cells, column_clips=heads)
        return write_audio_page(folder / "index.html", page.title, [grid], page.notes)

    def write_sample_panel(
        self,
        columns: list[tuple[str, torch.Tensor]],
        source: Modality,
        source_batch: torch.Tensor,
        folder: Path,
        name: str,
        writer: Any = None,
        step: int = 0,
        headers: list[torch.Tensor | None] | None = None,
    ) -> Path:
        """A PNG of the mel spectrograms (one row per source, low frequencies at the bottom) and
        WAVs of the first source's columns (Griffin-Lim) in ``folder/name/``."""
        n_mels, cfg = self.spec.channels, self.codec
        rows = [
            [mel_image(col[i], n_mels) for _, col in columns] for i in range(len(columns[0][1]))
        ]
        grid = make_grid(rows)
        path = Path(folder) / f"{name}.png"
        save_image(grid, path)
        waves = mel_to_wave(pad_mels([col[0, :, :n_mels].float().cpu() for _, col in columns]), cfg)
        audio_dir = Path(folder) / name
        for (column, _), wave in zip(columns, waves, strict=True):
            save_wav(audio_dir / f"{column}.wav", wave, cfg.sample_rate)
            if writer is not None:
                writer.add_audio(f"samples/{column}", wave[None], step, sample_rate=cfg.sample_rate)
        if writer is not None:
            writer.add_image("samples", grid, step)
        return path

    def training_figures(
        self, model: Any, fixed: dict[str, torch.Tensor], prediction: torch.Tensor
    ) -> dict[str, Any]:
        """The attention alignment and colour mels of the first fixed input
        (``speech.figures``)."""
        return speech_figures(model, fixed, prediction, self.spec.channels)


def _dataset_mel_settings(name: str) -> dict:
    """Mel settings of the data set an older checkpoint names (see ``codec_from_record``)."""
    root = paths.dataset_dir(name) if name else None
    if root is not None and (root / "manifest.json").is_file():
        try:
            audio = read_manifest(root).audio
        except M3DGANError:
            audio = {}
        if audio:
            return audio
    raise CheckpointError(
        "the checkpoint lacks the mel settings of its speech data (it was saved before "
        f"m3dgan recorded them) and its data set {name!r} is not on this machine to read "
        "them from; build or fetch that data set, or resume the run for one step with "
        "this version to save them"
    )
