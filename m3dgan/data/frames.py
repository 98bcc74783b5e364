"""A split's speech side: many mel spectrograms of different lengths, stored as one tensor.

Utterances differ in length, so a padded [N, T_max, n_mels] tensor would waste most of its memory
on the few longest clips (and a data set of 16,000 utterances would no longer be a cheap load).
:class:`SpeechFrames` keeps every frame of every utterance in one float16 tensor [ΣT, n_mels] plus
each row's length, and pads only when a batch is drawn: ``frames[idx]`` with a tensor or list of
row numbers (what the trainer does with ``split["target"][idx]``) gathers the rows in one indexed
copy and fills the frames past each row's end with the silence floor (``PAD_VALUE``), so a padded
frame looks like silence to every subnet. float16 halves the memory of float32 and is exact enough
for features in [-1, 1] (steps of at most 2^-11).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from m3dgan.audio.config import PAD_VALUE
from m3dgan.errors import DataError

FRAME_DTYPE = torch.float16

Index = int | slice | torch.Tensor | np.ndarray | Sequence[int]


class SpeechFrames:
    """Ragged mel spectrograms: ``frames`` float16 [ΣT, n_mels], ``lengths`` int64 [N]."""

    def __init__(self, frames: torch.Tensor, lengths: torch.Tensor, where: str = "speech frames"):
        """Check the parts agree (DataError naming ``where`` otherwise) and index them."""
        if not isinstance(frames, torch.Tensor) or frames.ndim != 2:
            shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames)
            raise DataError(f"{where}: frames must be a 2-d [frames, n_mels] tensor, got {shape}")
        if frames.shape[1] < 1:
            raise DataError(f"{where}: frames have no mel bins (shape {tuple(frames.shape)})")
        if not frames.dtype.is_floating_point:
            raise DataError(f"{where}: frames must be floating point, got {frames.dtype}")
        if not isinstance(lengths, torch.Tensor) or lengths.ndim != 1:
            raise DataError(f"{where}: lengths must be a 1-d integer tensor")
        if lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
            raise DataError(f"{where}: lengths must be integers, got {lengths.dtype}")
        lengths = lengths.to(torch.int64)
        if len(lengths) and int(lengths.min()) < 1:
            row = int(torch.nonzero(lengths < 1)[0])
            raise DataError(
                f"{where}: row {row} has length {int(lengths[row])}; every utterance "
                "needs at least one frame"
            )
        total = int(lengths.sum())
        if total != frames.shape[0]:
            raise DataError(
                f"{where}: the lengths add up to {total} frames but {frames.shape[0]} are stored"
            )
        frames = frames.to(FRAME_DTYPE)
        if not bool(torch.isfinite(frames).all()):
            raise DataError(f"{where}: the frames hold NaN or infinite values")
        self.frames = frames.contiguous()
        self.lengths = lengths.contiguous()
        self.offsets = torch.cumsum(lengths, 0) - lengths  # first frame of each row

    @classmethod
    def from_list(cls, mels: Sequence[torch.Tensor], n_mels: int | None = None) -> SpeechFrames:
        """[T_i, n_mels] tensors (any float dtype) → SpeechFrames. ``n_mels`` is needed only
        when the list may be empty."""
        if isinstance(mels, SpeechFrames):
            return mels
        mels = list(mels)
        if not mels:
            if n_mels is None:
                raise DataError("an empty list of mel spectrograms needs n_mels")
            return cls(torch.zeros(0, n_mels, dtype=FRAME_DTYPE), torch.zeros(0, dtype=torch.int64))
        width = n_mels
        for i, mel in enumerate(mels):
            if not isinstance(mel, torch.Tensor) or mel.ndim != 2 or len(mel) < 1:
                shape = tuple(mel.shape) if isinstance(mel, torch.Tensor) else type(mel).__name__
                raise DataError(
                    f"mel spectrogram {i} must be a [T >= 1, n_mels] tensor, got {shape}"
                )
            width = mel.shape[1] if width is None else width
            if mel.shape[1] != width:
                raise DataError(f"mel spectrogram {i} has {mel.shape[1]} mel bins, not {width}")
        lengths = torch.tensor([len(m) for m in mels], dtype=torch.int64)
        frames = torch.cat([m.detach().to("cpu", FRAME_DTYPE) for m in mels])
        return cls(frames, lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def n_mels(self) -> int:
        return int(self.frames.shape[1])

    @property
    def max_length(self) -> int:
        """Frames of the longest utterance (0 when there are none)."""
        return int(self.lengths.max()) if len(self.lengths) else 0

    def __repr__(self) -> str:
        return (
            f"SpeechFrames({len(self)} utterances, {self.frames.shape[0]} frames, "
            f"{self.n_mels} mels, longest {self.max_length})"
        )

    def _rows(self, index: Index) -> torch.Tensor:
        """Any batch index → int64 row numbers (negative ones counted from the end)."""
        if isinstance(index, slice):
            return torch.arange(len(self))[index]
        if isinstance(index, (list, tuple)) and not index:
            return torch.zeros(0, dtype=torch.int64)
        rows = torch.as_tensor(np.asarray(index) if isinstance(index, np.ndarray) else index)
        if rows.dtype == torch.bool:
            if rows.shape != (len(self),):
                raise IndexError(f"a boolean mask needs {len(self)} entries, got {rows.shape}")
            return torch.nonzero(rows).flatten()
        if rows.dtype.is_floating_point or rows.ndim != 1:
            raise IndexError("index speech frames with an int, a slice or a 1-d list of rows")
        rows = rows.to(torch.int64)
        if len(rows) and (int(rows.max()) >= len(self) or int(rows.min()) < -len(self)):
            raise IndexError(f"row index out of range for {len(self)} utterances")
        return torch.where(rows < 0, rows + len(self), rows)

    def row(self, i: int) -> torch.Tensor:
        """Utterance ``i``: float16 [T_i, n_mels] (a view, no copy)."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"row {i} out of range for {n} utterances")
        i = i + n if i < 0 else i
        start = int(self.offsets[i])
        return self.frames[start : start + int(self.lengths[i])]

    def __getitem__(self, index: Index) -> torch.Tensor:
        """An int → one utterance [T_i, n_mels]; anything else → a padded batch
        [b, T_max, n_mels] (float16, frames past each row's length = ``PAD_VALUE``)."""
        if isinstance(index, (int, np.integer)) or (
            isinstance(index, torch.Tensor)
            and index.ndim == 0
            and not index.dtype.is_floating_point
        ):
            return self.row(int(index))
        rows = self._rows(index)
        lengths = self.lengths[rows]
        width = int(lengths.max()) if len(rows) else 0
        steps = torch.arange(width)
        valid = steps[None, :] < lengths[:, None]  # [b, T_max]
        where = self.offsets[rows][:, None] + steps[None, :]
        where = torch.where(valid, where, torch.zeros_like(where))  # any in-range frame
        batch = self.frames[where]  # [b, T_max, n_mels]
        return batch.masked_fill_(~valid[:, :, None], PAD_VALUE)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for i in range(len(self)):
            yield self.row(i)

    def subset(self, index: Index) -> SpeechFrames:
        """The rows ``index`` as new SpeechFrames (ragged, no padding)."""
        rows = self._rows(index)
        lengths = self.lengths[rows]
        steps = torch.arange(int(lengths.sum()))
        owner = torch.repeat_interleave(torch.arange(len(rows)), lengths)
        starts = torch.cumsum(lengths, 0) - lengths
        where = self.offsets[rows][owner] + steps - starts[owner]
        return SpeechFrames(self.frames[where], lengths)

    def to_list(self) -> list[torch.Tensor]:
        return list(self)
