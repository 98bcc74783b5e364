"""Image subnets for a text source (text→image, the paper's CUB task).

- generator: the global sentence embedding (mean of the text prenet's states) ⊕ z → a linear
  map to a small feature map → residual upsampling blocks, each modulated by z (AdaIN, as in the
  image→image generator) → tanh. There is no spatial source to keep, so no U-Net skips.
- discriminator: PatchGAN features of the image; the source's text summary is replicated over
  the feature map and joined before the last convolutions (StackGAN's conditioning), so every
  patch is judged against the sentence.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from m3dgan.config import ModelConfig
from m3dgan.core.init import init_leaky_convs
from m3dgan.core.safe_conv import Conv2d
from m3dgan.modalities.base import Modality, ModalitySpec, SequenceFeatures
from m3dgan.modalities.image.nets import FiLM, normalize_discriminator


def start_resolution(size: int) -> tuple[int, int]:
    """(first feature-map size, number of ×2 upsamplings): 64 → (4, 4); 48 → (6, 3)."""
    s, ups = size, 0
    while s % 2 == 0 and s // 2 >= 4:
        s, ups = s // 2, ups + 1
    return s, ups


class UpBlock(nn.Module):
    def __init__(self, cin: int, cout: int, cond_dim: int) -> None:
        super().__init__()
        self.conv1 = Conv2d(cin, cout, 3, 1, 1)
        self.norm1 = FiLM(cout, cond_dim)
        self.conv2 = Conv2d(cout, cout, 3, 1, 1)
        self.norm2 = FiLM(cout, cond_dim)
        self.skip = Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        h = F.leaky_relu(self.norm1(self.conv1(x), cond), 0.2)
        h = self.norm2(self.conv2(h), cond)
        return F.leaky_relu(h + self.skip(x), 0.2)


class TextToImageGenerator(nn.Module):
    """``source``: the source side's modality. Its prenet output, as its attention memory
    (``Modality.build_memory``; a text source's states as they are), is pooled into the global
    embedding."""

    def __init__(
        self, source: Modality, out_channels: int, size: int, z_dim: int, cfg: ModelConfig
    ) -> None:
        super().__init__()
        memory = source.build_memory(cfg)
        self._memory_name = f"{source.kind}_memory" if memory is not None else None
        if memory is not None:
            self.add_module(self._memory_name, memory)
        source_channels = memory.out_dim if memory is not None else source.prenet_channels(cfg)
        self.start, ups = start_resolution(size)
        widths = [min(cfg.gen_max_channels, cfg.gen_channels * 2**i) for i in range(ups + 1)]
        widths = widths[::-1]  # widest at the smallest resolution
        self.sentence = nn.Linear(source_channels, widths[0])
        cond_dim = z_dim + widths[0]
        self.fc = nn.Linear(cond_dim, widths[0] * self.start * self.start)
        self.blocks = nn.ModuleList(UpBlock(widths[i], widths[i + 1], cond_dim) for i in range(ups))
        self.z_dim = z_dim
        self.to_image = Conv2d(widths[-1], out_channels, 3, 1, 1)
        init_leaky_convs(self)

    def forward(self, source, z: torch.Tensor | None, target=None) -> torch.Tensor:
        feats: SequenceFeatures = (
            getattr(self, self._memory_name)(source) if self._memory_name else source
        )
        sentence = F.leaky_relu(self.sentence(feats.pooled()), 0.2)
        cond = sentence if z is None or not self.z_dim else torch.cat([sentence, z], dim=-1)
        h = self.fc(cond).view(len(cond), -1, self.start, self.start)
        for block in self.blocks:  # every block is modulated by the sentence and z
            h = block(h, cond)
        return torch.tanh(self.to_image(h))


class TextConditionedImageDiscriminator(nn.Module):
    """``source``: the source side's modality, which supplies its summary (``build_summary``)."""

    def __init__(
        self, source: Modality, target: ModalitySpec, cfg: ModelConfig, outputs: int = 1
    ) -> None:
        super().__init__()
        ch = cfg.disc_channels
        layers: list[nn.Module] = [Conv2d(target.channels, ch, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        prev, size = ch, target.size // 2
        for i in range(1, cfg.disc_layers):
            stride = 2 if size // 2 >= 4 else 1
            width = min(ch * 2**i, 512)
            layers += [
                Conv2d(prev, width, 4, stride, 1),
                nn.InstanceNorm2d(width),
                nn.LeakyReLU(0.2, True),
            ]
            prev, size = width, size // stride
        self.features = nn.Sequential(*layers)
        self.summary = source.build_summary(ch)
        self.joint = nn.Sequential(
            Conv2d(prev + ch, prev, 3, 1, 1),
            nn.LeakyReLU(0.2, True),
            Conv2d(prev, outputs, 3, 1, 1),
        )
        normalize_discriminator(self, cfg.disc_norm)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        h = self.features(target)
        s = self.summary(source)[:, :, None, None].expand(-1, -1, *h.shape[-2:])
        return self.joint(torch.cat([h, s], dim=1))
