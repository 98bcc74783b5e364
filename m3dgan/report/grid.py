"""Image grids without torchvision: rows of samples, each image padded by a white border."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from m3dgan.atomic import atomic_path
from m3dgan.data.store import to_uint8


def as_rgb(images: torch.Tensor) -> torch.Tensor:
    """[B, 1|3, H, W] → [B, 3, H, W]."""
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def make_grid(rows: list[list[torch.Tensor]], pad: int = 2) -> torch.Tensor:
    """``rows[r][c]`` is a float image [C, H, W] in [-1, 1]; returns uint8 [3, H', W']."""
    h = max(img.shape[-2] for row in rows for img in row)
    w = max(img.shape[-1] for row in rows for img in row)
    ncols = max(len(row) for row in rows)
    canvas = torch.full(
        (3, len(rows) * (h + pad) + pad, ncols * (w + pad) + pad), 255, dtype=torch.uint8
    )
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            tile = to_uint8(as_rgb(img[None].float().cpu()))[0]
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            canvas[:, y : y + tile.shape[1], x : x + tile.shape[2]] = tile
    return canvas


def save_image(image: torch.Tensor, path: Path) -> None:
    """Save uint8 [C, H, W] or float [-1, 1] [C, H, W] as PNG (the format of ``path``'s suffix),
    atomically (``m3dgan.atomic``: a full disk is an OutputError naming ``path``, and leaves no
    partial file)."""
    if image.dtype != torch.uint8:
        image = to_uint8(image)
    array = image.permute(1, 2, 0).cpu().numpy()
    picture = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
    with atomic_path(path) as tmp:
        picture.save(tmp)  # the temp name keeps the suffix: Pillow picks the format by it
