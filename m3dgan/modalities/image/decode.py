"""Turning an image Pillow opened into the 8-bit picture a person sees, the one way every reader
in the project does it (``modalities.image_io.read_image`` for users' files; the pix2pix, CUB,
COCO and emoji converters in ``m3dgan.data``).

- **Orientation.** The EXIF/TIFF orientation tag is applied as image viewers apply it (the same
  transposition as ``PIL.ImageOps.exif_transpose``), so a phone photo held upright is read
  upright. An unreadable EXIF block counts as "no tag".
- **Bit depth.** Pillow keeps 16-bit grey as ``I;16``/``I;16B``/``I;16L``/``I;16N``, 16- and
  32-bit integers as ``I`` and floats as ``F``; its own ``convert("L")`` clips those at 255 (a
  16-bit picture comes out white). Here they are scaled to 8 bits by their tonal range:

  - ``I;16*``: 0–65535 (16-bit PNG, TIFF, PGM);
  - ``I``: 0–65535 (how Pillow holds 16-bit PGM and other deep grey); negative values or values
    above 65535 have no implied range and are refused;
  - ``F``: 0–1 when every value is in [0, 1]; otherwise whole numbers up to 255 are taken as 8-bit
    and up to 65535 as 16-bit; NaN, infinities, negative values and fractional values above 1
    (HDR) are refused.

  48- and 64-bit RGB(A) PNGs are already reduced to 8 bits per band by Pillow when it opens them.
- **Colour and transparency.** Palette, 1-bit, CMYK, YCbCr, LAB, HSV and premultiplied modes are
  converted by Pillow; transparent pixels are put on white (how icons and emoji are seen), except
  when the caller asks for RGBA.

Anything else is refused with a :class:`DataError` naming the file and why.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from m3dgan.errors import DataError

ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transposition that shows the picture upright (as ImageOps.exif_transpose)
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_PREMULTIPLIED = {"RGBa": "RGBA", "La": "LA"}
_FULL_16 = 65535.0


def orientation(img: Image.Image) -> int:
    """The image's EXIF/TIFF orientation (1 = as stored); 1 when absent, invalid or unreadable."""
    try:
        value = int(img.getexif().get(ORIENTATION_TAG, 1))
    except Exception:  # a damaged EXIF block must not make a readable picture unreadable
        return 1
    return value if value in _UPRIGHT else 1


def upright(img: Image.Image, orient: int | None = None) -> Image.Image:
    """``img`` turned as its orientation tag says (or as ``orient`` says, for a crop of it)."""
    method = _UPRIGHT.get(orientation(img) if orient is None else orient)
    return img if method is None else img.transpose(method)


def _deep_to_unit(values: np.ndarray, mode: str, name: str) -> np.ndarray:
    """Pixel values of a deep (I;16*, I, F) image as floats in [0, 1]; DataError if no range."""
    values = values.astype(np.float64)
    if mode.startswith("I;16"):
        return values / _FULL_16
    if not np.isfinite(values).all():
        raise DataError(f"{name}: the image holds NaN or infinite pixel values")
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if low < 0:
        raise DataError(
            f"{name}: {mode!r} image with negative pixel values ({low:g}); no tonal range is "
            "implied — save it as an 8- or 16-bit image"
        )
    if mode == "I":
        if high > _FULL_16:
            raise DataError(
                f"{name}: 32-bit integer image with values up to {high:g}, above the 16-bit range; "
                "no tonal range is implied — save it as an 8- or 16-bit image"
            )
        return values / _FULL_16
    # mode F
    if high <= 1.0:
        return values
    if np.array_equal(values, np.round(values)) and high <= _FULL_16:
        return values / (255.0 if high <= 255 else _FULL_16)
    raise DataError(
        f"{name}: floating-point image with values up to {high:g}; expected [0, 1] (or whole "
        "numbers in an 8- or 16-bit range) — save it as an 8- or 16-bit image"
    )


def eight_bit(img: Image.Image, name: str) -> Image.Image:
    """Deep grey modes (``I;16*``, ``I``, ``F``) → mode ``L`` in their true tonal range (see the
    module docstring); any other mode is returned as it is."""
    if not (img.mode.startswith("I;16") or img.mode in ("I", "F")):
        return img
    unit = _deep_to_unit(np.asarray(img), img.mode, name)
    return Image.fromarray(np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8), "L")


def flatten(img: Image.Image, mode: str, name: str) -> Image.Image:
    """``img`` as an 8-bit ``mode`` image ("L", "RGB" or "RGBA"): deep modes scaled by their
    range, transparency put on white unless ``mode`` is "RGBA"."""
    img = eight_bit(img, name)
    if img.mode in _PREMULTIPLIED:
        img = img.convert(_PREMULTIPLIED[img.mode])
    try:
        if mode != "RGBA" and (img.mode in ALPHA_MODES or "transparency" in img.info):
            rgba = img.convert("RGBA")
            img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        return img.convert(mode)
    except ValueError as exc:
        raise DataError(
            f"{name}: Pillow mode {img.mode!r} cannot be converted to {mode} ({exc})"
        ) from exc


def decode(img: Image.Image, mode: str, name: str) -> Image.Image:
    """An opened image → upright 8-bit ``mode`` picture (:func:`upright` then :func:`flatten`)."""
    return flatten(upright(img), mode, name)
