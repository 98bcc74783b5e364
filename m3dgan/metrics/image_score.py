"""Text->image metrics: an Inception-style score, missing modes, and named-emoji accuracy.

The paper scores text->image (CUB) with the Inception Score and the number of missing modes, both
read from a classifier's predictions p(y|x). Our text2emoji task uses the project's emoji-identity
judge (:mod:`m3dgan.metrics.emoji_judge`) as that classifier:

- **Inception-style score** ``exp(E_x KL(p(y|x) || p(y)))`` with ``p(y) = E_x p(y|x)``: high when
  each image is recognised confidently (low-entropy p(y|x)) AND the images spread over many
  classes (high-entropy p(y)). It lies in [1, number of classes], and with N images it is at
  most N. It is NOT the Inception Score of Salimans et al.: the classifier is our emoji judge,
  not the ImageNet Inception network, so values compare only with each other and with the same
  score of the real test artwork (:func:`text_to_image_scores` computes both). Where the user has
  a real pretrained Inception on disk, :func:`inception_score` gives the standard IS too.
- **Missing modes** (Che et al., "Mode Regularized GANs", 2017; the paper's "#miss"): among the
  classes the test set contains, the number that the classifier never predicts with probability
  above 0.5 for any generated image. 0 = every test emoji was drawn recognisably at least once.
- **Named-emoji accuracy**: the fraction of generated images whose top-1 (top-5) class is the
  emoji the caption names: does the picture match the text?
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from m3dgan.data.store import to_float
from m3dgan.errors import DataError
from m3dgan.metrics.judge import JudgeNet, predict_proba

MODE_THRESHOLD = 0.5


def _check_probs(probs: torch.Tensor) -> torch.Tensor:
    if probs.ndim != 2 or probs.shape[1] < 1:
        raise ValueError(f"expected class probabilities [N, K], got shape {tuple(probs.shape)}")
    if len(probs) == 0:
        raise DataError("no images to score")
    probs = probs.double()
    if bool((probs < 0).any()) or not torch.allclose(
        probs.sum(dim=1), torch.ones(len(probs), dtype=probs.dtype), atol=1e-3
    ):
        raise ValueError("each row must be a probability distribution (softmax outputs)")
    return probs


def inception_style_score(probs: torch.Tensor, splits: int = 1) -> tuple[float, float]:
    """``exp(E_x KL(p(y|x) || p(y)))`` over ``splits`` equal chunks: (mean, std over chunks).

    ``probs`` is [N, K] softmax outputs. The usual IS protocol uses 10 splits of 5,000 images;
    our test sets are small, so the default is one split (std 0). With uniform predictions the
    score is 1; with N confident predictions spread evenly over K classes it is K.
    """
    probs = _check_probs(probs)
    if not 1 <= splits <= len(probs):
        raise ValueError(f"splits must be in [1, {len(probs)}], got {splits}")
    scores = []
    for chunk in torch.tensor_split(probs, splits):
        marginal = chunk.mean(dim=0, keepdim=True)
        # xlogy: 0 * log 0 = 0, so classes an image rules out contribute nothing
        kl = (torch.xlogy(chunk, chunk) - torch.xlogy(chunk, marginal)).sum(dim=1)
        scores.append(float(kl.mean().exp()))
    values = torch.tensor(scores, dtype=torch.float64)
    std = float(values.std(unbiased=False)) if splits > 1 else 0.0
    return float(values.mean()), std


@dataclass(frozen=True)
class MissingModes:
    """Which of the expected classes no image was confidently recognised as."""

    count: int
    modes: int  # number of classes checked
    missing: tuple[int, ...]  # their class indices, ascending


def missing_modes(
    probs: torch.Tensor, classes: Sequence[int] | torch.Tensor, threshold: float = MODE_THRESHOLD
) -> MissingModes:
    """Classes in ``classes`` that no row of ``probs`` gives probability > ``threshold``.

    ``classes`` are the modes that should appear: for text2emoji, the emoji of the test set.
    Classes outside it are ignored (a generated image recognised as a training emoji covers no
    test mode). The MDGAN definition uses threshold 0.5, which also means at most one class per
    image can count as hit.
    """
    probs = _check_probs(probs)
    wanted = torch.as_tensor(classes, dtype=torch.long).unique()
    if len(wanted) == 0:
        raise ValueError("no classes to look for")
    if int(wanted.min()) < 0 or int(wanted.max()) >= probs.shape[1]:
        raise ValueError(f"classes must lie in [0, {probs.shape[1]})")
    hit = (probs[:, wanted] > threshold).any(dim=0)
    missing = tuple(int(c) for c in wanted[~hit])
    return MissingModes(count=len(missing), modes=len(wanted), missing=missing)


def topk_accuracy(probs: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Fraction of rows whose label is among their ``k`` most probable classes."""
    if len(probs) != len(labels):
        raise ValueError(f"{len(probs)} predictions but {len(labels)} labels")
    if len(probs) == 0:
        raise DataError("no images to score")
    top = probs.topk(min(k, probs.shape[1]), dim=1).indices
    return float((top == labels.long()[:, None].to(top.device)).any(dim=1).float().mean())


