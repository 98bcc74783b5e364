"""Image modality subnets (paper §4, Fig. 5).

- prenet: 2-layer conv2d [32, 32];
- generator: ``gen_blocks`` residual conv2d blocks down and as many residual deconv2d blocks up
  (paper: 6 + 6; ``model.upsample = "resize"`` upsamples by resize-then-convolve instead),
  U-Net skips between them, a final deconv2d to the target's channels, tanh.
  A block halves the resolution only while the feature map is even and at least 8 px, so
  32×32, 64×64, 128×128 and any multiple of 16 work with the same six blocks (the rest keep
  the resolution). The domain embedding z modulates every block (FiLM after instance norm,
  i.e. adaptive instance norm), so z reaches all scales — BicycleGAN injects z at all layers
  for the same reason: a generator fed z at one place learns to ignore it.
- discriminator: conditional PatchGAN on concat(S resized to T's size, T);
- as a source: an attention memory for sequential decoders (``ImageMemory``) and a summary
  vector for other modalities' discriminators (``ImageSummary``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from m3dgan.config import ModelConfig
from m3dgan.core.init import init_leaky_convs
from m3dgan.core.safe_conv import Conv2d, ConvTranspose2d
from m3dgan.modalities.base import SequenceFeatures


class ImagePrenet(nn.Module):
    """M_in for images: 3×3 convs (LeakyReLU 0.2) with ``channels`` outputs; [B, C, H, W] →
    [B, channels[-1], H / stride, W / stride] (rounded up). ``stride`` is the first conv's: 1
    everywhere in the paper; 2 for a reference prenet under ``model.reference_stride``."""

    def __init__(self, in_channels: int, channels: list[int], stride: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for i, ch in enumerate(channels):
            first_stride = stride if i == 0 else 1
            layers += [
                Conv2d(prev, ch, 3, stride=first_stride, padding=1),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            prev = ch
        self.net = nn.Sequential(*layers)
        init_leaky_convs(self.net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def instance_norm_affine(
    x: torch.Tensor, gain: torch.Tensor, offset: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """Instance norm of ``x`` [N, C, H, W], then ``gain · x̂ + offset`` with one (gain, offset)
    per sample and channel ([N, C] each).

    Computed as batch norm over a batch of one whose N·C channels are the (sample, channel)
    pairs: one fused kernel forward and backward, where instance norm followed by two broadcast
    affine steps costs five passes over the activation each way and, under bf16 autocast, an
    fp32 round trip (autocast runs instance norm in fp32). Channels-last input comes back
    channels-last (the convolutions around it prefer that layout, see docs/benchmarks.md, "Throughput").
    """
    n, c, height, width = x.shape
    channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    out = F.batch_norm(
        x.contiguous().view(1, n * c, height, width),
        None,
        None,
        gain.reshape(n * c).float(),
        offset.reshape(n * c).float(),
        training=True,
        eps=eps,
    ).view(n, c, height, width)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


class FiLM(nn.Module):
    """Instance norm whose per-channel scale and shift come from z (AdaIN)."""

    eps = 1e-5  # nn.InstanceNorm2d's

    def __init__(self, channels: int, z_dim: int) -> None:
        super().__init__()
        self.to_scale_shift = nn.Linear(z_dim, 2 * channels) if z_dim > 0 else None
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))

    def forward(self, x: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        n, c = x.shape[:2]
        # the learned affine and z's modulation fold into one (gain, offset) per sample and
        # channel: (x̂·w + b)·(1 + scale) + shift = x̂·[w·(1 + scale)] + [b·(1 + scale) + shift]
        gain = self.weight.view(1, c).expand(n, c)
        offset = self.bias.view(1, c).expand(n, c)
        if self.to_scale_shift is not None and z is not None:
            scale, shift = self.to_scale_shift(z).chunk(2, dim=1)
            gain = gain * (1 + scale)
            offset = offset * (1 + scale) + shift
        return instance_norm_affine(x, gain, offset, self.eps)


class ResidualDown(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, z_dim: int) -> None:
        super().__init__()
        self.conv1 = Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.film1 = FiLM(cout, z_dim)
        self.conv2 = Conv2d(cout, cout, 3, padding=1)
        self.film2 = FiLM(cout, z_dim)
        # a strided 1×1 skip: m3dgan.core.safe_conv.Conv2d runs it as subsampling + a unit
        # stride 1×1 convolution (oneDNN's own strided 1×1 weight gradient corrupts the heap
        # for channels-last input with few channels, see safe_conv's docstring)
        self.skip = (
            Conv2d(cin, cout, 1, stride=stride) if (cin != cout or stride != 1) else nn.Identity()
        )

    def forward(self, x: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        h = F.leaky_relu(self.film1(self.conv1(x), z), 0.2)
        h = self.film2(self.conv2(h), z)
        return F.leaky_relu(h + self.skip(x), 0.2)


def upsampler(channels: int, how: str) -> nn.Module:
    """×2 resolution, ``channels`` in and out: "deconv" (4×4 stride-2 transposed conv, the
    paper's) or "resize" (nearest ×2, then 3×3 conv; no checkerboard pattern, Odena et al.)."""
    if how == "resize":
        return nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), Conv2d(channels, channels, 3, padding=1)
        )
    if how == "deconv":
        return ConvTranspose2d(channels, channels, 4, stride=2, padding=1)
    raise ValueError(f"model.upsample must be 'deconv' or 'resize', not {how!r}")


