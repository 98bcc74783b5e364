"""What a page of outputs shows (``translate``'s and ``evaluate``'s ``index.html``): one value
handed from the command to the target modality's ``output_page`` and on to the page writer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class OutputPage:
    """One row per input, one column per reference (or token setting, or random code).

    - ``title``: the page's heading;
    - ``rows[r]``: the label of input r; ``columns[c]``: the label of column c;
    - ``files[r][c]``: the output file of input r and column c, inside the page's folder;
    - ``sources[r]``: input r as the model read it, as an image [C, H, W] in [-1, 1] (the source
      modality's ``panel_image``), or None (a text input has no picture); only for targets whose
      ``page_shows_samples``;
    - ``headers[c]``: the reference column c was made with, a sample of the target modality, or
      None; likewise;
    - ``notes``: name → value rows for the top of the page (the run, its step and seed;
      ``evaluate``'s metrics);
    - ``reference_files``: the files the columns' references were read from, one per column,
      for pages that show them as they are (speech plays them).
    """

    title: str
    rows: list[str]
    columns: list[str]
    files: list[list[Path]]
    sources: list[torch.Tensor | None] | None = None
    headers: list[torch.Tensor | None] | None = None
    notes: dict[str, object] | None = None
    reference_files: list[Path] | None = None
