"""Feature settings of the speech modality, saved with every speech data set and checkpoint.

16 kHz is enough for intelligible speech and is what pocketsphinx (the outside reference ASR)
expects. A 1024-point FFT (64 ms) with a hop of 256 samples (16 ms, 62.5 frames/s) and 80 mel
bins up to 8 kHz follow the usual Tacotron settings scaled to 16 kHz. Magnitudes become decibels
relative to ``ref_db`` and are mapped linearly from [min_db, 0] to [-1, 1], the generator's tanh
range; -1 is the silence floor and doubles as the padding value of a batch (``PAD_VALUE``), so a
padded frame looks like silence to every subnet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from m3dgan.errors import ConfigError

PAD_VALUE = -1.0


@dataclass(frozen=True)
class MelConfig:
    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    min_db: float = -100.0
    ref_db: float = 20.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MelConfig:
        known = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or set(data) - known:
            raise ConfigError(f"mel settings must be a mapping with keys from {sorted(known)}")
        cfg = cls(**data)
        if cfg.fmax > cfg.sample_rate / 2 or cfg.hop_length <= 0 or cfg.win_length > cfg.n_fft:
            raise ConfigError(f"inconsistent mel settings: {cfg}")
        return cfg

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length
