"""Reading and writing image samples with errors that name the file and the problem."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from m3dgan.data.store import to_float
from m3dgan.errors import DataError
from m3dgan.modalities.image.decode import decode

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
    """Image file → float [1, channels, size, size] in [-1, 1].

    Read as a viewer shows it (:mod:`m3dgan.modalities.image.decode`): the EXIF orientation is applied,
    16-bit, 32-bit integer and float images keep their tonal range (or are refused with a
    DataError saying why), palette/CMYK/1-bit/... are converted, transparency is put on white.

    Shape policy: a square image is resized to ``size`` × ``size`` (bicubic). A non-square one
    keeps its aspect ratio: its centre square (side = its short side) is cropped and resized to
    ``size`` — the same centre crop the photo converters use (``m3dgan.data.formats.photos``), like
    pix2pix's ``--preprocess`` crops — and a warning names the file and says so.
    """
    path = Path(path)
    check_image_path(path)
    try:
        with Image.open(path) as img:
            img.load()
            img = decode(img, "L" if channels == 1 else "RGB", str(path))
            width, height = img.size
            side = min(width, height)
            if width != height:  # only the centre square's own pixels, nothing from the sides
                left, top = (width - side) // 2, (height - side) // 2
                img = img.crop((left, top, left + side, top + side))
            if img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BICUBIC)
            array = np.asarray(img, dtype=np.uint8)
    except DataError:
        raise
    except DECODE_ERRORS as exc:
        raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc
    if width != height:
        warnings.warn(
            f"{path}: {width}x{height} is not square; its centre {side}x{side} was cropped and "
            f"resized to the model's {size}x{size} (the sides are not used)",
            stacklevel=1,  # one place: Python shows it once per file, however often it is read
        )
    if array.ndim == 2:
        array = array[..., None]
    return to_float(torch.from_numpy(array.copy()).permute(2, 0, 1)[None])
