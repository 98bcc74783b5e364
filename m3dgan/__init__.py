"""M3D-GAN: multi-modal, multi-domain translation with one GAN and a controllable domain."""

__version__ = "0.1.0"
