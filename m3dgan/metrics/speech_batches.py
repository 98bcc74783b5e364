"""Utterances in length-sorted batches, and the vocoder round trip the speech judges score.

Speech metrics run over hundreds of utterances of 1-6 s. Batching them in length order keeps
padding (wasted compute in the GRUs and in Griffin-Lim) small. The judges accept any *frames*
object that a LongTensor of row indices turns into a padded float batch ``[b, T, n_mels]``: a
:class:`~m3dgan.data.frames.SpeechFrames` from a data set, or simply a padded tensor of generated
mels; the true lengths always come separately.

A listener (or any recogniser) hears a TTS output only after the vocoder, and Griffin-Lim smears
what it cannot invert. :func:`vocoder_round_trip` (mel -> Griffin-Lim -> mel, the same
:func:`~m3dgan.audio.mel_to_wave` the CLI uses to write WAVs) is therefore applied to generated
speech before judging it, and to real speech to measure the best any TTS output can score.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from m3dgan import paths
from m3dgan.atomic import atomic_paths
from m3dgan.audio import PAD_VALUE, MelConfig, mel_to_wave, wave_to_mel
from m3dgan.data.frames import SpeechFrames
from m3dgan.data.store import MANIFEST, TEXT, load_split, read_manifest, sha256_file
from m3dgan.errors import DataError


def check_lengths(lengths: torch.Tensor | list[int], rows: int, what: str = "mels") -> torch.Tensor:
    """``lengths`` as int64 [rows], every length >= 1; DataError otherwise."""
    lengths = torch.as_tensor(lengths, dtype=torch.int64).reshape(-1)
    if len(lengths) != rows:
        raise DataError(f"{what}: {rows} utterances but {len(lengths)} lengths")
    if rows and int(lengths.min()) < 1:
        raise DataError(f"{what}: utterance {int(lengths.argmin())} has no frames")
    return lengths


def length_sorted_batches(
    frames: Any, lengths: torch.Tensor, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(row indices, float32 mels [b, T_max of the batch, n_mels], lengths [b]) in length order.

    Frames past a row's length are set to PAD_VALUE, whatever the source padded them with.
    """
    order = torch.argsort(lengths, stable=True)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        lens = lengths[index]
        mels = torch.as_tensor(frames[index])[:, : int(lens.max())].float()
        if mels.shape[1] < int(lens.max()):
            raise DataError(
                f"mels hold {mels.shape[1]} frames, fewer than a length of {lens.max()}"
            )
        past = torch.arange(mels.shape[1])[None, :] >= lens[:, None]
        yield index, mels.masked_fill(past[..., None], PAD_VALUE), lens


def vocoder_round_trip(
    frames: Any,
    lengths: torch.Tensor | list[int],
    cfg: MelConfig,
    *,
    iterations: int = 32,
    batch_size: int = 16,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every utterance through Griffin-Lim and back to a log-mel: (float32 [N, T_max, n_mels]
    padded with PAD_VALUE, lengths [N]). Rows keep their order; lengths stay the same
    (a wave of (T - 1) hops analysed with centred frames has T frames again)."""
    lengths = check_lengths(lengths, len(frames))
    n = len(lengths)
    out = torch.full((n, int(lengths.max()) if n else 0, cfg.n_mels), PAD_VALUE)
    bar = tqdm(total=n, desc="Griffin-Lim round trip", disable=not progress, unit="utt")
    for index, mels, lens in length_sorted_batches(frames, lengths, batch_size):
        waves = mel_to_wave(mels, cfg, iterations=iterations, lengths=lens)
        again = wave_to_mel(waves, cfg)
        for row, k, mel in zip(index.tolist(), lens.tolist(), again, strict=True):
            keep = min(k, mel.shape[0])
            out[row, :keep] = mel[:keep]
        bar.update(len(index))
    bar.close()
    return out, lengths


@dataclass
class SpeechSplit:
    """What the speech judges read from one split of a data set with a speech side."""

    frames: SpeechFrames  # the speech side
    texts: list[str] | None  # the text side (what is said), None when the other side is no text
    styles: torch.Tensor  # int64 [N] domain (style) index, -1 where there is none
    style_names: list[str]
    cfg: MelConfig

    @property
    def lengths(self) -> torch.Tensor:
        return self.frames.lengths


def dataset_digest(root: Path) -> str:
    """sha256 of the data set's manifest.json, which holds the sha256 of every data file: one
    value that changes whenever anything in the data set does (the judges' cache key)."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise DataError(f"{root}: no {MANIFEST}; build the data set first (m3dgan data build)")
    return sha256_file(path)


def load_speech_split(root: Path, split: str) -> SpeechSplit:
    """The speech side, text side and styles of ``split``; DataError if there is no speech."""
    root = Path(root)
    manifest = read_manifest(root)
    speech = manifest.speech_sides()
    if not speech:
        raise DataError(f"{root}: data set {manifest.name!r} has no speech side")
    if split not in manifest.splits:
        raise DataError(f"{root}: data set {manifest.name!r} has no {split!r} split")
    data = load_split(root, split)
    side = speech[0]
    other = "source" if side == "target" else "target"
    texts = list(data[other]) if manifest.kind(other) == TEXT else None
    cfg = MelConfig.from_dict(manifest.audio)  # store.verify: a speech side has its settings
    return SpeechSplit(data[side], texts, data["domain"], list(manifest.domains), cfg)


def round_trip_rows(n: int, limit: int | None, seed: int = 0) -> torch.Tensor:
    """The test rows the vocoder ceiling is measured on: all of them, or ``limit`` rows drawn
    with a fixed seed (sorted), the same for every judge and every run."""
    if limit is None or limit >= n:
        return torch.arange(n)
    gen = torch.Generator().manual_seed(seed)
    return torch.sort(torch.randperm(n, generator=gen)[:limit]).values


def cached_round_trip(
    root: Path,
    split: SpeechSplit,
    rows: torch.Tensor,
    *,
    split_name: str = "test",
    iterations: int = 32,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`vocoder_round_trip` of ``split``'s ``rows`` of the data set at ``root``, cached in
    the judges folder as ``<data set>-<split_name>-round-trip.safetensors`` (float16, keyed by
    the manifest's sha256, the rows and the iterations): Griffin-Lim over hundreds of utterances
    takes minutes on a CPU, and both judges need the same round trip of the same real speech."""
    name = read_manifest(root).name
    key = {
        "manifest_sha256": dataset_digest(root),
        "rows_sha256": hashlib.sha256(rows.numpy().tobytes()).hexdigest(),
        "iterations": iterations,
        "mel": split.cfg.to_dict(),
    }
    weights = paths.judges_dir() / f"{name}-{split_name}-round-trip.safetensors"
    sidecar = weights.with_suffix(".json")
    try:
        if json.loads(sidecar.read_text()) == key:
            stored = load_file(str(weights))
            return stored["mels"].float(), stored["lengths"]
    except (OSError, ValueError, KeyError, RuntimeError):
        pass  # no cache or a damaged one: compute it again
    frames = split.frames.subset(rows)
    mels, lengths = vocoder_round_trip(
        frames, frames.lengths, split.cfg, iterations=iterations, progress=progress
    )
    sidecar.unlink(missing_ok=True)  # first: a crash leaves no valid-looking pair
    with atomic_paths(weights, sidecar) as (weights_tmp, sidecar_tmp):
        save_file({"mels": mels.half().contiguous(), "lengths": lengths}, str(weights_tmp))
        sidecar_tmp.write_text(json.dumps(key))
    return mels.half().float(), lengths
