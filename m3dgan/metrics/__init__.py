"""Offline metrics: realism and controllability by self-trained judges, diversity, BLEU, and
the text->image scores (Inception-style score, missing modes, named-emoji accuracy).

Pretrained ImageNet networks (LPIPS's AlexNet, Inception) cannot be downloaded on the project's
machines, so the metrics rest on small classifiers trained here on each data set
(:mod:`~m3dgan.metrics.judge`) and on all emoji artwork (:mod:`~m3dgan.metrics.emoji_judge`);
real LPIPS and the real Inception Score are used only when their weights are already on disk.
"""

from m3dgan.metrics.bleu import BleuScores, corpus_bleu
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
from m3dgan.metrics.emoji_judge import (
    EmojiJudgeRecipe,
    cross_vendor_accuracy,
    load_or_train_emoji_judge,
)
from m3dgan.metrics.image_score import (
    MissingModes,
    inception_score,
    inception_style_score,
    inception_unavailable_reason,
    judge_class_indices,
    missing_modes,
    named_accuracy,
    text_to_image_scores,
)
from m3dgan.metrics.judge import (
    KINDS,
    JudgeNet,
    JudgeRecipe,
    default_recipe,
    judge_path,
    load_or_train_judge,
    pooled_features,
    predict,
    predict_proba,
    train_judge,
)
from m3dgan.metrics.realism import classification_accuracy

__all__ = [
    "KINDS",
    "BleuScores",
    "DistanceFn",
    "EmojiJudgeRecipe",
    "GenerateFn",
    "JudgeNet",
    "JudgeRecipe",
    "MissingModes",
    "classification_accuracy",
    "corpus_bleu",
    "cross_vendor_accuracy",
    "default_recipe",
    "diversity_score",
    "feature_distance",
    "inception_score",
    "inception_style_score",
    "inception_unavailable_reason",
    "judge_class_indices",
    "judge_distance_fn",
    "judge_path",
    "load_or_train_emoji_judge",
    "load_or_train_judge",
    "lpips_distance_fn",
    "lpips_unavailable_reason",
    "missing_modes",
    "named_accuracy",
    "pooled_features",
    "predict",
    "predict_proba",
    "real_pair_diversity",
    "text_to_image_scores",
    "train_judge",
]
