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
from m3dgan.evaluate.generate import Outputs
from m3dgan.metrics import diversity as div
from m3dgan.metrics.judge import JudgeNet, load_or_train_judge, predict
from m3dgan.metrics.realism import classification_accuracy
from m3dgan.tasks import Task

BATCH = 128  # test sources translated at a time


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
    outputs: Outputs,
    task: Task,
    root: Path,
    checkpoint: Path,
    inputs: int | None,
    samples: int | None,
    progress: bool,
) -> dict:
    """The image→image metrics the task names, after the run's header entries."""
    test = load_split(root, "test")
    inputs, samples = inputs or 100, samples or 20
    sources, targets = to_float(test["source"]), to_float(test["target"])
    tr, dev = outputs.tr, outputs.device
    out: dict = {
        "task": task.name,
        "objective": tr.cfg.objective,
        "step": tr.step,
        "checkpoint": str(checkpoint),
        "test_size": len(sources),
    }

    def random_z(src: torch.Tensor) -> torch.Tensor:
        return outputs.translate(src).cpu()

    if "realism" in task.metrics:
        judge = load_or_train_judge("class", root, device=dev, progress=progress)
        fakes = torch.cat([random_z(src) for src in outputs.batches(test["source"], BATCH)])
        out["realism"] = classification_accuracy(judge, fakes.to(dev), test["label"])
        out["realism_real"] = classification_accuracy(judge, targets.to(dev), test["label"])

    if "diversity" in task.metrics:
        distance, name = _distance(root, dev, progress)
        subset = sources[:inputs].to(dev)
        out["distance"] = name
        out["diversity_z"], out["diversity_z_se"] = div.diversity_score(
            random_z, subset, samples, distance_fn=distance
        )
        if tr.model.attention is not None:

            def random_ref(src: torch.Tensor) -> torch.Tensor:
                return outputs.translate(src, targets[outputs.pick(len(targets), len(src))]).cpu()

            out["diversity_ref"], out["diversity_ref_se"] = div.diversity_score(
                random_ref, subset, samples, distance_fn=distance
            )
        out["diversity_real"], out["diversity_real_se"] = div.real_pair_diversity(
            targets.to(dev), distance, seed=outputs.seed
        )

    if "reference" in task.metrics:
        out.update(reference_accuracy(root, outputs, test, inputs, progress))
    return out


def reference_accuracy(
    root: Path, outputs: Outputs, test: dict, inputs: int, progress: bool
) -> dict:
    """Translate each of ``inputs`` test sources with one reference per domain (a different
    item of that domain) and ask the domain judge which domain each output shows."""
    manifest = read_manifest(root)
    dev = outputs.device
    judge: JudgeNet = load_or_train_judge("domain", root, device=dev, progress=progress)
    domains, labels = test["domain"], test["label"]
    n = min(inputs, len(domains))
    correct = torch.zeros(len(manifest.domains))
    swap_hits = swap_total = 0
    for d in range(len(manifest.domains)):
        refs = [_pick_reference(domains, labels, i, d, outputs) for i in range(n)]
        sources = outputs.batches(test["source"], BATCH, range(n))
        references = outputs.batches(test["target"], BATCH, refs)
        outs = torch.cat(
            [outputs.translate(s, r).cpu() for s, r in zip(sources, references, strict=True)]
        )
        pred = predict(judge, outs.to(dev)).cpu()
        hits = pred == d
        correct[d] = hits.float().mean()
        swapped = domains[:n] != d
        swap_hits += int(hits[swapped].sum())
        swap_total += int(swapped.sum())
    real = classification_accuracy(judge, to_float(test["target"]).to(dev), domains)
    result = {
        "reference_accuracy": float(correct.mean()),
        "reference_accuracy_swap": swap_hits / max(swap_total, 1),
        "reference_judge_real": real,
    }
    for d, name in enumerate(manifest.domains):
        result[f"reference_accuracy_{name}"] = float(correct[d])
    return result


def _pick_reference(
    domains: torch.Tensor, labels: torch.Tensor, i: int, d: int, outputs: Outputs
) -> int:
    """A random test item of domain ``d`` showing other content than item ``i`` (another emoji);
    any other item of domain ``d`` where the data set has no content labels."""
    index = torch.arange(len(domains))
    for pool in ((domains == d) & (labels != labels[i]), (domains == d) & (index != i)):
        candidates = torch.nonzero(pool).flatten()
        if len(candidates):
            return int(candidates[outputs.pick(len(candidates), 1)])
    raise DataError(f"the test split has no reference of domain {d} for item {i}")
