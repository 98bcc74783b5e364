"""Colour pictures of mel spectrograms and attention alignments (``report.colormap``).

- :func:`mel_picture`: a mel [T, n_mels] in [-1, 1] (the silence floor is -1) → RGB
  [n_mels, T, 3], one pixel per frame and mel bin, low frequencies at the bottom, on the fixed
  scale [-1, 1] so that pictures of a prediction and of the ground truth compare.
- :func:`alignment_picture`: attention weights [decoder steps, source positions] → RGB
  [source positions, decoder steps, 3]: decoder steps left to right, source positions bottom to
  top (a good alignment is a bright diagonal from the bottom left), scaled to its own largest
  weight, since an untrained attention spreads thin and would be black on a fixed scale.
- :func:`enlarge` repeats pixels (no blur) for viewers that show images at their own size
  (TensorBoard); :func:`save_png` writes a picture atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from m3dgan.atomic import atomic_path
from m3dgan.report.colormap import colorize


def mel_picture(mel: torch.Tensor, n_mels: int | None = None) -> np.ndarray:
    """Mel [T, ≥ n_mels] (values in [-1, 1]) → uint8 RGB [n_mels, T, 3], low frequencies at the
    bottom."""
    n_mels = n_mels or mel.shape[-1]
    values = mel[:, :n_mels].detach().float().cpu().numpy().T[::-1]
    return colorize(values, -1.0, 1.0)


def alignment_picture(weights: torch.Tensor) -> np.ndarray:
    """Attention weights [G, M] (G decoder steps over M source positions) → uint8 RGB
    [M, G, 3], source position 0 at the bottom, scaled to the largest weight."""
    values = weights.detach().float().cpu().numpy().T[::-1]
    top = float(values.max()) if values.size else 0.0
    return colorize(values, 0.0, top if top > 0 else 1.0)


def enlarge(picture: np.ndarray, min_height: int) -> np.ndarray:
    """Repeat every pixel k × k times, k the smallest whole factor that makes the picture at
    least ``min_height`` pixels tall (1: unchanged)."""
    k = max(1, -(-min_height // max(picture.shape[0], 1)))
    return picture.repeat(k, axis=0).repeat(k, axis=1) if k > 1 else picture


def save_png(picture: np.ndarray, path: Path | str) -> Path:
    """Write uint8 RGB [H, W, 3] as a PNG, atomically (``m3dgan.atomic``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(picture)).save(tmp, format="PNG")
    return path
