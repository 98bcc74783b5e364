"""Reading and writing image samples with errors that name the file and the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from m3dgan.data.store import to_float
from m3dgan.errors import DataError


def read_image(path: Path, channels: int, size: int) -> torch.Tensor:
    """Image file → float [1, channels, size, size] in [-1, 1]; transparency is put on white."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such image file")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGBA", "LA", "P"):
                img = img.convert("RGBA")
                white = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(white, img)
            img = img.convert("L" if channels == 1 else "RGB")
            if img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BICUBIC)
            array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from exc
    if array.ndim == 2:
        array = array[..., None]
    return to_float(torch.from_numpy(array.copy()).permute(2, 0, 1)[None])
