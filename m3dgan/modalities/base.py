"""What a modality provides, so that the rest of m3dgan never asks which modality a side is.

A :class:`Modality` instance serves one side (source or target) of one task. It knows the side's
shape (:class:`ModalitySpec`) and, for file I/O, its *codec*: what turns files into samples and
back (a text side's :class:`~m3dgan.modalities.text.vocab.Vocabulary`, a speech side's
:class:`~m3dgan.audio.MelConfig`; images need none). It provides:

- **subnets** for the unified body (``core.model.M3DGAN``): a prenet M_in, a reference encoder
  Enc_r, a generator M_out and a conditional discriminator D(S, T) when it is the target; an
  attention memory (:meth:`Modality.build_memory`) and a one-vector summary
  (:meth:`Modality.build_summary`) of itself when it is the source of another modality's
  generator or discriminator;
- **training terms**: the reconstruction loss, the per-sample output distance of eq. 7, and the
  sample part of a generator's output (:meth:`Modality.output_sample`);
- **files**: reading inputs and references, writing outputs, a line to print per output, a page
  to browse a folder of outputs, and the panels (and figures) of the training samples.

Samples are tensors: images float [B, C, H, W] in [-1, 1]; text int64 token ids [B, L]
(0 = padding) for real data and float distributions [B, L, V] for generated text, which every
text-consuming subnet accepts in place of ids (so gradients reach the generator); speech
normalised log-mels [B, T, n_mels] in [-1, 1] padded with the silence floor -1. A generator may
return more than the sample under teacher forcing (speech: stop logits and the alignment; text
with a CTC head: its log-probs), as a named output the modality's own loss reads.

A new modality is a subclass (one file or one small package) plus ``register_modality`` (see
``m3dgan.modalities.registry``); tests/test_modality_protocol.py defines one in a test file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from m3dgan.errors import ConfigError, InputError

if TYPE_CHECKING:
    from m3dgan.config import ModelConfig
    from m3dgan.report.output_page import OutputPage
    from m3dgan.run_record import RunRecord

SIDES = ("source", "target")


def single_output_only(kind: str, outputs: int) -> None:
    """Raise ConfigError for a discriminator with per-domain outputs on a modality without them."""
    if outputs != 1:
        raise ConfigError(
            f"model.domain_discriminator: {kind} discriminators have one output; per-domain "
            "outputs exist for image targets"
        )


@dataclass(frozen=True)
class ModalitySpec:
    """Shape of one side of a task.

    - image: ``channels`` = colour channels, ``size`` = height = width;
    - text: ``channels`` = vocabulary size, ``size`` = longest sequence (tokens, end mark included)
      in the training data, which bounds decoding;
    - speech: ``channels`` = mel bins, ``size`` = longest training utterance in frames (decoding
      stops at twice that).
    """

    kind: str
    channels: int
    size: int


@dataclass
class SequenceFeatures:
    """A sequence of states and the mask of its real positions: a text prenet's output, and any
    source as the attention memory of a sequential decoder (:meth:`Modality.build_memory`).

    ``states`` [B, L, D]; ``mask`` bool [B, L], True at real positions."""

    states: torch.Tensor
    mask: torch.Tensor

    def pooled(self) -> torch.Tensor:
        """The global embedding: mean of the states over real positions, [B, D]."""
        m = self.mask.unsqueeze(-1).to(self.states.dtype)
        return (self.states * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


class Modality:
    """One modality on one side of a task: its subnets, its training terms and its files.

    Subclasses set ``kind`` (the name in ``ModalitySpec.kind``, task definitions and data set
    manifests) and ``file_suffix`` (of the output files it writes), and implement the methods
    that raise NotImplementedError here; ``beam_search`` says whether its generator takes a
    ``beam_size`` (text). ``codec`` is whatever :meth:`codec_from_record` returns
    (None where a modality needs nothing to read and write files).
    """

    kind: ClassVar[str] = ""
    file_suffix: ClassVar[str] = ""
    beam_search: ClassVar[bool] = False  # the generator decodes with ``beam_size`` > 1

    def __init__(self, spec: ModalitySpec, codec: Any = None) -> None:
        if spec.kind != self.kind:
            raise ValueError(f"{type(self).__name__} serves {self.kind!r} sides, not {spec.kind!r}")
        self.spec, self.codec = spec, codec

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec})"

    @classmethod
    def codec_from_record(cls, record: RunRecord, side: str) -> Any:
        """This side's codec as a run's checkpoint records it (CheckpointError if it is missing
        or damaged). Default: none."""
        return None

    # -- subnets --------------------------------------------------------------------------------
    def build_prenet(self, cfg: ModelConfig) -> nn.Module:
        """M_in: sample → representation consumed by the generator and Enc_r."""
        raise NotImplementedError

    def build_reference_prenet(self, cfg: ModelConfig) -> nn.Module:
        """M_in in front of Enc_r (its own weights). Default: :meth:`build_prenet`; image and
        speech override it for ``model.reference_stride``, text for
        ``model.reference_cbhg_bank``."""
        return self.build_prenet(cfg)

    def prenet_channels(self, cfg: ModelConfig) -> int:
        """Width of the prenet's representation (channels or state size)."""
        raise NotImplementedError

    def build_reference_encoder(self, cfg: ModelConfig) -> nn.Module:
        """Enc_r: prenet representation of a sample of this modality → ``Posterior``."""
        raise NotImplementedError

    def build_generator(self, source: Modality, z_dim: int, cfg: ModelConfig) -> nn.Module:
        """M_out for this target: ``forward(source_repr, z, target=None)`` → target output.
        ``source_repr`` is the source prenet's output; ``target`` is the ground truth for
        teacher forcing (sequential outputs; image generators ignore it). ValueError when this
        modality cannot be generated from that source."""
        raise NotImplementedError

    def build_discriminator(
        self, source: Modality, cfg: ModelConfig, outputs: int = 1
    ) -> nn.Module:
        """D(S, T) for this target → realness scores, [B, outputs, ...] (any trailing shape).
        ``outputs`` > 1: one score map per domain (``model.domain_discriminator``); a modality
        that cannot give several raises ConfigError."""
        raise NotImplementedError

    def build_memory(self, cfg: ModelConfig) -> nn.Module | None:
        """This modality as the *source* of a sequential decoder: a module from its prenet output
        to :class:`SequenceFeatures` to attend over (with an ``out_dim`` attribute: the state
        width), or None when the prenet output already is one (its width is then
        :meth:`prenet_channels`). ValueError when it cannot be attended over."""
        raise ValueError(f"a {self.kind} source cannot be attended over by a sequential decoder")

    def build_summary(self, dim: int) -> nn.Module:
        """This modality as the *source* of a conditional discriminator of another modality:
        a module from a raw source batch to one vector per sample, [B, dim]."""
        raise ValueError(f"no source summary for a {self.kind} source")

    # -- training terms -------------------------------------------------------------------------
    def reconstruction_loss(self, output: Any, real: torch.Tensor) -> torch.Tensor:
        """Loss between the generator's teacher-forced ``output`` and the ground truth ``real``
        (a scalar, computed in float32)."""
        raise NotImplementedError

    def output_sample(self, output: Any) -> torch.Tensor:
        """The sample in a generator's output (what D, Enc_r and distances read). Default: the
        output is the sample."""
        return output

    def output_logs(self, output: Any, real: torch.Tensor) -> dict[str, float]:
        """Extra numbers for the training log from a teacher-forced ``output`` (text with a CTC
        head: the CTC term and the utterances it could not align). Default: none."""
        return {}

    def output_distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-sample distance between two generated batches, [B] (the numerator of eq. 7)."""
        return (a - b).abs().flatten(1).mean(dim=1)

    # -- files ----------------------------------------------------------------------------------
    def read(self, path: Path, role: str = "source") -> torch.Tensor:
        """One file → a batch of one sample [1, ...] (on the CPU). ``role``: "source" (an input
        to translate) or "reference" (a sample whose domain the output takes). InputError or
        DataError naming the file for what cannot be read."""
        raise NotImplementedError

    def read_batch(self, paths: list[Path], role: str = "reference") -> torch.Tensor:
        """Several files → one batch (samples of different lengths padded). Default: stacked."""
        return torch.cat([self.read(Path(p), role) for p in paths])

    def from_text(self, text: str) -> torch.Tensor:
        """A string given on the command line → a batch of one sample. Only text can."""
        raise InputError(f"{self.kind} samples cannot be given as text; give a file (--input)")

    def write(self, outputs: torch.Tensor, stems: list[Path]) -> list[Path]:
        """Generated samples [N, ...] → one file per row, ``stems[k]`` + ``file_suffix``
        (written atomically; OutputError on a full disk). Returns the paths."""
        raise NotImplementedError

    def describe_output(self, path: Path) -> str | None:
        """A line the CLI prints under an output file (text: its content), or None."""
        return None

    def sample_text(self, sample: torch.Tensor) -> str | None:
        """One sample as text for a log (text: the decoded string), or None."""
        return None

    page_shows_samples: ClassVar[bool] = False  # output_page wants the sources and references

    def output_page(
        self,
        folder: Path,
        page: OutputPage,
    ) -> Path | None:
        """An index page in ``folder`` to browse its outputs (``page``: one row per input, one
        column per reference or code; see :class:`~m3dgan.report.output_page.OutputPage`), or
        None where the files themselves are easy to browse. Where ``page_shows_samples``, the
        caller fills ``page.sources`` and ``page.headers`` for the page to show."""
        return None

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
        """Training samples: one column per (name, target-side batch) for the same source rows,
        written as ``folder/name`` + a suffix of this modality's choosing, and to TensorBoard's
        ``writer`` (if any) at ``step``. ``headers[c]``: a sample of this modality that made
        column c (its reference), to show at the column's head, or None. Returns the main
        file's path."""
        raise NotImplementedError

    def training_figures(
        self, model: Any, fixed: dict[str, torch.Tensor], prediction: torch.Tensor
    ) -> dict[str, np.ndarray]:
        """Pictures of what the generator does inside, for a training run's sampling step:
        name → uint8 RGB [H, W, 3] (TensorBoard ``samples/<name>`` and
        ``samples/step_<N>/<name>.png``). ``model``: the M3DGAN; ``fixed``: the fixed test
        batch (``source``, ``target``, ``references``); ``prediction``: the model's free-running
        output for ``fixed``'s first source. Default: none (speech: the attention alignment
        and colour mels)."""
        return {}

    def panel_image(self, batch: torch.Tensor) -> torch.Tensor | None:
        """This modality's samples as images for a grid of another modality's samples
        (images: themselves), or None."""
        return None
