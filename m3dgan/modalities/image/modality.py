"""The image modality: float images [B, C, H, W] in [-1, 1] (paper §4, Fig. 5).

Input policy (:func:`~m3dgan.modalities.image.io.read_image`): read upright and in its true
tonal range; a non-square image is centre-cropped (not squeezed) with a warning.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from m3dgan.config import ModelConfig
from m3dgan.core.attention import ReferenceEncoder
from m3dgan.modalities.base import Modality
from m3dgan.modalities.image.from_text import (
    TextConditionedImageDiscriminator,
    TextToImageGenerator,
)
from m3dgan.modalities.image.io import read_image
from m3dgan.modalities.image.nets import (
    ImageDiscriminator,
    ImageGenerator,
    ImageMemory,
    ImagePrenet,
    ImageSummary,
)
from m3dgan.report.grid import labelled_grid, save_image
from m3dgan.report.image_page import write_image_page
from m3dgan.report.output_page import OutputPage


class ImageModality(Modality):
    """Image sides: ``spec.channels`` = colour channels, ``spec.size`` = height = width."""

    kind = "image"
    file_suffix = ".png"

    # -- subnets --------------------------------------------------------------------------------
    def build_prenet(self, cfg: ModelConfig) -> nn.Module:
        return ImagePrenet(self.spec.channels, cfg.prenet_channels)

    def build_reference_prenet(self, cfg: ModelConfig) -> nn.Module:
        return ImagePrenet(self.spec.channels, cfg.prenet_channels, cfg.reference_stride)

    def prenet_channels(self, cfg: ModelConfig) -> int:
        return cfg.prenet_channels[-1]

    def build_reference_encoder(self, cfg: ModelConfig) -> nn.Module:
        return ReferenceEncoder(
            self.prenet_channels(cfg),
            cfg.nz,
            cfg.ref_channels,
            cfg.ref_gru,
            freq_size=math.ceil(self.spec.size / cfg.reference_stride),
        )

    def build_generator(self, source: Modality, z_dim: int, cfg: ModelConfig) -> nn.Module:
        """An image source: the U-Net generator (same size only). Any other source: the
        generator from the source's global embedding (text→image)."""
        if isinstance(source, ImageModality):
            if source.spec.size != self.spec.size:
                raise ValueError(
                    "the image generator translates images of one size; resize the source"
                )
            return ImageGenerator(
                source.prenet_channels(cfg), self.spec.channels, self.spec.size, z_dim, cfg
            )
        return TextToImageGenerator(source, self.spec.channels, self.spec.size, z_dim, cfg)

    def build_discriminator(
        self, source: Modality, cfg: ModelConfig, outputs: int = 1
    ) -> nn.Module:
        """An image source is stacked onto the judged image (PatchGAN); any other source joins
        the image features as its summary vector. ``outputs``: score maps (one per domain)."""
        if isinstance(source, ImageModality):
            return ImageDiscriminator(
                source.spec.channels, self.spec.channels, self.spec.size, cfg, outputs
            )
        return TextConditionedImageDiscriminator(source, self.spec, cfg, outputs)

    def build_memory(self, cfg: ModelConfig) -> nn.Module:
        return ImageMemory(self.prenet_channels(cfg), self.spec.size, cfg.decoder_rnn)

    def build_summary(self, dim: int) -> nn.Module:
        return ImageSummary(self.spec.channels, dim)

    # -- training terms -------------------------------------------------------------------------
    def reconstruction_loss(self, output: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(output.float(), real.float())

    # -- files ----------------------------------------------------------------------------------
    def read(self, path: Path, role: str = "source") -> torch.Tensor:
        return read_image(Path(path), self.spec.channels, self.spec.size)

    def write(self, outputs: torch.Tensor, stems: list[Path]) -> list[Path]:
        paths = []
        for image, stem in zip(outputs, stems, strict=True):
            path = Path(f"{stem}{self.file_suffix}")
            save_image(image, path)
            paths.append(path)
        return paths

    page_shows_samples = True

    def output_page(
        self,
        folder: Path,
        page: OutputPage,
    ) -> Path | None:
        """An index.html and the same as one labelled PNG, ``overview.png``: one row per input
        (the input first, as the model read it), one column per reference (shown at its head,
        as the model read it: ``page.headers``; ``page.reference_files`` are not needed) or
        random code."""
        outputs = [[self.read(Path(p), "reference")[0] for p in row] for row in page.files]
        # the header image says it is a reference; the label names which
        labels = [c.removeprefix("reference: ") for c in page.columns]
        heads = list(page.headers) if page.headers is not None else [None] * len(page.columns)
        if page.sources is not None and any(s is not None for s in page.sources):
            blank = torch.ones_like(outputs[0][0])  # a text input has no picture: white
            outputs = [
                [blank if s is None else s, *row] for s, row in zip(page.sources, outputs, strict=True)
            ]
            labels, heads = ["input", *labels], [None, *heads]
        grid = labelled_grid(outputs, labels, heads, min_tile=96)
        save_image(grid, Path(folder) / "overview.png")
        return write_image_page(Path(folder) / "index.html", page)

    def panel_image(self, batch: torch.Tensor) -> torch.Tensor | None:
        return batch

    def write_sample_panel(
        self,
        columns: list[tuple[str, torch.Tensor]],
        source: Modality,
        source_batch: torch.Tensor,
        folder: Path,
        name: str,
        writer: Any = None,
        step: int = 0,
        headers: list[torch.Tensor | None] | None = None,
    ) -> Path:
        """A PNG grid with a labelled header: one row per source, one column per entry (the
        source image first when the source can be shown as an image), each column headed by
        its name and, where given, the reference it was made with."""
        headers = list(headers) if headers is not None else [None] * len(columns)
        shown = source.panel_image(source_batch)
        if shown is not None:
            columns, headers = [("source", shown), *columns], [None, *headers]
        rows = [[col[i] for _, col in columns] for i in range(len(source_batch))]
        grid = labelled_grid(rows, [name for name, _ in columns], headers)
        path = Path(folder) / f"{name}.png"
        save_image(grid, path)
        if writer is not None:
            writer.add_image("samples", grid, step)
        return path