def named_accuracy(
    probs: torch.Tensor, named: torch.Tensor, ks: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """``{"top1": ..., "top5": ...}``: how often the named emoji is the judge's top-k class."""
    return {f"top{k}": topk_accuracy(probs, named, k) for k in ks}


def judge_class_indices(judge: JudgeNet, names: Sequence[str]) -> torch.Tensor:
    """Judge class index of each emoji, given by name or by image file name.

    Data sets may renumber their classes (a ``limit`` build keeps a subset), so metrics map
    them to the judge's classes by name, via the sidecar's ``class_names``/``class_images``.
    """
    info = getattr(judge, "info", None) or {}
    lookup: dict[str, int] = {}
    for key in ("class_images", "class_names"):
        for i, name in enumerate(info.get(key, [])):
            lookup.setdefault(name, i)
    if not lookup:
        raise DataError("this judge has no class names (not an emoji-identity judge?)")
    unknown = [n for n in names if n not in lookup]
    if unknown:
        raise DataError(f"{len(unknown)} emoji unknown to the judge, e.g. {unknown[:3]}")
    return torch.tensor([lookup[n] for n in names], dtype=torch.long)


def text_to_image_scores(
    judge: JudgeNet,
    generated: torch.Tensor,
    labels: torch.Tensor,
    real: torch.Tensor | None = None,
    real_labels: torch.Tensor | None = None,
    *,
    class_names: Sequence[str] | None = None,
    classes: Sequence[int] | torch.Tensor | None = None,
    splits: int = 1,
    standard_inception: bool = True,
    device: str | torch.device | None = None,
) -> dict[str, float | int | str]:
    """All text->image metrics of ``generated`` images (uint8 or float [-1, 1], [N, 3, H, W]).

    ``labels[i]`` is the emoji that image i's caption names, as a data set label. Labels are
    judge classes when ``class_names`` is None (full builds share
    :func:`~m3dgan.data.builtin.edges2emoji.list_emoji`'s order); otherwise
    ``class_names[label]`` is looked up in the judge (data sets built with a ``limit`` renumber
    their emoji). ``classes`` (judge classes; the modes to look for) default to the distinct named
    emoji. With ``real`` test artwork and its ``real_labels``, the same numbers for the real
    images are added with a ``_real`` suffix: the reference a generator is read against.

    Keys: ``named_accuracy`` (top-1), ``named_accuracy_top5``, ``inception_score`` (the
    Inception-STYLE score with the emoji judge, see the module docstring) and its ``_std``,
    ``missing_modes`` out of ``modes``; with ``standard_inception`` the real Inception Score of
    both sets as ``inception_score_imagenet[_real]`` when a pretrained Inception is on disk, or
    ``inception_score_imagenet_unavailable`` saying why not. ``device`` runs that Inception.
    """
    if len(generated) != len(labels):
        raise ValueError(f"{len(generated)} images but {len(labels)} named emoji")
    named = _to_judge_classes(judge, labels, class_names)
    classes = named.unique() if classes is None else torch.as_tensor(classes)
    probs = predict_proba(judge, generated)
    score, score_std = inception_style_score(probs, splits)
    modes = missing_modes(probs, classes)
    top = named_accuracy(probs, named)
    out: dict[str, float | int | str] = {
        "named_accuracy": top["top1"],
        "named_accuracy_top5": top["top5"],
        "inception_score": score,
        "inception_score_std": score_std,
        "inception_score_classifier": "emoji-identity judge (not ImageNet Inception)",
        "missing_modes": modes.count,
        "modes": modes.modes,
        "images": len(generated),
    }
    if real is not None:
        real_probs = predict_proba(judge, real)
        out["inception_score_real"] = inception_style_score(real_probs, 1)[0]
        out["missing_modes_real"] = missing_modes(real_probs, classes).count
        if real_labels is not None:
            real_top = named_accuracy(
                real_probs, _to_judge_classes(judge, real_labels, class_names)
            )
            out["named_accuracy_real"] = real_top["top1"]
            out["named_accuracy_top5_real"] = real_top["top5"]
    if standard_inception:
        why = inception_unavailable_reason()
        if why is not None:
            out["inception_score_imagenet_unavailable"] = why
        else:
            run_on = device or "cpu"
            mean, std, net = inception_score(generated, splits=splits, device=run_on)
            out |= {"inception_score_imagenet": mean, "inception_score_imagenet_std": std}
            out["inception_score_imagenet_network"] = net
            if real is not None:
                out["inception_score_imagenet_real"] = inception_score(
                    real, splits=1, device=run_on
                )[0]
    return out


def _to_judge_classes(
    judge: JudgeNet, labels: torch.Tensor, class_names: Sequence[str] | None
) -> torch.Tensor:
    labels = torch.as_tensor(labels).long().cpu()
    if class_names is not None:
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(class_names)):
            raise DataError(f"labels must lie in [0, {len(class_names)}) to name an emoji")
        return judge_class_indices(judge, [class_names[i] for i in labels.tolist()])
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= judge.num_classes):
        raise DataError(
            f"labels must be emoji-judge classes in [0, {judge.num_classes}); pass class_names "
            "for a data set built with a limit"
        )
    return labels


