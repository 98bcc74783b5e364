"""Modality subnets: one file per modality with its prenet (M_in), generator (M_out),
conditional discriminator and sample I/O. ``get_modality(kind)`` returns the subnet factory."""

from m3dgan.modalities.base import Modality, ModalitySpec, get_modality

__all__ = ["Modality", "ModalitySpec", "get_modality"]
