"""The image modality: subnets (``nets``: prenet, U-Net generator, PatchGAN, source memory and
summary; ``from_text``: the generator and discriminator for non-image sources), file reading
(``io``, ``decode``) and :class:`ImageModality` (``modality``)."""

from m3dgan.modalities.image.modality import ImageModality

__all__ = ["ImageModality"]