# --------------------------------------------------------------------------- real Inception


@dataclass(frozen=True)
class _InceptionSource:
    description: str
    path: Path
    package: str  # "pytorch_fid" or "torchvision"


def _hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _find_inception() -> tuple[_InceptionSource | None, str]:
    """The first pretrained Inception found on disk, or None and why none. Never downloads."""
    reasons = []
    if importlib.util.find_spec("torchvision") is None:
        return None, "torchvision is not installed (both pretrained Inceptions need it)"
    if importlib.util.find_spec("pytorch_fid") is not None:
        from pytorch_fid.inception import FID_WEIGHTS_URL

        fid = _hub_checkpoints() / Path(FID_WEIGHTS_URL).name
        if fid.is_file():
            return _InceptionSource(
                "pytorch-fid's TF Inception (2015-12-05)", fid, "pytorch_fid"
            ), ""
        reasons.append(f"pytorch-fid's weights are not in the torch hub cache ({fid})")
    else:
        found = sorted(_hub_checkpoints().glob("pt_inception-2015-12-05-*.pth"))
        if found:
            reasons.append(f"{found[0]} needs the pytorch-fid package (pip install pytorch-fid)")
    from torchvision.models import Inception_V3_Weights

    tv = _hub_checkpoints() / Path(Inception_V3_Weights.IMAGENET1K_V1.url).name
    if tv.is_file():
        return _InceptionSource("torchvision inception_v3 IMAGENET1K_V1", tv, "torchvision"), ""
    reasons.append(f"torchvision's Inception v3 weights are not in the torch hub cache ({tv})")
    return None, "; ".join(reasons) + "; not downloading"


def inception_unavailable_reason() -> str | None:
    """Why the standard Inception Score cannot be computed offline, or None when it can."""
    source, why = _find_inception()
    return None if source is not None else why


def load_pretrained_inception(device: str | torch.device = "cpu") -> tuple[torch.nn.Module, str]:
    """The pretrained Inception found on disk (eval mode) and its description; DataError if none.

    pytorch-fid's port of the TF 2015-12-05 graph (the network the IS paper used, 1008 outputs)
    is preferred; torchvision's ImageNet Inception v3 (1000 classes) gives slightly different
    values. Both expect 299x299 inputs in [-1, 1].
    """
    source, why = _find_inception()
    if source is None:
        raise DataError(f"no pretrained Inception available: {why}")
    if source.package == "pytorch_fid":
        from pytorch_fid.inception import fid_inception_v3

        net = fid_inception_v3()  # loads the cached file found above; no download
    else:
        from torchvision.models import inception_v3

        net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False)
        net.load_state_dict(torch.load(source.path, map_location="cpu", weights_only=True))
    return net.eval().to(device), source.description


@torch.no_grad()
def inception_score(
    images: torch.Tensor,
    *,
    splits: int = 10,
    batch_size: int = 50,
    device: str | torch.device = "cpu",
) -> tuple[float, float, str]:
    """The standard Inception Score (mean, std over splits, network used) of RGB images.

    Images (uint8 or float in [-1, 1], [N, 3, H, W]) are resized to 299x299 bilinearly. Raises
    DataError, saying what is missing, when no pretrained Inception is on disk.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected RGB images [N, 3, H, W], got {tuple(images.shape)}")
    net, description = load_pretrained_inception(device)
    probs = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        x = to_float(x) if x.dtype == torch.uint8 else x.float()
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        probs.append(net(x).softmax(dim=1).cpu())
    mean, std = inception_style_score(torch.cat(probs), min(splits, len(images)))
    return mean, std, description
