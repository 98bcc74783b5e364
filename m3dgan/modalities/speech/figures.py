"""What a speech generator does inside, as pictures for a training run's sampling step.

As TTS recipes (coqui TTS, NVIDIA's Tacotron 2) log them: for one fixed test sentence, the
attention alignment of a teacher-forced pass (the decoder fed the ground-truth frames, with the
ground truth as its reference where the model has a reference encoder), the mel it predicts
there and the ground-truth mel. The free-running output (what ``translate`` would say) is
added beside them: teacher forcing can look fine long before decoding on its own does.
Pictures: ``m3dgan.report.spectrogram`` (viridis; mels on the fixed scale [-1, 1]).
"""

from __future__ import annotations

import numpy as np
import torch

from m3dgan.modalities.speech.frames import frame_lengths
from m3dgan.report.spectrogram import alignment_picture, mel_picture


def attended_positions(weights: torch.Tensor) -> int:
    """How many source positions the weights [G, M] cover: up to the last one that gets any
    weight (masked padding gets exactly 0 from the softmax), at least 1."""
    used = torch.nonzero(weights.float().sum(0) > 0).flatten()
    return int(used[-1]) + 1 if len(used) else max(weights.shape[1], 1)


@torch.no_grad()
def speech_figures(
    model, fixed: dict[str, torch.Tensor], prediction: torch.Tensor, n_mels: int
) -> dict[str, np.ndarray]:
    """``alignment``, ``mel_teacher_forced``, ``mel_ground_truth`` and ``mel_prediction`` of
    the first fixed test input (see the module's docstring); {} where the generator gives no
    alignment under teacher forcing."""
    source, target = fixed["source"][:1], fixed["target"][:1]
    truth_frames = int(frame_lengths(target, n_mels)[0])
    target = target[:, :truth_frames]
    z = None if model.attention is None else model.embed(model.encode(target).mu)
    forced = model.generate(source, z, target)
    alignment = getattr(forced, "alignment", None)
    if alignment is None:
        return {}
    weights = alignment[0]
    own = int(frame_lengths(prediction[:1], n_mels)[0])
    return {
        "alignment": alignment_picture(weights[:, : attended_positions(weights)]),
        "mel_teacher_forced": mel_picture(forced.frames[0, :truth_frames], n_mels),
        "mel_ground_truth": mel_picture(target[0], n_mels),
        "mel_prediction": mel_picture(prediction[0, :own], n_mels),
    }
