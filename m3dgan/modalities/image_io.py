"""Reading and writing image samples with errors that name the file and the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from m3dgan.data.store import to_float
from m3dgan.errors import DataError

# PIL's format plugins report a malformed file with whatever they trip over: OSError (and its
# UnidentifiedImageError), SyntaxError, ValueError, EOFError, struct.error, IndexError,
# TypeError, DecompressionBombError... (found by fuzzing, tests/test_fuzz.py). Decoding a
# user's file is the only thing inside the ``try`` that catches these, so any exception there
# means "this file is not an image we can read".
DECODE_ERRORS = (Exception,)


def check_image_path(path: Path) -> None:
    """A clear DataError for a path that is missing or not a regular file."""
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not an image file")
    if not path.is_file():
        raise DataError(f"{path}: no such image file")


def read_image(path: Path, channels: int, size: int) -> torch.Tensor:
    """Image file → float [1, channels, size, size] in [-1, 1]; transparency is put on white."""
    path = Path(path)
    check_image_path(path)
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
    except DECODE_ERRORS as exc:
        raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc
    if array.ndim == 2:
        array = array[..., None]
    return to_float(torch.from_numpy(array.copy()).permute(2, 0, 1)[None])
