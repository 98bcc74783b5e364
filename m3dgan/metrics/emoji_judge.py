"""The emoji-identity judge: which of the ~1,900 emoji is this picture?

The paper scores text->image (CUB) with an Inception network fine-tuned on the bird classes. Our
text->image task draws emoji, and no pretrained network knows them, so the project trains its own
recogniser: a :class:`~m3dgan.metrics.judge.JudgeNet` over ALL emoji identities of
:func:`m3dgan.data.builtin.edges2emoji.list_emoji` (class ``i`` = the ``i``-th emoji in that
catalogue order, the order the text data sets use), trained on the real 64x64 artwork of BOTH
vendors (Google Noto and Twitter Twemoji).

There is one drawing per emoji and vendor, so without help the judge would learn the exact pixels.
Every training image is therefore a fresh random view (:func:`augment_emoji`): shifted, scaled,
slightly re-coloured and sometimes blurred, the ways a generator's drawing of an emoji differs
from the artwork. The judge covers train AND test emoji on purpose: it plays Inception's part (a
recogniser that knows every class), while the generator never sees the test emoji.

Its accuracy is measured on held-out augmented views (fresh random views of the artwork, with a
seed training never used) and, as a separate diagnostic of how far it generalises to a new
drawing style, by :func:`cross_vendor_accuracy` (train on Google only, test on Twitter).

Cached like the other judges: ``paths.judges_dir()/emoji-identity.safetensors`` + JSON sidecar
keyed by the npm packages' versions, the emoji list, the recipe and :data:`EMOJI_JUDGE_VERSION`.
To train it ahead of time and print its accuracies (``--cross-vendor`` adds the diagnostic)::

    python -c "from m3dgan.metrics.emoji_judge import main; main()" --cross-vendor
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from m3dgan import paths
from m3dgan.data.build import locate_npm_packages
from m3dgan.data.builtin import edges2emoji
from m3dgan.data.store import to_float
from m3dgan.errors import DataError
from m3dgan.metrics.image_score import topk_accuracy
from m3dgan.metrics.judge import JudgeNet, _save, _try_load, predict_proba, train_judge

NAME = "emoji-identity"
# Bump when the artwork loading, the augmentation or the training changes, so old caches retrain.
EMOJI_JUDGE_VERSION = 1


@dataclass
class EmojiJudgeRecipe:
    """Training settings; part of the cache key, so changing them retrains."""

    vendors: list[str] = field(default_factory=lambda: list(edges2emoji.VENDORS))
    epochs: float = 60.0
    batch_size: int = 128
    lr: float = 3e-3
    seed: int = 0
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])
    max_shift: float = 0.1  # fraction of the image side
    scale: tuple[float, float] = (0.8, 1.1)
    jitter: float = 0.08  # brightness / contrast / per-channel gain amplitude
    blur_prob: float = 0.3
    eval_views: int = 2  # held-out augmented views per training image for the accuracy


@dataclass
class EmojiArtwork:
    """Real artwork as the judge sees it: uint8 RGB on white, one row per (emoji, vendor)."""

    images: torch.Tensor  # uint8 [N, 3, 64, 64]
    labels: torch.Tensor  # int64 [N], index into ``emoji``
    vendors: torch.Tensor  # int64 [N], index into ``edges2emoji.VENDORS``
    emoji: list[edges2emoji.Emoji]


def select_emoji(
    packages: dict[str, Path], limit: int | None = None, only: Sequence[str] | None = None
) -> list[edges2emoji.Emoji]:
    """The judge's classes: :func:`~m3dgan.data.builtin.edges2emoji.list_emoji` in catalogue order.

    ``only`` keeps the emoji named there (by name or image file name; a data set built with a
    ``limit`` holds a random subset, and a judge over exactly that subset keeps tests fast);
    ``limit`` then keeps the first ``limit``.
    """
    emoji = edges2emoji.list_emoji(packages)
    if only is not None:
        wanted = set(only)
        emoji = [e for e in emoji if e.name in wanted or e.image in wanted]
        known = {e.name for e in emoji} | {e.image for e in emoji}
        unknown = sorted(wanted - known)
        if unknown:
            raise DataError(f"{len(unknown)} emoji not in the catalogue, e.g. {unknown[:3]}")
    if limit is not None:
        emoji = emoji[:limit]
    if len(emoji) < 2:
        raise DataError(f"found {len(emoji)} emoji drawn by every vendor; the judge needs 2+")
    return emoji


def load_artwork(
    packages: dict[str, Path] | None = None,
    vendors: list[str] | tuple[str, ...] = edges2emoji.VENDORS,
    *,
    limit: int | None = None,
    only: Sequence[str] | None = None,
    progress: bool = False,
) -> EmojiArtwork:
    """Read every emoji's artwork of the given vendors, composited on white.

    ``limit`` and ``only`` select emoji as :func:`select_emoji` does; labels index the selected
    emoji, in the catalogue order of :func:`~m3dgan.data.builtin.edges2emoji.list_emoji`.
    """
    unknown = [v for v in vendors if v not in edges2emoji.VENDORS]
    if unknown or not vendors:
        raise ValueError(f"vendors must be among {edges2emoji.VENDORS}, got {list(vendors)}")
    packages = packages or locate_npm_packages(edges2emoji.NPM_PACKAGES)
    emoji = select_emoji(packages, limit, only)
    rows = [(i, v) for i in range(len(emoji)) for v in vendors]
    images = np.empty((len(rows), 3, edges2emoji.IMAGE_SIZE, edges2emoji.IMAGE_SIZE), np.uint8)
    for row, (i, vendor) in enumerate(tqdm(rows, desc="emoji artwork", disable=not progress)):
        path = edges2emoji._image_path(packages, vendor, emoji[i].image)
        rgb = edges2emoji.composite_on_white(edges2emoji.load_rgba(path))
        images[row] = np.rint(rgb * 255.0).astype(np.uint8).transpose(2, 0, 1)
    return EmojiArtwork(
        images=torch.from_numpy(images),
        labels=torch.tensor([i for i, _ in rows], dtype=torch.int64),
        vendors=torch.tensor([edges2emoji.VENDORS.index(v) for _, v in rows], dtype=torch.int64),
        emoji=emoji,
    )


def augment_emoji(
    x: torch.Tensor, gen: torch.Generator, recipe: EmojiJudgeRecipe | None = None
) -> torch.Tensor:
    """A random view of each image (float [-1, 1], on white): what a generator's drawing varies.

    - scale in ``recipe.scale`` and shift up to ``recipe.max_shift`` of the side, one bilinear
      resampling; uncovered borders are filled with white, the artwork's background;
    - brightness offset, contrast and per-channel gains within +-``jitter`` (gains at half that,
      since colour is part of an emoji's identity: red vs orange heart);
    - with probability ``blur_prob`` a 3x3 Gaussian blur (generated images are softer).
    """
    recipe = recipe or EmojiJudgeRecipe()
    b, c = x.shape[:2]

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return (low + (high - low) * torch.rand(*shape, generator=gen)).to(x.device)

    scale = uniform(*recipe.scale, b)
    shift = uniform(-2 * recipe.max_shift, 2 * recipe.max_shift, b, 2)  # grid units span 2
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x - 1.0, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    x = x + 1.0  # zeros padding of (x - 1) is white padding of x

    j = recipe.jitter
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = uniform(1 - j, 1 + j, b, 1, 1, 1)
    gain = uniform(1 - j / 2, 1 + j / 2, b, c, 1, 1)
    offset = uniform(-j, j, b, 1, 1, 1)
    x = ((x - mean) * contrast + mean) * gain + offset

    if recipe.blur_prob > 0:
        chosen = (torch.rand(b, generator=gen) < recipe.blur_prob).nonzero().squeeze(1)
        if len(chosen):
            x[chosen.to(x.device)] = _blur3(x[chosen.to(x.device)])
    return x.clamp(-1.0, 1.0)


def _blur3(x: torch.Tensor) -> torch.Tensor:
    """Separable [1, 2, 1] / 4 blur with replicated borders (slices: much cheaper than conv2d)."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    h = 0.25 * p[..., :-2] + 0.5 * p[..., 1:-1] + 0.25 * p[..., 2:]
    return 0.25 * h[..., :-2, :] + 0.5 * h[..., 1:-1, :] + 0.25 * h[..., 2:, :]


def train_emoji_judge(
    artwork: EmojiArtwork,
    recipe: EmojiJudgeRecipe | None = None,
    *,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> JudgeNet:
    """Train a judge on every row of ``artwork`` with :func:`augment_emoji` views.

    Class i is ``artwork.emoji[i]``; ``judge.info`` names the classes (``class_names``,
    ``class_images``) so metrics can map data set labels to them.
    """
    recipe = recipe or EmojiJudgeRecipe()
    with torch.enable_grad():  # evaluation callers may hold no_grad
        judge = train_judge(
            artwork.images,
            artwork.labels,
            len(artwork.emoji),
            epochs=recipe.epochs,
            batch_size=recipe.batch_size,
            lr=recipe.lr,
            seed=recipe.seed,
            widths=recipe.widths,
            device=device,
            progress=progress,
            augment_fn=lambda x, gen: augment_emoji(x, gen, recipe),
            desc="emoji judge",
        )
    judge.info = {
        "class_names": [e.name for e in artwork.emoji],
        "class_images": [e.image for e in artwork.emoji],
    }
    return judge


@torch.no_grad()
def augmented_view_accuracy(
    judge: JudgeNet,
    artwork: EmojiArtwork,
    recipe: EmojiJudgeRecipe | None = None,
    *,
    views: int | None = None,
    seed: int = 10_000,
) -> dict[str, float]:
    """Top-1/top-5 accuracy on fresh random views of the artwork (a seed training never used)."""
    recipe = recipe or EmojiJudgeRecipe()
    views = recipe.eval_views if views is None else views
    gen = torch.Generator().manual_seed(recipe.seed + seed)
    probs, labels = [], []
    for _ in range(views):
        for start in range(0, len(artwork.images), 512):
            x = to_float(artwork.images[start : start + 512])
            probs.append(predict_proba(judge, augment_emoji(x, gen, recipe)))
            labels.append(artwork.labels[start : start + 512])
    p, y = torch.cat(probs), torch.cat(labels)
    return {"top1": topk_accuracy(p, y, 1), "top5": topk_accuracy(p, y, 5), "n": len(y)}


def clean_accuracy(judge: JudgeNet, artwork: EmojiArtwork) -> dict[str, float]:
    """Top-1/top-5 accuracy on the artwork itself, unaugmented."""
    p = predict_proba(judge, artwork.images)
    return {
        "top1": topk_accuracy(p, artwork.labels, 1),
        "top5": topk_accuracy(p, artwork.labels, 5),
        "n": len(artwork.labels),
    }


def _cache_key(
    emoji: list[edges2emoji.Emoji], packages: dict[str, Path], recipe: EmojiJudgeRecipe
) -> dict:
    versions = {name: edges2emoji._package_version(path) for name, path in packages.items()}
    listing = "\n".join(f"{e.image}\t{e.name}" for e in emoji).encode()
    return {
        "version": EMOJI_JUDGE_VERSION,
        "kind": NAME,
        "packages": versions,
        "emoji_sha256": hashlib.sha256(listing).hexdigest(),
        "recipe": json.loads(json.dumps(asdict(recipe))),  # tuples -> lists, as read back
    }


def emoji_judge_path(limit: int | None = None, only: Sequence[str] | None = None) -> Path:
    """Weights file of the cached judge; judges over a subset of the emoji get their own name."""
    suffix = ""
    if only is not None:
        digest = hashlib.sha256("\n".join(sorted(set(only))).encode()).hexdigest()[:12]
        suffix += f"-only{digest}"
    if limit is not None:
        suffix += f"-limit{limit}"
    return paths.judges_dir() / f"{NAME}{suffix}.safetensors"


def load_or_train_emoji_judge(
    *,
    recipe: EmojiJudgeRecipe | None = None,
    limit: int | None = None,
    only: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    retrain: bool = False,
) -> JudgeNet:
    """The cached emoji-identity judge, trained (a few minutes on a CPU) and cached if needed.

    ``judge.info`` holds the sidecar: ``class_names`` and ``class_images`` (the emoji of each
    class, in :func:`~m3dgan.data.builtin.edges2emoji.list_emoji` order), ``view_accuracy``
    (held-out augmented views), ``clean_accuracy`` and ``train_seconds``. ``limit`` and
    ``only`` restrict it to some emoji (see :func:`select_emoji`; for tests and smoke runs on data
    sets built with a ``limit``), cached under its own name.
    """
    recipe = recipe or EmojiJudgeRecipe()
    packages = locate_npm_packages(edges2emoji.NPM_PACKAGES)
    expected = _cache_key(select_emoji(packages, limit, only), packages, recipe)
    weights = emoji_judge_path(limit, only)
    if not retrain:
        cached = _try_load(weights, expected)
        if cached is not None:
            return cached.to(device)
    artwork = load_artwork(packages, recipe.vendors, limit=limit, only=only, progress=progress)
    start = time.perf_counter()
    judge = train_emoji_judge(artwork, recipe, device=device, progress=progress)
    seconds = time.perf_counter() - start
    meta = {
        **expected,
        **judge.info,
        "arch": judge.arch(),
        "train_size": len(artwork.labels),
        "train_seconds": round(seconds, 2),
        "view_accuracy": augmented_view_accuracy(judge, artwork, recipe),
        "clean_accuracy": clean_accuracy(judge, artwork),
    }
    _save(judge, weights, meta)
    judge.info = meta
    return judge


def cross_vendor_accuracy(
    train_vendor: str = "google",
    test_vendor: str = "twitter",
    *,
    recipe: EmojiJudgeRecipe | None = None,
    limit: int | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Diagnostic: train on one vendor's artwork only, score on the other vendor's, unaugmented.

    How well the recipe recognises an emoji in a drawing style it never saw; the real judge
    trains on both vendors, so this is a lower bound on its robustness, not its accuracy.
    """
    recipe = recipe or EmojiJudgeRecipe()
    packages = locate_npm_packages(edges2emoji.NPM_PACKAGES)
    train = load_artwork(packages, [train_vendor], limit=limit, progress=progress)
    test = load_artwork(packages, [test_vendor], limit=limit, progress=progress)
    start = time.perf_counter()
    judge = train_emoji_judge(train, recipe, progress=progress)
    seconds = time.perf_counter() - start
    return {
        **clean_accuracy(judge, test),
        "train_vendor": train_vendor,
        "test_vendor": test_vendor,
        "train_seconds": round(seconds, 2),
    }


def main(argv: list[str] | None = None) -> None:
    """Train (or load) the judge and print its accuracies; ``--cross-vendor`` adds the diagnostic."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--cross-vendor", action="store_true")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    judge = load_or_train_emoji_judge(limit=args.limit, progress=True, retrain=args.retrain)
    info = judge.info
    print(
        f"emoji judge: {info['arch']['num_classes']} classes, {info['train_size']} images, "
        f"trained in {info['train_seconds']} s"
    )
    print(f"  held-out augmented views: {info['view_accuracy']}")
    print(f"  clean artwork:            {info['clean_accuracy']}")
    if args.cross_vendor:
        print(
            f"  google -> twitter:        {cross_vendor_accuracy(limit=args.limit, progress=True)}"
        )
