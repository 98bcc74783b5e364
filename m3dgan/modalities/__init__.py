"""Modalities: one package per modality (``image/``, ``text/``, ``speech/``) with its subnets,
training terms and file I/O behind the :class:`Modality` protocol (``base``), and the registry
that maps a side's kind to its modality (``registry``). The sequential decoder that text and
speech targets share is ``sequence_decoder``."""

from m3dgan.modalities.base import Modality, ModalitySpec, SequenceFeatures
from m3dgan.modalities.registry import get_modality, modality_for, register_modality

__all__ = [
    "Modality",
    "ModalitySpec",
    "SequenceFeatures",
    "get_modality",
    "modality_for",
    "register_modality",
]
