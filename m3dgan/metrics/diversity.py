"""Diversity: how different are the outputs a model produces for one input under random z?

The paper (after BicycleGAN) measures diversity as the mean LPIPS distance between pairs of
outputs generated from the same input with different random z. LPIPS needs ImageNet AlexNet
weights, which the project's offline machines cannot download, so the default distance here is
:func:`feature_distance`, the same construction on a judge the project trains itself
(:mod:`m3dgan.metrics.judge`). Real LPIPS is used only when it is already installed together
with its weights (:func:`lpips_distance_fn`). Scores from the two distances are on different
scales: compare models only under the same distance, and read a model's score against
:func:`real_pair_diversity` (the spread of real target images) under that same distance.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from pathlib import Path

import torch

from m3dgan.data.store import to_float
from m3dgan.metrics.judge import JudgeNet

DistanceFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""Maps two float image batches in [-1, 1] of equal shape [B, C, H, W] to distances [B]."""

GenerateFn = Callable[[torch.Tensor], torch.Tensor]
"""Maps a source batch to one output batch, drawing a fresh random z on every call."""

_EPS = 1e-10


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Scale every spatial position's channel vector to unit length (as LPIPS does)."""
    return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + _EPS)


def _as_float(images: torch.Tensor) -> torch.Tensor:
    return to_float(images) if images.dtype == torch.uint8 else images.float()


