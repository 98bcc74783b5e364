"""The text modality: token ids in, token distributions or ids out (paper §4, appendix §7).

Its codec is the run's :class:`~m3dgan.modalities.text.vocab.Vocabulary` (characters, or the
data set's sentencepiece model), saved in every checkpoint.

Input policy: text files are read as UTF-8; empty text and text longer than twice the longest
training text are errors (``InputError``); characters the vocabulary lacks become <unk> with a
warning.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from m3dgan.atomic import write_text
from m3dgan.config import ModelConfig
from m3dgan.errors import CheckpointError, InputError
from m3dgan.modalities.base import Modality, single_output_only
from m3dgan.modalities.text.ctc import ctc_loss
from m3dgan.modalities.text.decoder import TextDecoder, TextDecoderOutput
from m3dgan.modalities.text.discriminator import TextDiscriminator
from m3dgan.modalities.text.nets import TextPrenet, TextReferenceEncoder, TextSummary
from m3dgan.modalities.text.vocab import PAD, Vocabulary, vocabulary_from_dict

if TYPE_CHECKING:
    from m3dgan.run_record import RunRecord


AUDIO_OR_IMAGE_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".png", ".jpg", ".jpeg"}


def read_text_file(path: Path) -> str:
    """A UTF-8 text file's content; InputError naming the file if it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        hint = ""
        if Path(path).suffix.lower() in AUDIO_OR_IMAGE_SUFFIXES:
            hint = f"; this side of the task is text: give a UTF-8 .txt file or --text, not a {Path(path).suffix} file"
        raise InputError(f"{path}: cannot read text ({exc}){hint}") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read text ({exc})") from exc


