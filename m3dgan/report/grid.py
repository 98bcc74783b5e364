"""Image grids without torchvision: rows of samples, each image padded by a white border, and
the same with a labelled header (the training samples)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

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


def labelled_grid(
    rows: list[list[torch.Tensor]],
    column_labels: list[str],
    header_images: list[torch.Tensor | None] | None = None,
    min_tile: int = 64,
) -> torch.Tensor:
    """A grid with a header: ``column_labels[c]`` names column c, and ``header_images[c]`` (if
    given and not None) is drawn above its label — the reference a column was made with.

    ``rows[r][c]`` and the header images are float images [C, H, W] in [-1, 1]. Tiles smaller
    than ``min_tile`` pixels are enlarged by a whole factor (nearest neighbour, no blur).
    Returns uint8 [3, H', W'] (for ``save_image`` and TensorBoard). Labels use Pillow's built-in
    font, so no font file is needed."""
    tile_h = max(img.shape[-2] for row in rows for img in row)
    tile_w = max(img.shape[-1] for row in rows for img in row)
    scale = max(1, -(-min_tile // max(tile_h, tile_w)))
    th, tw, pad, text_h = tile_h * scale, tile_w * scale, 4, 16
    has_images = header_images is not None and any(h is not None for h in header_images)
    head_h = (th + pad if has_images else 0) + text_h + pad
    ncols = max(len(row) for row in rows)
    width = ncols * (tw + pad) + pad
    height = head_h + len(rows) * (th + pad) + pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=11)

    def paste(img: torch.Tensor, x: int, y: int) -> None:
        tile = to_uint8(as_rgb(img[None].float().cpu()))[0].permute(1, 2, 0).numpy()
        picture = Image.fromarray(tile).resize((tw, th), Image.Resampling.NEAREST)
        canvas.paste(picture, (x, y))

    for c in range(ncols):
        x = pad + c * (tw + pad)
        header = header_images[c] if has_images and c < len(header_images) else None
        if header is not None:
            paste(header, x, pad)
        label = column_labels[c] if c < len(column_labels) else ""
        while len(label) > 1 and draw.textlength(label, font=font) > tw:  # fit under the tile
            label = label[:-2] + "…"
        draw.text(
            (x + tw // 2, head_h - pad - text_h // 2),
            label,
            fill=(40, 40, 40),
            font=font,
            anchor="mm",
        )
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            paste(img, pad + c * (tw + pad), head_h + r * (th + pad))
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1)
