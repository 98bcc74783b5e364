"""Judges: small CNN classifiers the project trains itself for its offline metrics.

The paper scores realism with pretrained networks (an MNIST digit classifier, Inception) and
diversity with LPIPS on an ImageNet AlexNet. Pretrained ImageNet weights cannot be downloaded
on the project's offline machines, so each metric that needs a network gets a *judge*: a small
classifier trained here, on the TRAIN split targets of a built data set, and scored on its TEST
split targets. A judge serves two purposes:

- its predictions give the realism/controllability accuracies ("does the translated digit read
  as the right class", "does the emoji look like the requested vendor");
- its intermediate activations give an LPIPS-like perceptual distance for the diversity metric
  (:func:`m3dgan.metrics.diversity.feature_distance`).

Judges are cached under ``paths.judges_dir()/<data set>-<kind>.safetensors`` with a JSON sidecar.
The sidecar records the data set's train-file sha256 from its manifest, so rebuilding the data
set (a new checksum) retrains the judge instead of silently scoring with a stale one.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from m3dgan import paths
from m3dgan.atomic import atomic_paths
from m3dgan.core.safe_conv import Conv2d
from m3dgan.data.store import Manifest, load_split, read_manifest, to_float
from m3dgan.errors import DataError

KINDS = ("class", "domain")
# Bump when JudgeNet's layout or the training recipe changes, so old caches retrain.
JUDGE_VERSION = 1
DEFAULT_WIDTHS = (32, 64, 128)

AugmentFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
"""Maps a float image batch in [-1, 1] and a CPU generator to an augmented batch of equal shape."""


def stem_stride(image_size: int) -> int:
    """Stride of the first conv: brings the first block to about 16x16.

    Training cost on a CPU is dominated by full-resolution activations (convolution backward,
    batch norm and pooling over 32x32 or 64x64 maps), so the stem is a strided, overlapping
    conv (kernel = 2 x stride) that sees every pixel but works at 16x16. That cuts a digit
    judge's training time about 4x at no measurable cost in accuracy.
    """
    stride = 1
    while image_size // (2 * stride) >= 16:
        stride *= 2
    return stride


class JudgeNet(nn.Module):
    """Stem conv, conv blocks (conv-BN-ReLU, 2x2 max-pool between) -> global avg pool -> linear.

    Input is a float image batch in [-1, 1] (the generator's output range), so generated images
    can be judged without conversion. :meth:`features` exposes each block's activation (after
    ReLU, before pooling, as LPIPS taps AlexNet) for the feature-space diversity distance.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int,
        widths: Sequence[int] = DEFAULT_WIDTHS,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a judge needs at least 2 classes, got {num_classes}")
        if image_size < 2 ** (len(widths) - 1):
            raise ValueError(f"image_size {image_size} too small for {len(widths)} blocks")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.image_size = image_size
        self.widths = tuple(int(w) for w in widths)
        self.stem_stride = stem_stride(image_size)
        blocks = []
        prev = in_channels
        for i, width in enumerate(self.widths):
            stride = self.stem_stride if i == 0 else 1
            kernel, pad = (3, 1) if stride == 1 else (2 * stride, stride // 2)
            blocks.append(
                nn.Sequential(
                    Conv2d(prev, width, kernel, stride=stride, padding=pad, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                )
            )
            prev = width
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(prev, num_classes)

    def arch(self) -> dict:
        """Constructor arguments, stored in the cache sidecar to rebuild the module."""
        return {
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "image_size": self.image_size,
            "widths": list(self.widths),
        }

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"judge expects [B, {self.in_channels}, H, W] float images, got {tuple(x.shape)}"
            )

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations of every block (after ReLU, before pooling), shallow to deep."""
        self._check_input(x)
        feats = []
        for i, block in enumerate(self.blocks):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = block(x)
            feats.append(x)
        return feats

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Global-average-pooled deepest activations [B, widths[-1]]: the head's input.

        This is the judge's image embedding (the role Inception's pool3 features play in FID):
        metrics that compare sets of images in feature space use it.
        """
        return self.features(x)[-1].mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits [B, num_classes]."""
        return self.head(self.pooled(x))


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by its own random offset in [-max_shift, max_shift] per axis.

    Borders are filled by replicating the edge pixels, which is the background for both digits
    (black) and emoji (a flat colour), so the shift adds no artificial frame the judge could learn.
    """
    if max_shift <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (2, b), generator=generator).to(x.device)
    rows = offsets[0][:, None] + torch.arange(h, device=x.device)  # [B, H]
    cols = offsets[1][:, None] + torch.arange(w, device=x.device)  # [B, W]
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()