class TextModality(Modality):
    """Text sides: ``spec.channels`` = vocabulary size, ``spec.size`` = longest training sequence
    in tokens; ``codec`` = the :class:`Vocabulary`."""

    kind = "text"
    file_suffix = ".txt"
    beam_search = True
    codec: Vocabulary

    @classmethod
    def codec_from_record(cls, record: RunRecord, side: str) -> Vocabulary:
        data = record.vocab.get(side)
        if data is None:
            raise CheckpointError(f"{record.where}: lacks the {side} vocabulary")
        try:
            return vocabulary_from_dict(data)
        except (KeyError, TypeError, ValueError, InputError) as exc:
            raise CheckpointError(f"{record.where}: damaged vocabulary ({exc})") from exc

    # -- subnets --------------------------------------------------------------------------------
    def build_prenet(self, cfg: ModelConfig) -> nn.Module:
        return TextPrenet(self.spec.channels, cfg)

    def build_reference_prenet(self, cfg: ModelConfig) -> nn.Module:
        return TextPrenet(self.spec.channels, cfg, cfg.reference_cbhg_bank)

    def prenet_channels(self, cfg: ModelConfig) -> int:
        return 2 * cfg.text_gru

    def build_reference_encoder(self, cfg: ModelConfig) -> nn.Module:
        return TextReferenceEncoder(self.prenet_channels(cfg), cfg.nz)

    def build_generator(self, source: Modality, z_dim: int, cfg: ModelConfig) -> nn.Module:
        return TextDecoder(source, self.spec.channels, self.spec.size, z_dim, cfg)

    def build_discriminator(
        self, source: Modality, cfg: ModelConfig, outputs: int = 1
    ) -> nn.Module:
        single_output_only(self.spec.kind, outputs)
        return TextDiscriminator(source, self.spec.channels, cfg)

    def build_memory(self, cfg: ModelConfig) -> nn.Module | None:
        return None  # the prenet's states are a sequence already

    def build_summary(self, dim: int) -> nn.Module:
        return TextSummary(self.spec.channels, dim)

    # -- training terms -------------------------------------------------------------------------
    def output_sample(self, output: Any) -> torch.Tensor:
        return output.probs if isinstance(output, TextDecoderOutput) else output

    def reconstruction_loss(
        self,
        output: torch.Tensor | TextDecoderOutput,
        real: torch.Tensor,
        label_smoothing: float = 0.0,
        ctc_weight: float = 0.0,
        normalization: str = "tokens",
    ) -> torch.Tensor:
        """Cross-entropy of the teacher-forced distributions ``output`` [B, L, V] against the
        ids ``real`` [B, L] (any float dtype accepted), averaged over real positions, in nats.
        ``label_smoothing`` ε in [0, 1] (``loss.label_smoothing``) mixes in the cross-entropy
        against the uniform distribution: (1 − ε) · NLL + ε · mean_v −log p_v.
        ``normalization`` (``loss.normalization``): ``"tokens"`` averages over the batch's real
        positions; ``"sentences"`` sums each row's positions and averages over the rows
        (OpenNMT-py's ``normalization sents``).

        Hybrid CTC/attention (``model.ctc_weight`` λ in (0, 1), ``output`` a
        :class:`TextDecoderOutput`): (1 − λ) · the cross-entropy above (smoothed) + λ · the CTC
        loss in nats per target character (``modalities.text.ctc.ctc_loss``; utterances CTC
        cannot align count 0). ValueError when the output and ``ctc_weight`` disagree (a CTC
        output without a weight, or a weight without a CTC output)."""
        if isinstance(output, TextDecoderOutput):
            if not ctc_weight:
                raise ValueError("a text output with CTC log-probs needs ctc_weight > 0")
            att = self._cross_entropy(output.probs, real, label_smoothing, normalization)
            ctc, _ = ctc_loss(output.ctc_log_probs, output.ctc_mask, real)
            return (1 - ctc_weight) * att + ctc_weight * ctc
        if ctc_weight:
            raise ValueError("ctc_weight > 0 needs the decoder's CTC output (a TextDecoderOutput)")
        return self._cross_entropy(output, real, label_smoothing, normalization)

    def output_logs(self, output: Any, real: torch.Tensor) -> dict[str, float]:
        """With a CTC head: ``ctc`` (the CTC loss, nats per character) and ``ctc_infeasible``
        (utterances of the batch whose memory is too short for their transcript)."""
        if not isinstance(output, TextDecoderOutput):
            return {}
        with torch.no_grad():
            ctc, infeasible = ctc_loss(output.ctc_log_probs, output.ctc_mask, real)
        return {"ctc": ctc.item(), "ctc_infeasible": float(infeasible)}

    @staticmethod
    def _cross_entropy(
        output: torch.Tensor, real: torch.Tensor, label_smoothing: float, normalization: str
    ) -> torch.Tensor:
        ids = real.long()
        mask = ids != PAD
        logp = torch.log(output.float().clamp_min(1e-8))
        nll = -logp.gather(-1, ids.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        if label_smoothing:
            nll = (1 - label_smoothing) * nll - label_smoothing * logp.mean(-1)
        if normalization == "sentences":
            return (nll * mask).sum() / max(len(ids), 1)
        return (nll * mask).sum() / mask.sum().clamp_min(1)

    def output_distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Mean over positions of the L1 distance between the two distributions (0..2)."""
        mask = (a.sum(-1) > 0.5) | (b.sum(-1) > 0.5)
        per_pos = (a - b).abs().sum(dim=-1)
        return (per_pos * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)

    # -- files ----------------------------------------------------------------------------------
    def from_text(self, text: str) -> torch.Tensor:
        """A string → ids [1, L] (see the module docstring for the policy)."""
        unknown = self.codec.unknown(text) if isinstance(text, str) else []
        ids = self.codec.encode_batch([text], max_len=2 * self.spec.size)
        if unknown:
            warnings.warn(
                f"characters unknown to the model's vocabulary become "
                f"{self.codec.unknown_becomes}: {''.join(unknown)!r}",
                stacklevel=3,
            )
        return ids

    def read(self, path: Path, role: str = "source") -> torch.Tensor:
        return self.from_text(read_text_file(path))

    def read_batch(self, paths: list[Path], role: str = "reference") -> torch.Tensor:
        texts = [read_text_file(p) for p in paths]
        return self.codec.encode_batch(texts, 2 * self.spec.size)

    def decode(self, ids: torch.Tensor) -> list[str]:
        """Output ids [N, L] → strings."""
        return self.codec.decode_batch(ids.cpu())

    def write(self, outputs: torch.Tensor, stems: list[Path]) -> list[Path]:
        paths = []
        for text, stem in zip(self.decode(outputs), stems, strict=True):
            path = Path(f"{stem}{self.file_suffix}")
            write_text(path, text + "\n")  # atomic: a full disk is an OutputError
            paths.append(path)
        return paths

    def describe_output(self, path: Path) -> str | None:
        return Path(path).read_text(encoding="utf-8").strip() or "(empty)"

    def sample_text(self, sample: torch.Tensor) -> str | None:
        return self.codec.decode(sample.tolist())

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
        """A text file with one block per source row: the source (as text if it is text), then
        one line per column."""
        lines = []
        for i in range(len(source_batch)):
            shown = source.sample_text(source_batch[i])
            lines.append(
                f"source: {shown}" if shown is not None else f"source: [{source.kind} #{i}]"
            )
            for column, batch in columns:
                lines.append(f"  {column:>9}: {self.codec.decode(batch[i].tolist())}")
            lines.append("")
        text = "\n".join(lines)
        path = Path(folder) / f"{name}.txt"
        write_text(path, text)
        if writer is not None:
            writer.add_text("samples", "```\n" + text + "\n```", step)
        return path
