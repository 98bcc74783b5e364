"""The modality registry: kind name → :class:`~m3dgan.modalities.base.Modality` subclass.

The built-in modalities register here; a new one is a subclass plus one
``register_modality(MyModality)`` call (at import of the module that defines it).
"""

from __future__ import annotations

from typing import Any

from m3dgan.modalities.base import Modality, ModalitySpec
from m3dgan.modalities.image import ImageModality
from m3dgan.modalities.speech import SpeechModality
from m3dgan.modalities.text import TextModality

MODALITIES: dict[str, type[Modality]] = {}


def register_modality(cls: type[Modality]) -> type[Modality]:
    """Make ``cls`` the modality of ``cls.kind`` sides (usable as a class decorator).

    Raises ValueError for a class without a ``kind``."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__} has no kind")
    MODALITIES[cls.kind] = cls
    return cls


def get_modality(kind: str) -> type[Modality]:
    """The modality class of ``kind``; ValueError naming the registered kinds otherwise."""
    if kind not in MODALITIES:
        raise ValueError(f"unknown modality {kind!r}; available: {sorted(MODALITIES)}")
    return MODALITIES[kind]


def modality_for(spec: ModalitySpec, codec: Any = None) -> Modality:
    """The modality serving a side of this shape (with its codec for file I/O)."""
    return get_modality(spec.kind)(spec, codec)


for _builtin in (ImageModality, TextModality, SpeechModality):
    register_modality(_builtin)
