"""Decode a photograph (CUB birds, COCO scenes) into the square uint8 array a data set stores.

Published photo collections come in every size and aspect ratio, grey or CMYK as well as RGB. The
paper trains on small squares (64x64), so each photo is cropped to a square (its centre, or a
square around a given box such as CUB's bird bounding box) and resized. Damaged files raise a
DataError naming the file instead of a bare PIL error, because a converter reading thousands of
files must say which one is broken.
"""

from __future__ import annotations

import math
from typing import BinaryIO

import numpy as np
from PIL import Image

from m3dgan.errors import DataError
from m3dgan.modalities.image import decode as image_decode

Box = tuple[float, float, float, float]  # x, y, width, height in pixels
_PIL_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def square_box(width: int, height: int, box: Box | None = None, margin: float = 1.5) -> Box:
    """The square to crop: the image's centre square, or one ``margin`` times the box's long side
    centred on ``box`` (kept inside the image, so it may be smaller than asked near an edge)."""
    if box is None:
        side = min(width, height)
        return ((width - side) / 2, (height - side) / 2, side, side)
    x, y, w, h = box
    side = min(max(w, h) * margin, width, height)
    cx, cy = x + w / 2, y + h / 2
    left = min(max(cx - side / 2, 0), width - side)
    top = min(max(cy - side / 2, 0), height - side)
    return (left, top, side, side)


def read_square(
    file: BinaryIO, size: int, *, name: str, box: Box | None = None, margin: float = 1.5
) -> np.ndarray:
    """Read one photo from an open binary file; return uint8 [3, size, size] (RGB).

    ``name`` is the file's name for error messages (the file may be a member of an archive).
    Pixels are decoded as :mod:`m3dgan.modalities.image.decode` does for every reader (16-bit and float
    images by their tonal range, CMYK/grey/palette converted, transparency on white). ``box``
    is in the stored pixels' frame; the square is cut there and then turned upright by the
    EXIF orientation (for the centre square this is the same as cutting the upright photo).
    """
    try:
        with Image.open(file) as im:
            orient = image_decode.orientation(im)  # applied to the crop, see the docstring
            full_width = im.width
            left, top, side, _ = square_box(im.width, im.height, box, margin)
            if im.format == "JPEG":  # decode at a reduced scale that still covers ``size``
                zoom = size / max(side, 1.0)
                im.draft("RGB", (math.ceil(im.width * zoom), math.ceil(im.height * zoom)))
                scale = im.width / full_width
                left, top, side = left * scale, top * scale, side * scale
            flat = image_decode.flatten(im, "RGB", name)
            crop = flat.crop((left, top, left + side, top + side))
            crop = crop.resize((size, size), Image.Resampling.BICUBIC)
            crop = image_decode.upright(crop, orient)
    except _PIL_ERRORS as exc:
        raise DataError(f"{name}: unreadable or corrupt image ({exc})") from exc
    return np.asarray(crop, np.uint8).transpose(2, 0, 1)