@torch.no_grad()
def feature_distance(judge: JudgeNet, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS-like distance [B] between image batches a and b in a judge's feature space.

    For each judge block l with activations f_l of shape [B, C_l, H_l, W_l]:

        d(a, b) = sum_l mean_{h,w} || u_l(a)[:, :, h, w] - u_l(b)[:, :, h, w] ||^2

    where u_l unit-normalises the channel vector at every position. This is LPIPS with all
    channel weights equal to 1 (LPIPS learns them on human judgements, which we do not have).
    Normalising makes each layer count by the *pattern* of its activations, not their scale, and
    summing layers mixes low-level (edges, colour) and high-level (shape, class) differences.
    Properties: d(a, a) = 0, d(a, b) = d(b, a), and each layer adds at most 2 (ReLU outputs are
    non-negative, so unit vectors are at most sqrt(2) apart): 0 <= d <= 2 x number of layers.
    Inputs may be uint8 or float in [-1, 1]; the judge is used in eval mode.
    """
    if a.shape != b.shape:
        raise ValueError(f"distance needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    device = next(judge.parameters()).device
    was_training = judge.training
    judge.eval()
    both = torch.cat([_as_float(a), _as_float(b)]).to(device)
    total = torch.zeros(len(a), device=device)
    for feats in judge.features(both):
        fa, fb = _unit(feats[: len(a)]), _unit(feats[len(a) :])
        total += (fa - fb).pow(2).sum(dim=1).mean(dim=(1, 2))
    judge.train(was_training)
    return total.cpu()


def judge_distance_fn(judge: JudgeNet) -> DistanceFn:
    """:func:`feature_distance` bound to one judge, for :func:`diversity_score`."""

    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return feature_distance(judge, a, b)

    return distance


# --------------------------------------------------------------------------- LPIPS (optional)


def _alexnet_weights_file() -> tuple[Path | None, str]:
    """Where torchvision would look for AlexNet's ImageNet weights, without fetching them."""
    try:
        from torchvision.models import AlexNet_Weights
    except ImportError as exc:
        return None, f"torchvision with AlexNet_Weights is not importable ({exc})"
    name = Path(AlexNet_Weights.IMAGENET1K_V1.url).name
    return Path(torch.hub.get_dir()) / "checkpoints" / name, ""


def lpips_unavailable_reason() -> str | None:
    """Why real LPIPS cannot be used offline, or None when everything it needs is on disk.

    Checks files only: the ``lpips`` package, its linear-layer weights (shipped inside the
    package) and torchvision's AlexNet weights in the torch hub cache. Nothing is downloaded.
    """
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        return "the lpips package is not installed (pip install 'm3dgan[lpips]')"
    lin = Path(spec.origin).parent / "weights" / "v0.1" / "alex.pth"
    if not lin.is_file():
        return f"lpips's linear weights are missing ({lin})"
    alex, why = _alexnet_weights_file()
    if alex is None:
        return why
    if not alex.is_file():
        return f"AlexNet ImageNet weights are not in the torch hub cache ({alex}); not downloading"
    return None


def lpips_distance_fn(device: str | torch.device = "cpu") -> DistanceFn | None:
    """An LPIPS(net='alex') distance, or None when it would need a download.

    Call :func:`lpips_unavailable_reason` for the reason when this returns None. Single-channel
    images are repeated to RGB, since LPIPS's AlexNet expects three channels.
    """
    if lpips_unavailable_reason() is not None:
        return None
    import lpips

    model = lpips.LPIPS(net="alex", verbose=False).to(device).eval()

    @torch.no_grad()
    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = _as_float(a).to(device), _as_float(b).to(device)
        if a.shape[1] == 1:
            a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
        return model(a, b).flatten().cpu()

    return distance


# --------------------------------------------------------------------------- scores


def _mean_stderr(values: torch.Tensor) -> tuple[float, float]:
    values = values.double()
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan")
    return mean, float(values.std(unbiased=True) / math.sqrt(len(values)))


@torch.no_grad()
def diversity_score(
    generate_fn: GenerateFn,
    sources: torch.Tensor,
    n_samples: int = 20,
    *,
    distance_fn: DistanceFn,
    batch_size: int = 64,
) -> tuple[float, float]:
    """BicycleGAN's diversity: mean distance between outputs for one input under different z.

    For every source, ``generate_fn`` is called ``n_samples`` times (each call must draw fresh
    random z); the distances between consecutive samples (n_samples - 1 pairs) are averaged into
    one score per source. Returns the mean over sources and its standard error; the error is
    taken over per-source scores, not over pairs, because pairs sharing a source are correlated.
    A model that ignores z scores 0. Seed torch's RNG beforehand for a repeatable score.
    """
    if n_samples < 2:
        raise ValueError("diversity needs at least 2 samples per input")
    per_source = []
    for start in range(0, len(sources), batch_size):
        batch = sources[start : start + batch_size]
        previous = generate_fn(batch)
        total = torch.zeros(len(batch))
        for _ in range(n_samples - 1):
            current = generate_fn(batch)
            total += distance_fn(previous, current).float().cpu()
            previous = current
        per_source.append(total / (n_samples - 1))
    if not per_source:
        raise ValueError("no sources to score")
    return _mean_stderr(torch.cat(per_source))


@torch.no_grad()
def real_pair_diversity(
    targets: torch.Tensor,
    distance_fn: DistanceFn,
    n_pairs: int = 1000,
    seed: int = 0,
    batch_size: int = 256,
) -> tuple[float, float]:
    """Mean distance (and standard error) between random pairs of distinct real targets.

    This is the reference point for :func:`diversity_score` under the same distance: how far
    apart two real images of the data set are. Pairs are drawn with a local RNG, so the result
    depends only on ``seed``.
    """
    n = len(targets)
    if n < 2:
        raise ValueError("need at least 2 target images to form pairs")
    gen = torch.Generator().manual_seed(seed)
    first = torch.randint(0, n, (n_pairs,), generator=gen)
    # an offset in [1, n-1] guarantees the second index differs from the first
    second = (first + torch.randint(1, n, (n_pairs,), generator=gen)) % n
    dists = [
        distance_fn(targets[first[i : i + batch_size]], targets[second[i : i + batch_size]])
        .float()
        .cpu()
        for i in range(0, n_pairs, batch_size)
    ]
    return _mean_stderr(torch.cat(dists))
