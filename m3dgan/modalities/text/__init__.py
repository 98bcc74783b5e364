"""The text modality: subnets (``nets``: CBHG prenet, reference encoder, source summary;
``decoder``: the token decoder; ``discriminator``), token tensors (``tokens``), vocabularies
(``vocab``) and :class:`TextModality` (``modality``)."""

from m3dgan.modalities.text.modality import TextModality

__all__ = ["TextModality"]