def _lr_at(step: int, total: int, lr: float) -> float:
    """Short linear warm-up then cosine decay: fast, stable convergence in a few epochs."""
    warmup = max(1, total // 20)
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def train_judge(
    images_uint8: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    epochs: float = 3.0,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    augment: bool = True,
    progress: bool = False,
    widths: Sequence[int] = DEFAULT_WIDTHS,
    device: str | torch.device = "cpu",
    augment_fn: AugmentFn | None = None,
    desc: str = "judge",
) -> JudgeNet:
    """Train a JudgeNet on uint8 images [N, C, H, W] and int labels [N]; return it in eval mode.

    Adam with warm-up + cosine decay; light augmentation (random shifts of up to 1/16 of the image
    side), or ``augment_fn`` in its place when given (a judge that must recognise generated
    images needs stronger augmentation than one scored on held-out real images).
    ``epochs`` may be fractional so large data sets can be sub-sampled within a time budget.
    Deterministic for a given seed: initialisation, shuffling and augmentation draw from RNGs
    seeded here, and the caller's global RNG state is restored afterwards.
    """
    if images_uint8.ndim != 4 or len(images_uint8) != len(labels):
        raise ValueError("images must be [N, C, H, W] with one label per image")
    if len(labels) == 0:
        raise ValueError("no labelled images to train a judge on")
    labels = labels.long()
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]"
        )
    n, c, h, _ = images_uint8.shape
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    total = max(1, round(epochs * steps_per_epoch))
    max_shift = max(1, h // 16) if augment else 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        judge = JudgeNet(c, num_classes, h, widths).to(device)
    gen = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(judge.parameters(), lr=lr)
    judge.train()
    bar = _progress_bar(total, progress, desc)
    order = torch.randperm(n, generator=gen)
    cursor = 0
    for step in range(total):
        if cursor + batch_size > n and cursor > 0:
            order, cursor = torch.randperm(n, generator=gen), 0
        idx = order[cursor : cursor + batch_size]
        cursor += batch_size
        x = to_float(images_uint8[idx].to(device))
        if augment and augment_fn is not None:
            x = augment_fn(x, gen)
        else:
            x = random_shift(x, max_shift, gen)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, total, lr)
        loss = F.cross_entropy(judge(x), labels[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    if bar is not None:
        bar.close()
    return judge.eval()


def _progress_bar(total: int, enabled: bool, desc: str = "judge"):  # -> tqdm | None (lazy import)
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False)


@torch.no_grad()
def predict(judge: JudgeNet, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Predicted class per image; accepts uint8 or float-in-[-1, 1] images, any device."""
    device = next(judge.parameters()).device
    was_training = judge.training
    judge.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        x = to_float(x) if x.dtype == torch.uint8 else x.float()
        out.append(judge(x).argmax(dim=1).cpu())
    judge.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


@torch.no_grad()
def predict_proba(judge: JudgeNet, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Softmax class probabilities [N, num_classes] (float32, CPU); uint8 or float images.

    The Inception-style score and the missing-modes count read whole distributions, not only
    the arg-max, so they start from these.
    """
    return _batched(
        judge, images, batch_size, lambda x: judge(x).softmax(dim=1).float(), judge.num_classes
    )


@torch.no_grad()
def pooled_features(judge: JudgeNet, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The judge's pooled embedding [N, widths[-1]] of every image (see :meth:`JudgeNet.pooled`)."""
    return _batched(judge, images, batch_size, lambda x: judge.pooled(x).float(), judge.widths[-1])


def _batched(
    judge: JudgeNet,
    images: torch.Tensor,
    batch_size: int,
    fn: Callable[[torch.Tensor], torch.Tensor],
    width: int,
) -> torch.Tensor:
    """Apply ``fn`` to float [-1, 1] batches on the judge's device, in eval mode; CPU result."""
    device = next(judge.parameters()).device
    was_training = judge.training
    judge.eval()
    out = []
    try:
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].to(device)
            x = to_float(x) if x.dtype == torch.uint8 else x.float()
            out.append(fn(x).cpu())
    finally:
        judge.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, width)


# --------------------------------------------------------------------------- cache


@dataclass
class JudgeRecipe:
    """Training settings; part of the cache key, so changing them retrains."""

    epochs: float
    batch_size: int
    lr: float
    seed: int
    augment: bool
    widths: list[int]


def default_recipe(kind: str, train_size: int) -> JudgeRecipe:
    """Settings that train a judge in about a minute on a (shared) 2-core CPU.

    Training length is a budget of images seen (about 100k), not a number of epochs, so the
    cost is the same for every data set: 11 epochs of the 9k MNIST digits (98% test accuracy),
    29 of the 3.4k emoji pairs (91% vendor accuracy on unseen emoji). More passes or a wider or
    deeper net bought under half a point in tuning, at up to 3x the time.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown judge kind {kind!r}; choose from {KINDS}")
    budget_images = 100_000
    epochs = min(40.0, max(1.0, budget_images / max(1, train_size)))
    return JudgeRecipe(
        epochs=round(epochs, 3),
        batch_size=128,
        lr=3e-3,
        seed=0,
        augment=True,
        widths=list(DEFAULT_WIDTHS),
    )


def judge_path(dataset_name: str, kind: str) -> Path:
    """Weights file of a cached judge; the sidecar is the same path with ``.json``."""
    return paths.judges_dir() / f"{dataset_name}-{kind}.safetensors"


def _labels_for(kind: str, split: dict[str, torch.Tensor]) -> torch.Tensor:
    return split["label"] if kind == "class" else split["domain"]


def _labelled(kind: str, split: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Target images and their labels for this kind, dropping rows without a label (-1)."""
    labels = _labels_for(kind, split)
    keep = labels >= 0
    return split["target"][keep], labels[keep]


def _num_classes(names: list[str], *label_sets: torch.Tensor) -> int:
    seen = max((int(t.max()) + 1 for t in label_sets if len(t)), default=0)
    return max(len(names), seen)


def _sidecar_matches(meta: dict, expected: dict) -> bool:
    return all(meta.get(k) == v for k, v in expected.items())


def _try_load(weights: Path, expected: dict) -> JudgeNet | None:
    """The cached judge if its sidecar matches ``expected`` and its weights load, else None."""
    sidecar = weights.with_suffix(".json")
    if not (weights.is_file() and sidecar.is_file()):
        return None
    try:
        meta = json.loads(sidecar.read_text())
    except json.JSONDecodeError:
        return None
    if not _sidecar_matches(meta, expected):
        return None
    try:
        judge = JudgeNet(**meta["arch"])
        judge.load_state_dict(load_file(str(weights)))
    except Exception as exc:  # damaged or incompatible file: a cache, so retrain
        warnings.warn(f"{weights}: unreadable cached judge ({exc}); retraining", stacklevel=3)
        return None
    judge.info = meta
    return judge.eval()


def _save(judge: JudgeNet, weights: Path, meta: dict) -> None:
    """Write weights then sidecar via temp files renamed once both are written
    (``m3dgan.atomic``); the old sidecar goes first, so a crash never leaves a valid-looking
    pair and a full disk (OutputError) no partial file."""
    sidecar = weights.with_suffix(".json")
    sidecar.unlink(missing_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in judge.state_dict().items()}
    with atomic_paths(weights, sidecar) as (weights_tmp, sidecar_tmp):
        save_file(state, str(weights_tmp))
        sidecar_tmp.write_text(json.dumps(meta, indent=2))


def load_or_train_judge(
    kind: str,
    dataset_root: Path,
    *,
    recipe: JudgeRecipe | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    retrain: bool = False,
) -> JudgeNet:
    """Return the cached judge for this data set and kind, training and caching it if needed.

    ``kind`` is ``"class"`` (target image -> ``label``) or ``"domain"`` (target image ->
    ``domain``). The judge trains on the TRAIN split targets; its accuracy on the TEST split
    targets is stored in the sidecar and on the returned module as ``judge.info["test_accuracy"]``.
    The cache is reused only when the data set name, its train file's sha256 (from the manifest),
    the recipe and the judge version all match; otherwise the judge is retrained.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown judge kind {kind!r}; choose from {KINDS}")
    dataset_root = Path(dataset_root)
    manifest = read_manifest(dataset_root)
    train_sha = manifest.files.get("train.safetensors")
    if train_sha is None or "test" not in manifest.splits:
        raise DataError(f"{dataset_root}: a judge needs a train and a test split")
    n_train = manifest.splits.get("train", 0)
    recipe = recipe or default_recipe(kind, n_train)
    weights = judge_path(manifest.name, kind)
    expected = {
        "version": JUDGE_VERSION,
        "kind": kind,
        "dataset": manifest.name,
        "train_sha256": train_sha,
        "recipe": asdict(recipe),
    }
    if not retrain:
        cached = _try_load(weights, expected)
        if cached is not None:
            return cached.to(device)
    judge, meta = _train_and_score(kind, dataset_root, manifest, recipe, device, progress)
    meta = {**expected, **meta}
    _save(judge, weights, meta)
    judge.info = meta
    return judge


def _train_and_score(
    kind: str,
    dataset_root: Path,
    manifest: Manifest,
    recipe: JudgeRecipe,
    device: str | torch.device,
    progress: bool,
) -> tuple[JudgeNet, dict]:
    """Train on TRAIN targets, score on TEST targets; return the judge and sidecar facts."""
    names = manifest.classes if kind == "class" else manifest.domains
    train_x, train_y = _labelled(kind, load_split(dataset_root, "train"))
    test_x, test_y = _labelled(kind, load_split(dataset_root, "test"))
    if len(train_x) == 0:
        field_name = "label" if kind == "class" else "domain"
        raise DataError(
            f"{manifest.name}: no {field_name} labels, so no {kind!r} judge can be trained"
        )
    num_classes = _num_classes(names, train_y, test_y)
    if num_classes < 2:
        what = "classes" if kind == "class" else "domains"
        raise DataError(
            f"{dataset_root}: the {kind} judge needs at least 2 {what}; this data set has "
            f"{num_classes}, so the metric does not apply to it"
        )
    start = time.perf_counter()
    # callers may hold torch.no_grad() (evaluation code); training needs gradients regardless
    with torch.enable_grad():
        judge = train_judge(
            train_x,
            train_y,
            num_classes,
            epochs=recipe.epochs,
            batch_size=recipe.batch_size,
            lr=recipe.lr,
            seed=recipe.seed,
            augment=recipe.augment,
            widths=recipe.widths,
            progress=progress,
            device=device,
        )
    seconds = time.perf_counter() - start
    acc = float((predict(judge, test_x) == test_y).float().mean()) if len(test_x) else None
    meta = {
        "arch": judge.arch(),
        "class_names": list(names),
        "test_accuracy": acc,
        "test_size": len(test_x),
        "train_size": len(train_x),
        "train_seconds": round(seconds, 2),
    }
    return judge, meta
