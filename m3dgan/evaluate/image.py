"""The image→image metrics of ``m3dgan evaluate`` (paper Table 2a, Table 3) on the test split.

- **realism** (digits): accuracy of a digit classifier, trained by the project on the MNIST
  training split, on translated test sources (one random z each), next to the same classifier
  on held-out real MNIST digits (the paper's "Rand. Real Imgs." row);
- **diversity**: BicycleGAN's protocol — ``inputs`` test sources × ``samples`` random z, mean
  distance between consecutive samples; also with random test references instead of z (the
  paper's "Ours(r)"), and for random pairs of real targets. The distance is LPIPS (AlexNet)
  where its pretrained weights are on the machine, otherwise an LPIPS-style distance in the
  feature space of a judge the project trains on the data set (``m3dgan.metrics.diversity``);
  the JSON says which (``distance``);
- **reference** (edges2emoji): each test source is translated with a reference of every vendor
  (a different emoji); a vendor classifier trained on real artwork names the vendor of each
  output; reported overall and for the swaps (reference vendor ≠ the source's own vendor).
"""

from __future__ import annotations

from pathlib import Path

import torch

from m3dgan.data.store import load_split, read_manifest, to_float
from m3dgan.errors import DataError
from m3dgan.infer import Translator
from m3dgan.metrics import diversity as div
from m3dgan.metrics.judge import JudgeNet, load_or_train_judge, predict
from m3dgan.metrics.realism import classification_accuracy
from m3dgan.tasks import Task


def _batched(fn, *tensors: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    return torch.cat(
        [
            fn(*(t[i : i + batch_size] for t in tensors))
            for i in range(0, len(tensors[0]), batch_size)
        ]
    )


def _judge_kind(manifest) -> str | None:
    """The class judge where classes are few enough to learn (digits), else the domain judge."""
    if 2 <= len(manifest.classes) <= 100:
        return "class"
    if len(manifest.domains) >= 2:
        return "domain"
    return None


def _pixel_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().flatten(1).mean(1)


def _distance(root: Path, device: torch.device, progress: bool) -> tuple[div.DistanceFn, str]:
    lpips = div.lpips_distance_fn(device)
    if lpips is not None:
        return lpips, "lpips-alex"
    manifest = read_manifest(root)
    kind = _judge_kind(manifest)
    if kind is None:
        return _pixel_l1, "pixel-l1 (no judge: the data set has no labels)"
    judge = load_or_train_judge(kind, root, device=device, progress=progress)
    name = f"judge-features ({manifest.name} {kind} judge; LPIPS weights absent)"
    return div.judge_distance_fn(judge), name


def evaluate_image_task(
    tr: Translator,
    task: Task,
    root: Path,
    checkpoint: Path,
    inputs: int | None,
    samples: int | None,
    seed: int,
    progress: bool,
) -> dict:
    """The image→image metrics the task names, after the run's header entries."""
    test = load_split(root, "test")
    inputs, samples = inputs or 100, samples or 20
    sources, targets = to_float(test["source"]), to_float(test["target"])
    dev = tr.device
    # every random draw goes through these two generators: repeatable, global RNG untouched
    gen = torch.Generator(device=dev).manual_seed(seed)
    pick = torch.Generator().manual_seed(seed)
    model = tr.model
    out: dict = {
        "task": task.name,
        "objective": tr.cfg.objective,
        "step": tr.step,
        "checkpoint": str(checkpoint),
        "test_size": len(sources),
    }

    def random_z(src: torch.Tensor) -> torch.Tensor:
        return model.translate(src.to(dev), generator=gen).cpu()

    def with_refs(src: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return model.translate(src.to(dev), reference=ref.to(dev)).cpu()

    if "realism" in task.metrics:
        judge = load_or_train_judge("class", root, device=dev, progress=progress)
        fakes = _batched(random_z, sources)
        out["realism"] = classification_accuracy(judge, fakes.to(dev), test["label"])
        out["realism_real"] = classification_accuracy(judge, targets.to(dev), test["label"])

    if "diversity" in task.metrics:
        distance, name = _distance(root, dev, progress)
        subset = sources[:inputs].to(dev)
        out["distance"] = name
        out["diversity_z"], out["diversity_z_se"] = div.diversity_score(
            random_z, subset, samples, distance_fn=distance
        )
        if model.attention is not None:

            def random_ref(src: torch.Tensor) -> torch.Tensor:
                idx = torch.randint(0, len(targets), (len(src),), generator=pick)
                return with_refs(src, targets[idx])

            out["diversity_ref"], out["diversity_ref_se"] = div.diversity_score(
                random_ref, subset, samples, distance_fn=distance
            )
        out["diversity_real"], out["diversity_real_se"] = div.real_pair_diversity(
            targets.to(dev), distance, seed=seed
        )

    if "reference" in task.metrics:
        out.update(reference_accuracy(root, tr, test, inputs, pick, progress))
    return out


def reference_accuracy(
    root: Path, tr: Translator, test: dict, inputs: int, pick: torch.Generator, progress: bool
) -> dict:
    """Translate each of ``inputs`` test sources with one reference per domain (a different
    item of that domain) and ask the domain judge which domain each output shows."""
    manifest = read_manifest(root)
    judge: JudgeNet = load_or_train_judge("domain", root, device=tr.device, progress=progress)
    domains, labels = test["domain"], test["label"]
    n = min(inputs, len(domains))
    correct = torch.zeros(len(manifest.domains))
    swap_hits = swap_total = 0
    src_all = to_float(test["source"][:n])
    for d in range(len(manifest.domains)):
        refs = [_pick_reference(domains, labels, i, d, pick) for i in range(n)]
        ref = to_float(test["target"][torch.tensor(refs)])
        outs = _batched(
            lambda s, r: tr.model.translate(s.to(tr.device), reference=r.to(tr.device)).cpu(),
            src_all,
            ref,
        )
        pred = predict(judge, outs.to(tr.device)).cpu()
        hits = pred == d
        correct[d] = hits.float().mean()
        swapped = domains[:n] != d
        swap_hits += int(hits[swapped].sum())
        swap_total += int(swapped.sum())
    real = classification_accuracy(judge, to_float(test["target"]).to(tr.device), domains)
    result = {
        "reference_accuracy": float(correct.mean()),
        "reference_accuracy_swap": swap_hits / max(swap_total, 1),
        "reference_judge_real": real,
    }
    for d, name in enumerate(manifest.domains):
        result[f"reference_accuracy_{name}"] = float(correct[d])
    return result


def _pick_reference(
    domains: torch.Tensor, labels: torch.Tensor, i: int, d: int, pick: torch.Generator
) -> int:
    """A random test item of domain ``d`` showing other content than item ``i`` (another emoji);
    any other item of domain ``d`` where the data set has no content labels."""
    index = torch.arange(len(domains))
    for pool in ((domains == d) & (labels != labels[i]), (domains == d) & (index != i)):
        candidates = torch.nonzero(pool).flatten()
        if len(candidates):
            return int(candidates[torch.randint(0, len(candidates), (1,), generator=pick)])
    raise DataError(f"the test split has no reference of domain {d} for item {i}")
