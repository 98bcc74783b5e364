"""Offline metrics: realism and controllability by self-trained judges, and diversity.

Pretrained ImageNet networks (LPIPS's AlexNet, Inception) cannot be downloaded on the project's
machines, so the metrics rest on small classifiers trained here on each data set
(:mod:`~m3dgan.metrics.judge`); real LPIPS is used only when already installed with its weights.
"""

from m3dgan.metrics.diversity import (
    DistanceFn,
    GenerateFn,
    diversity_score,
    feature_distance,
    judge_distance_fn,
    lpips_distance_fn,
    lpips_unavailable_reason,
    real_pair_diversity,
)
from m3dgan.metrics.judge import (
    KINDS,
    JudgeNet,
    JudgeRecipe,
    default_recipe,
    judge_path,
    load_or_train_judge,
    predict,
    train_judge,
)
from m3dgan.metrics.realism import classification_accuracy

__all__ = [
    "KINDS",
    "DistanceFn",
    "GenerateFn",
    "JudgeNet",
    "JudgeRecipe",
    "classification_accuracy",
    "default_recipe",
    "diversity_score",
    "feature_distance",
    "judge_distance_fn",
    "judge_path",
    "load_or_train_judge",
    "lpips_distance_fn",
    "lpips_unavailable_reason",
    "predict",
    "real_pair_diversity",
    "train_judge",
]
