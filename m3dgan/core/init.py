"""Weight initialisation for stacks of convolutions without normalisation layers.

PyTorch's default conv init shrinks the signal by about √3 per layer; through the six
un-normalised convs in front of Enc_r's GRU (prenet + reference encoder) a white and a black
reference then differ by ~1e-3 in μ, the encoded branch starts out as pix2pix, and the latent
regression has almost no gradient. He initialisation for leaky ReLU keeps the variance.
"""

from __future__ import annotations

from torch import nn


def init_leaky_convs(module: nn.Module, slope: float = 0.2) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, a=slope, nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
