"""Realism: does a judge recognise generated images as what they should be?

The paper's realism metric for digits is the accuracy of an MNIST classifier on translated
digits: a generator that turns a printed "7" into a handwriting-like "7" scores high, one that
produces blur or the wrong digit scores low. With a ``"domain"`` judge the same number measures
controllability: how often an output shows the domain (e.g. emoji vendor) it was asked for.
"""

from __future__ import annotations

import torch

from m3dgan.metrics.judge import JudgeNet, predict


def classification_accuracy(
    judge: JudgeNet,
    images_float: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 256,
) -> float:
    """Fraction of images (float in [-1, 1], or uint8) the judge assigns their expected label.

    Rows labelled -1 (no label) are skipped; an error is raised if no labelled rows remain,
    since a 0 or NaN there would read as a real score.
    """
    if len(images_float) != len(labels):
        raise ValueError(f"{len(images_float)} images but {len(labels)} labels")
    labels = labels.long().cpu()
    keep = labels >= 0
    if not bool(keep.any()):
        raise ValueError("no labelled images to score (all labels are -1)")
    predicted = predict(judge, images_float[keep], batch_size=batch_size)
    return float((predicted == labels[keep]).float().mean())
