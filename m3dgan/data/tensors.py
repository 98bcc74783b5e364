"""A loaded split → the tensors the model trains on, and the model's view of each side.

Images stay uint8 until a batch is drawn (``batch_to_model`` converts to float in [-1, 1]).
Speech sides stay ragged float16 mels (:class:`~m3dgan.data.frames.SpeechFrames`); a drawn batch
is padded with the silence floor and becomes float32 on the device.
Text sides are encoded once, at load time, into padded int64 ids [N, L] with the run's
vocabulary, so drawing a batch is an index, as for images. The vocabulary is a characters list
built from the training texts of that side (the paper's character model), the data set's
sentencepiece model (``manifest.tokenizer``), or one trained on that side's training text when
the run starts (``model.subwords``); it is saved in every checkpoint's sidecar. The
text source of a text → speech task may go through a TTS front end first (cleaners, phonemes:
:func:`text_frontends`), which the vocabulary carries, so the saved vocabulary is the one the
run trains on and ``translate`` reads typed text the same way.
"""

from __future__ import annotations

from pathlib import Path

import torch

from m3dgan.config import Config
from m3dgan.data.store import Manifest, SplitData, to_float, tokenizer_path
from m3dgan.data.subwords import train_unigram
from m3dgan.errors import ConfigError
from m3dgan.modalities import ModalitySpec
from m3dgan.modalities.text.frontend import TextFrontend
from m3dgan.modalities.text.vocab import (
    PAD,
    CharVocabulary,
    SubwordVocabulary,
    Vocabulary,
)
from m3dgan.tasks import get_task

SIDES = ("source", "target")


def text_frontends(cfg: Config) -> dict[str, TextFrontend]:
    """The TTS text front end of each side that has one: the text source of a text → speech
    task, from ``model.text_cleaners`` / ``model.text_frontend`` (``{}`` when both are at
    their defaults, which change nothing)."""
    frontend = TextFrontend(cfg.model.text_cleaners, cfg.model.text_frontend)
    task = get_task(cfg.task)
    if frontend.plain or (task.source, task.target) != ("text", "speech"):
        return {}
    return {"source": frontend}


def build_vocabularies(
    root: Path,
    manifest: Manifest,
    train: SplitData,
    frontends: dict[str, TextFrontend] | None = None,
    subwords: int = 0,
) -> dict[str, Vocabulary]:
    """One vocabulary per text side: the data set's subword model, or training characters —
    with ``frontends[side]`` (:func:`text_frontends`) applied first, the characters of what it
    makes of the training text — or, with ``subwords`` (``model.subwords``) > 0, a
    sentencepiece unigram model of about that many pieces trained on the side's distinct
    training texts (sorted, so equal data gives an equal model on every rank and on resume).
    A front end on a subword side, or ``subwords`` on a data set with its own subword model, is
    a ConfigError."""
    vocabs: dict[str, Vocabulary] = {}
    spm = tokenizer_path(root, manifest)
    frontends = frontends or {}
    if subwords and spm is not None:
        raise ConfigError(
            f"model.subwords={subwords}: data set {manifest.name!r} has its own subword model "
            f"({spm.name}); model.subwords applies to data sets whose text is read as characters"
        )
    for side in manifest.text_sides():
        frontend = frontends.get(side)
        if subwords:
            if frontend is not None and not frontend.plain:
                raise ConfigError(
                    "model.subwords and the TTS text front end (model.text_cleaners / "
                    "model.text_frontend) do not go together: the front end needs characters"
                )
            texts = sorted(set(train[side]))
            try:
                proto = train_unigram(texts, subwords, f"model.subwords={subwords}")
            except ValueError as exc:
                raise ConfigError(
                    f"{exc} in the {side} side of data set {manifest.name!r}"
                ) from exc
            vocabs[side] = SubwordVocabulary(proto)
        elif spm is not None:
            if frontend is not None and not frontend.plain:
                raise ConfigError(
                    f"data set {manifest.name!r} reads its text as sentencepiece subwords; the "
                    f"TTS text front end (model.text_cleaners / model.text_frontend) needs a "
                    f"character vocabulary"
                )
            vocabs[side] = SubwordVocabulary.from_file(spm)
        else:
            vocabs[side] = CharVocabulary.build(train[side], frontend=frontend)
    return vocabs


def encode_split(split: SplitData, vocabs: dict[str, Vocabulary]) -> SplitData:
    """Text sides → padded ids [N, L]; everything else as loaded."""
    out = dict(split)
    for side, vocab in vocabs.items():
        out[side] = vocab.encode_batch(split[side])
        out[f"{side}_text"] = list(split[side])
    return out


def side_specs(
    manifest: Manifest, source_kind: str, target_kind: str, vocabs, train: SplitData
) -> tuple[ModalitySpec, ModalitySpec]:
    """ModalitySpec of each side: images (channels, size); text (vocabulary size, longest
    training sequence in tokens); speech (mel bins, longest training utterance in frames)."""
    specs = []
    for side, kind in zip(SIDES, (source_kind, target_kind), strict=True):
        channels = manifest.source_channels if side == "source" else manifest.target_channels
        if kind == "text":
            specs.append(ModalitySpec("text", vocabs[side].size, int(train[side].shape[1])))
        elif kind == "speech":
            specs.append(ModalitySpec("speech", channels, train[side].max_length))
        else:
            specs.append(ModalitySpec(kind, channels, manifest.image_size))
    return specs[0], specs[1]


def batch_to_model(
    x: torch.Tensor, device: torch.device, channels_last: bool = False
) -> torch.Tensor:
    """A drawn batch → model input: images float [-1, 1]; mels (float16 [b, T, n_mels], padded
    with the silence floor) float32; ids trimmed to the longest row."""
    if x.dtype.is_floating_point:
        return x.to(device, non_blocking=True).float()
    if x.dtype == torch.uint8:
        x = to_float(x.to(device, non_blocking=True))
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x
    width = int((x != PAD).sum(dim=1).max().clamp_min(1))
    return x[:, :width].to(device, non_blocking=True)