class ResidualUp(nn.Module):
    def __init__(
        self, cin: int, cskip: int, cout: int, stride: int, z_dim: int, upsample: str = "deconv"
    ) -> None:
        super().__init__()
        self.up = upsampler(cin, upsample) if stride == 2 else nn.Identity()
        self.conv1 = Conv2d(cin + cskip, cout, 3, padding=1)
        self.film1 = FiLM(cout, z_dim)
        self.conv2 = Conv2d(cout, cout, 3, padding=1)
        self.film2 = FiLM(cout, z_dim)
        self.skip = Conv2d(cin + cskip, cout, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        x = torch.cat([self.up(x), skip], dim=1)
        h = F.relu(self.film1(self.conv1(x), z))
        h = self.film2(self.conv2(h), z)
        return F.relu(h + self.skip(x))


def downsample_plan(size: int, blocks: int) -> list[int]:
    """Stride of each down block: 2 while the map is even and ≥ 8 px, else 1."""
    strides = []
    for _ in range(blocks):
        if size % 2 == 0 and size >= 8:
            strides.append(2)
            size //= 2
        else:
            strides.append(1)
    return strides


class ImageGenerator(nn.Module):
    def __init__(
        self, in_channels: int, out_channels: int, size: int, z_dim: int, cfg: ModelConfig
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        strides = downsample_plan(size, cfg.gen_blocks)
        widths = [min(cfg.gen_channels * 2**i, cfg.gen_max_channels) for i in range(cfg.gen_blocks)]
        self.down = nn.ModuleList()
        prev = in_channels
        skips = []
        for width, stride in zip(widths, strides, strict=True):
            skips.append(prev)
            self.down.append(ResidualDown(prev, width, stride, z_dim))
            prev = width
        self.up = nn.ModuleList()
        for i in reversed(range(cfg.gen_blocks)):
            out = skips[i] if i > 0 else widths[0]
            self.up.append(ResidualUp(prev, skips[i], out, strides[i], z_dim, cfg.upsample))
            prev = out
        # "a final deconv2d outputs RGB": a stride-1 transposed conv to the target's channels
        self.to_output = ConvTranspose2d(prev, out_channels, 3, padding=1)

    def forward(self, source: torch.Tensor, z: torch.Tensor | None, target=None) -> torch.Tensor:
        h = source
        skips = []
        for block in self.down:
            skips.append(h)
            h = block(h, z)
        for block in self.up:
            h = block(h, skips.pop(), z)
        return torch.tanh(self.to_output(h))


def normalize_discriminator(disc: nn.Module, kind: str) -> nn.Module:
    """``model.disc_norm`` on a built discriminator, in place; returns it.

    ``"instance"``: as built (pix2pix / BicycleGAN's PatchGAN: instance norm after every inner
    conv). ``"spectral"``: spectral normalisation of every conv weight (Miyato et al. 2018,
    SNGAN; BigGAN and StarGAN v2's relatives use it in D) and no instance norm — it bounds D's
    Lipschitz constant, which keeps its gradients to G informative on small data."""
    if kind == "instance":
        return disc
    if kind != "spectral":
        raise ValueError(f"model.disc_norm={kind!r}: expected 'instance' or 'spectral'")
    for child in list(disc.modules()):
        for attr, sub in list(child.named_children()):
            if isinstance(sub, nn.InstanceNorm2d):
                setattr(child, attr, nn.Identity())
            elif isinstance(sub, nn.Conv2d):
                nn.utils.parametrizations.spectral_norm(sub)
    return disc


class ImageDiscriminator(nn.Module):
    """Conditional PatchGAN D(S, T) → [B, outputs, H', W']: each cell judges one receptive-field
    patch (``outputs`` > 1: once per domain)."""

    def __init__(
        self,
        source_channels: int,
        target_channels: int,
        size: int,
        cfg: ModelConfig,
        outputs: int = 1,
    ) -> None:
        super().__init__()
        self.size = size
        ch = cfg.disc_channels
        layers: list[nn.Module] = [
            Conv2d(source_channels + target_channels, ch, 4, 2, 1),
            nn.LeakyReLU(0.2, True),
        ]
        prev = ch
        for i in range(1, cfg.disc_layers):
            stride = 2 if size // 2 ** (i + 1) >= 4 else 1
            width = min(ch * 2**i, 512)
            layers += [
                Conv2d(prev, width, 4, stride, 1),
                nn.InstanceNorm2d(width),
                nn.LeakyReLU(0.2, True),
            ]
            prev = width
        layers.append(Conv2d(prev, outputs, 3, 1, 1))  # a score map per output (domain)
        self.net = nn.Sequential(*layers)
        normalize_discriminator(self, cfg.disc_norm)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if source.shape[-2:] != target.shape[-2:]:
            source = F.interpolate(
                source, size=target.shape[-2:], mode="bilinear", align_corners=False
            )
        return self.net(torch.cat([source, target], dim=1))


class ImageMemory(nn.Module):
    """An image *source* as a sequential decoder's attention memory: prenet features → a short
    sequence (≤ 8×8 positions), [B, H'W', dim]."""

    def __init__(self, channels: int, size: int, dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev, s = channels, size
        halvings = 0
        while s > 8:
            halvings += 1
            s //= 2
        # narrow at high resolution, ``dim`` wide at the ≤ 8×8 grid the decoder attends over
        for i in range(halvings):
            width = max(dim // 2 ** (halvings - 1 - i), 16)
            layers += [Conv2d(prev, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            prev = width
        layers += [Conv2d(prev, dim, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True)]
        self.net = nn.Sequential(*layers)
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> SequenceFeatures:
        h = self.net(x).flatten(2).transpose(1, 2)  # [B, H'W', dim]
        return SequenceFeatures(h, torch.ones(h.shape[:2], dtype=torch.bool, device=h.device))


class ImageSummary(nn.Module):
    """An image *source* summarised for another modality's conditional discriminator: image
    [B, C, H, W] → globally pooled conv features, [B, dim]."""

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            Conv2d(channels, dim // 2, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
            Conv2d(dim // 2, dim, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).mean(dim=(2, 3))
