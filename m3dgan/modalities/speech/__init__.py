"""The speech modality: subnets (``nets``: prenet, reference encoder, discriminator, source
memory and summary; ``decoder``: the frame decoder), lengths and masks of padded mel batches
(``frames``) and :class:`SpeechModality` (``modality``)."""

from m3dgan.modalities.speech.modality import SpeechModality

__all__ = ["SpeechModality"]
