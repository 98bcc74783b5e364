"""What a modality must provide so the unified body (``core.model.M3DGAN``) can use it.

The body never looks inside a modality: it asks the source modality for a prenet and the
target modality for a prenet (references and fakes go through it before Enc_r), a generator
that takes the source representation and a domain embedding z, a conditional discriminator
D(S, T), and a reconstruction loss. Text and speech add a file here with the same methods.
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
    """Shape of one side of a task: kind ("image"), channels, and spatial size."""

    kind: str
    channels: int
    size: int


class Modality:
    """Factory for one modality's subnets; subclasses implement every method."""

    kind: str = ""

    def build_prenet(self, spec: ModalitySpec, cfg: ModelConfig) -> nn.Module:
        """M_in: sample → representation [B, C, F, T] consumed by the generator and Enc_r."""
        raise NotImplementedError

    def prenet_channels(self, cfg: ModelConfig) -> int:
        raise NotImplementedError

    def build_generator(
        self,
        source: ModalitySpec,
        target: ModalitySpec,
        source_channels: int,
        z_dim: int,
        cfg: ModelConfig,
    ) -> nn.Module:
        """M_out: (source representation, z) → target sample."""
        raise NotImplementedError

    def build_discriminator(
        self, source: ModalitySpec, target: ModalitySpec, cfg: ModelConfig
    ) -> nn.Module:
        """D(S, T) → realness scores (any shape)."""
        raise NotImplementedError

    def reconstruction_loss(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def get_modality(kind: str) -> Modality:
    from m3dgan.modalities.image import ImageModality

    registry: dict[str, Modality] = {"image": ImageModality()}
    if kind not in registry:
        raise ValueError(f"unknown modality {kind!r}; available: {sorted(registry)}")
    return registry[kind]
