"""A colour map for spectrograms and attention alignments, without matplotlib.

Viridis (perceptually uniform, readable in greyscale and by most colour-blind viewers; the
default colour map of matplotlib, which coqui TTS and most TTS recipes use for these pictures),
given by 9 evenly spaced colours and linearly interpolated into a 256-entry lookup table.
"""

from __future__ import annotations

import numpy as np

# viridis at 0, 1/8, ..., 1 (matplotlib's published values, rounded to 8 bits)
_VIRIDIS_STOPS = (
    (68, 1, 84),
    (72, 40, 120),
    (62, 73, 137),
    (49, 104, 142),
    (38, 130, 142),
    (31, 158, 137),
    (53, 183, 121),
    (110, 206, 88),
    (253, 231, 37),
)


def _lookup_table(stops: tuple[tuple[int, int, int], ...], size: int = 256) -> np.ndarray:
    anchors = np.linspace(0.0, 1.0, len(stops))
    at = np.linspace(0.0, 1.0, size)
    colours = np.asarray(stops, dtype=np.float64)
    table = np.stack([np.interp(at, anchors, colours[:, c]) for c in range(3)], axis=1)
    return np.round(table).astype(np.uint8)


VIRIDIS = _lookup_table(_VIRIDIS_STOPS)  # uint8 [256, 3]


def colorize(values: np.ndarray, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """Values [H, W] → uint8 RGB [H, W, 3]: ``low`` (and below) the darkest colour, ``high``
    (and above) the brightest; NaN counts as ``low``."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=low)
    span = high - low if high > low else 1.0
    index = np.clip((values - low) / span, 0.0, 1.0) * (len(VIRIDIS) - 1)
    return VIRIDIS[np.round(index).astype(np.intp)]
