"""What a modality must provide so the unified body (``core.model.M3DGAN``) can use it.

The body never looks inside a modality: it asks the source modality for a prenet, and the
target modality for a prenet and a reference encoder (references and fakes go through both to
give the Gaussian posterior of E_att), a generator that takes the source representation and a
domain embedding z, a conditional discriminator D(S, T), and a reconstruction loss.

Samples of every modality are tensors: images float [B, C, H, W] in [-1, 1]; text int64 token
ids [B, L] (0 = padding) for real data and float distributions [B, L, V] for generated text,
which every text-consuming subnet accepts in place of ids (so gradients reach the generator);
speech normalised log-mels [B, T, n_mels] in [-1, 1] padded with the silence floor -1 (generated
speech under teacher forcing adds a stop-logit channel, see ``modalities.speech``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from m3dgan.config import ModelConfig


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


class Modality:
    """Factory for one modality's subnets; subclasses implement every method."""

    kind: str = ""

    def build_prenet(self, spec: ModalitySpec, cfg: ModelConfig) -> nn.Module:
        """M_in: sample → representation consumed by the generator and Enc_r."""
        raise NotImplementedError

    def prenet_channels(self, cfg: ModelConfig) -> int:
        raise NotImplementedError

    def build_reference_encoder(self, spec: ModalitySpec, cfg: ModelConfig) -> nn.Module:
        """Enc_r: prenet representation of a sample of this modality → ``Posterior``."""
        raise NotImplementedError

    def build_generator(
        self,
        source: ModalitySpec,
        target: ModalitySpec,
        source_channels: int,
        z_dim: int,
        cfg: ModelConfig,
    ) -> nn.Module:
        """M_out: ``forward(source_repr, z, target=None)`` → target sample. ``target`` is the
        ground truth for teacher forcing (sequential outputs); image generators ignore it."""
        raise NotImplementedError

    def build_discriminator(
        self, source: ModalitySpec, target: ModalitySpec, cfg: ModelConfig
    ) -> nn.Module:
        """D(S, T) → realness scores (any shape)."""
        raise NotImplementedError

    def reconstruction_loss(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def output_distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-sample distance between two generated batches, [B] (the numerator of eq. 7)."""
        return (a - b).abs().flatten(1).mean(dim=1)


def get_modality(kind: str) -> Modality:
    from m3dgan.modalities.image import ImageModality
    from m3dgan.modalities.speech import SpeechModality
    from m3dgan.modalities.text import TextModality

    registry: dict[str, Modality] = {
        "image": ImageModality(),
        "text": TextModality(),
        "speech": SpeechModality(),
    }
    if kind not in registry:
        raise ValueError(f"unknown modality {kind!r}; available: {sorted(registry)}")
    return registry[kind]
