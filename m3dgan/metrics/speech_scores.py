"""The speech metrics of paper Table 2d-e as plain functions: WER/CER, TTS scores, ASR scores.

- :func:`wer_cer`: corpus word/character error rates with jiwer, on normalised transcripts
  (:func:`~m3dgan.metrics.transcript.normalise_transcript`, the one normal form used everywhere).
- :func:`tts_scores`: generated mel spectrograms -> Griffin-Lim -> mel (what a listener hears),
  then the judge ASR's WER/CER against the source texts (intelligibility) and the style judge's
  accuracy against the styles of the references used (style transfer accuracy).
- :func:`asr_scores`: a speech->text model's transcripts -> WER/CER; with the test audio, also
  pocketsphinx's WER/CER on it as an outside reference point.
- :func:`pocketsphinx_transcribe`: PyPI pocketsphinx 5.x with the en-us acoustic model, language
  model and dictionary bundled in the wheel: offline, no download.

The judges come from :func:`load_speech_judges` (trained once per data set, then cached).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from m3dgan.audio import MelConfig
from m3dgan.errors import InputError
from m3dgan.extras import require
from m3dgan.metrics.judge_asr import JudgeASR, load_or_train_judge_asr
from m3dgan.metrics.speech_batches import check_lengths, vocoder_round_trip
from m3dgan.metrics.style_classifier import (
    StyleClassifier,
    load_or_train_style_classifier,
    per_style_accuracy,
    style_accuracy,
)
from m3dgan.metrics.transcript import normalise_transcript, wer_cer

__all__ = [
    "SpeechJudges",
    "asr_scores",
    "load_speech_judges",
    "normalise_transcript",
    "pocketsphinx_transcribe",
    "tts_scores",
    "wer_cer",
]

POCKETSPHINX_RATE = 16000


@lru_cache(maxsize=1)
def _pocketsphinx_decoder():  # -> pocketsphinx.Decoder
    """One decoder per process: loading the en-us models takes seconds."""
    # the speech extra, imported when used (m3dgan.extras)
    Decoder = require("pocketsphinx", "the pocketsphinx reference ASR").Decoder
    return Decoder(samprate=POCKETSPHINX_RATE, logfn=os.devnull)


def pocketsphinx_transcribe(
    waves_16k: Sequence[np.ndarray | torch.Tensor], *, progress: bool = False
) -> list[str]:
    """pocketsphinx's transcript of each mono wave (float in [-1, 1], 16 kHz), lowercase words.

    One decoder with the bundled en-us models decodes every wave as a whole utterance. An empty
    wave gives "" (nothing was said); NaN or infinite samples, or a wave that is not 1-D, are an
    InputError naming the wave.
    """
    decoder = _pocketsphinx_decoder()
    texts = []
    for i, wave in enumerate(tqdm(waves_16k, desc="pocketsphinx", disable=not progress)):
        x = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
        if x.ndim != 1:
            raise InputError(f"wave {i}: expected mono samples [N], got shape {x.shape}")
        if not np.isfinite(x).all():
            raise InputError(f"wave {i}: holds NaN or infinite samples")
        if x.size == 0:
            texts.append("")
            continue
        pcm = (np.clip(x.astype(np.float32), -1.0, 1.0) * 32767).astype("<i2").tobytes()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        texts.append(hyp.hypstr if hyp is not None else "")
    return texts


@dataclass
class SpeechJudges:
    """The two judges of a speech data set, with their own scores on real test speech."""

    asr: JudgeASR
    style: StyleClassifier

    def ceiling(self) -> dict:
        """What the judges score on REAL test speech, as stored and after Griffin-Lim (the
        best a TTS output can get), from their sidecars."""
        return {
            "asr_real": self.asr.info.get("test"),
            "asr_round_trip": self.asr.info.get("round_trip"),
            "style_real": self.style.info.get("test_accuracy"),
            "style_round_trip": self.style.info.get("round_trip_accuracy"),
        }


def load_speech_judges(
    data_root: Path | str,
    *,
    asr_steps: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> SpeechJudges:
    """Both judges of the speech data set at ``data_root`` (cached; trained on first use)."""
    return SpeechJudges(
        asr=load_or_train_judge_asr(data_root, steps=asr_steps, device=device, progress=progress),
        style=load_or_train_style_classifier(data_root, progress=progress),
    )


def tts_scores(
    mels: Any,
    lengths: torch.Tensor | list[int],
    texts: Sequence[str],
    styles: torch.Tensor | list[int] | None,
    judges: SpeechJudges,
    *,
    cfg: MelConfig,
    style_names: Sequence[str] | None = None,
    iterations: int = 32,
    progress: bool = False,
) -> dict:
    """Intelligibility and style accuracy of generated speech.

    ``mels``: the generated normalised log-mels (padded [N, T, n_mels] tensor or SpeechFrames),
    ``lengths`` [N] their frames (where the model stopped), ``texts`` what each should say,
    ``styles`` the style index of the reference each was generated with (None: no style score).
    Each utterance goes mel -> Griffin-Lim (``iterations``) -> mel before judging. Returns
    ``wer``, ``cer`` (and jiwer's counts), ``style_accuracy`` (after Griffin-Lim),
    ``style_accuracy_mel`` (on the mels as generated), ``style_per_style`` (by name when
    ``style_names`` is given) and ``hypotheses`` (the judge ASR's transcripts).
    """
    lengths = check_lengths(lengths, len(mels), "generated mels")
    if len(texts) != len(lengths):
        raise ValueError(f"{len(lengths)} generated utterances but {len(texts)} texts")
    heard, heard_lengths = vocoder_round_trip(
        mels, lengths, cfg, iterations=iterations, progress=progress
    )
    hypotheses = judges.asr.transcribe(heard, heard_lengths)
    scores: dict = {**wer_cer(hypotheses, list(texts)), "hypotheses": hypotheses}
    if styles is not None:
        styles = torch.as_tensor(styles, dtype=torch.int64).reshape(-1)
        names = list(style_names or [str(k) for k in range(judges.style.n_styles)])
        scores["style_accuracy"] = style_accuracy(judges.style, heard, heard_lengths, styles)
        scores["style_accuracy_mel"] = style_accuracy(judges.style, mels, lengths, styles)
        scores["style_per_style"] = per_style_accuracy(
            judges.style, heard, heard_lengths, styles, names
        )
    return scores


def asr_scores(
    hypotheses: Sequence[str],
    references: Sequence[str],
    *,
    waves_16k: Sequence[np.ndarray | torch.Tensor] | None = None,
    progress: bool = False,
) -> dict:
    """WER/CER of a speech->text model's ``hypotheses`` against ``references`` (``model``),
    and, when the same test audio is given as ``waves_16k``, pocketsphinx's WER/CER on it
    (``pocketsphinx``, with its ``pocketsphinx_hypotheses``)."""
    scores: dict = {"model": wer_cer(hypotheses, references)}
    if waves_16k is not None:
        if len(waves_16k) != len(references):
            raise ValueError(f"{len(waves_16k)} waves but {len(references)} references")
        sphinx = pocketsphinx_transcribe(waves_16k, progress=progress)
        scores["pocketsphinx"] = wer_cer(sphinx, references)
        scores["pocketsphinx_hypotheses"] = sphinx
    return scores
