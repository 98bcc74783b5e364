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
  output; reported overall and for the swaps (reference vendor ≠ the source's own vendor). The
  emoji judge says whether those outputs still show the source's emoji (not the reference's),
  and the L1 to the ground truth is measured with the ground truth as the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from m3dgan.data.builtin import edges2emoji
from m3dgan.data.store import Manifest, to_float
from m3dgan.errors import DataError
from m3dgan.evaluate.context import Evaluation
from m3dgan.evaluate.generate import Outputs
from m3dgan.metrics import diversity as div
from m3dgan.metrics.emoji_judge import load_or_train_emoji_judge
from m3dgan.metrics.judge import JudgeNet, load_or_train_judge, predict
from m3dgan.metrics.realism import classification_accuracy

BATCH = 128  # test sources translated at a time
INPUTS, SAMPLES = 100, 20  # defaults: test sources, and samples of each (BicycleGAN's protocol)


def realism(ev: Evaluation) -> dict:
    """``realism``: accuracy in [0, 1] of the data set's class judge (a digit classifier the
    project trains on the MNIST training split) on every test source translated with one random
    code, the class being the source's; ``realism_real``: the same judge on the real test
    targets (the paper's "Rand. Real Imgs." row). Paper Table 2a."""
    test, outputs = ev.test, ev.outputs
    dev = outputs.device
    judge = load_or_train_judge("class", ev.root, device=dev, progress=ev.progress)
    fakes = torch.cat([outputs.translate(s).cpu() for s in outputs.batches(test["source"], BATCH)])
    return {
        "realism": classification_accuracy(judge, fakes.to(dev), test["label"]),
        "realism_real": classification_accuracy(
            judge, to_float(test["target"]).to(dev), test["label"]
        ),
    }


def diversity(ev: Evaluation) -> dict:
    """BicycleGAN's diversity of ``inputs`` (100) test sources × ``samples`` (20) outputs each:
    the mean distance between consecutive outputs of one source and its standard error over
    sources, from random codes (``diversity_z``), from random test references
    (``diversity_ref``, the paper's "Ours(r)"; models with a reference encoder only) and for
    random pairs of real targets (``diversity_real``, the level of the data itself). Values are
    ≥ 0 (0: the outputs ignore the code) on the scale of the distance named by ``distance``:
    LPIPS (AlexNet) where its weights are on the machine, else the LPIPS-style distance in the
    project judge's features. Paper Table 2a and the ablation of Table 3."""
    test, outputs = ev.test, ev.outputs
    dev = outputs.device
    inputs, samples = ev.inputs or INPUTS, ev.samples or SAMPLES
    sources, targets = to_float(test["source"]), to_float(test["target"])
    distance, name = _distance(ev.root, ev.manifest, dev, ev.progress)
    subset = sources[:inputs].to(dev)
    out: dict = {"distance": name}

    def random_z(src: torch.Tensor) -> torch.Tensor:
        return outputs.translate(src).cpu()

    out["diversity_z"], out["diversity_z_se"] = div.diversity_score(
        random_z, subset, samples, distance_fn=distance
    )
    if outputs.model.attention is not None:

        def random_ref(src: torch.Tensor) -> torch.Tensor:
            return outputs.translate(src, targets[outputs.pick(len(targets), len(src))]).cpu()

        out["diversity_ref"], out["diversity_ref_se"] = div.diversity_score(
            random_ref, subset, samples, distance_fn=distance
        )
    out["diversity_real"], out["diversity_real_se"] = div.real_pair_diversity(
        targets.to(dev), distance, seed=outputs.seed
    )
    return out


def reference(ev: Evaluation) -> dict:
    """Reference control: each of ``inputs`` (100) test sources is translated with one
    reference of every domain (a different item of that domain: another emoji) and the domain
    judge (a vendor classifier trained on real artwork) names the domain each output shows.

    - ``reference_accuracy``: the share named as the reference's domain, in [0, 1] (chance: one
      over the number of domains), also per domain (``reference_accuracy_<name>``) and over the
      swaps only (``reference_accuracy_swap``: reference domain ≠ the source's own);
      ``reference_judge_real``: the judge's accuracy on the real test targets.
    - The reference must set the *domain*, not hand over its content. Where an identity judge
      exists (edges2emoji: the emoji judge, ``metrics.emoji_judge``), ``reference_identity`` is
      the share of those outputs it names as the *source's* emoji, ``reference_copies`` the share
      it names as the *reference's* emoji (content copied), ``reference_identity_real`` its
      accuracy on the real test targets (the ceiling), all in [0, 1].
    - ``reconstruction_l1``: mean absolute difference, pixels in [0, 1], between the ground truth
      and the output made with the ground truth itself as the reference (BicycleGAN's encoded
      reconstruction).

    Reported with the ablation of Table 3 (``bench/ablation.py``) and issue 12's goals."""
    test, outputs, manifest = ev.test, ev.outputs, ev.manifest
    dev = outputs.device
    judge: JudgeNet = load_or_train_judge("domain", ev.root, device=dev, progress=ev.progress)
    identity = _identity_judge(manifest, dev, ev.progress)
    domains, labels = test["domain"], test["label"]
    n = min(ev.inputs or INPUTS, len(domains))
    correct = torch.zeros(len(manifest.domains))
    swap_hits = swap_total = 0
    named: list[torch.Tensor] = []  # identity judge's emoji for every output
    wanted: list[torch.Tensor] = []  # the source's emoji
    given: list[torch.Tensor] = []  # the reference's emoji
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
        if identity is not None:
            named.append(predict(identity.judge, outs.to(dev)).cpu())
            wanted.append(identity.classes[labels[:n]])
            given.append(identity.classes[labels[refs]])
    real = classification_accuracy(judge, to_float(test["target"]).to(dev), domains)
    result = {
        "reference_accuracy": float(correct.mean()),
        "reference_accuracy_swap": swap_hits / max(swap_total, 1),
        "reference_judge_real": real,
    }
    for d, name in enumerate(manifest.domains):
        result[f"reference_accuracy_{name}"] = float(correct[d])
    if identity is not None:
        said, own, ref = torch.cat(named), torch.cat(wanted), torch.cat(given)
        result["reference_identity"] = float((said == own).float().mean())
        result["reference_copies"] = float((said == ref).float().mean())
        real_ids = predict(identity.judge, to_float(test["target"][:n]).to(dev)).cpu()
        result["reference_identity_real"] = float(
            (real_ids == identity.classes[labels[:n]]).float().mean()
        )
    result["reconstruction_l1"] = _reconstruction_l1(test, outputs, n)
    return result


def _reconstruction_l1(test: dict, outputs: Outputs, n: int) -> float:
    """Mean |G(S, Enc(T)) − T| over the first ``n`` test pairs, pixels in [0, 1]."""
    rows = range(n)
    sources = outputs.batches(test["source"], BATCH, rows)
    truths = list(outputs.batches(test["target"], BATCH, rows))
    total = 0.0
    for s, t in zip(sources, truths, strict=True):
        out = outputs.translate(s, t)
        total += float((out.float() - t.float()).abs().mean(dim=(1, 2, 3)).sum()) / 2.0
    return total / max(n, 1)


@dataclass
class _IdentityJudge:
    judge: JudgeNet
    classes: torch.Tensor  # the judge's class of each data-set label (-1: unknown to it)


def _identity_judge(
    manifest: Manifest, device: torch.device, progress: bool
) -> _IdentityJudge | None:
    """The emoji judge for edges2emoji (which emoji is this?), its classes mapped from the data
    set's by name; None for data sets without one."""
    if manifest.name != edges2emoji.NAME:
        return None
    judge = load_or_train_emoji_judge(device=device, progress=progress)
    index = {name: i for i, name in enumerate(judge.info["class_names"])}
    classes = torch.tensor([index.get(name, -1) for name in manifest.classes], dtype=torch.int64)
    return _IdentityJudge(judge, classes)


def _judge_kind(manifest: Manifest) -> str | None:
    """The class judge where classes are few enough to learn (digits), else the domain judge."""
    if 2 <= len(manifest.classes) <= 100:
        return "class"
    if len(manifest.domains) >= 2:
        return "domain"
    return None


def _pixel_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().flatten(1).mean(1)


def _distance(
    root: Path, manifest: Manifest, device: torch.device, progress: bool
) -> tuple[div.DistanceFn, str]:
    lpips = div.lpips_distance_fn(device)
    if lpips is not None:
        return lpips, "lpips-alex"
    kind = _judge_kind(manifest)
    if kind is None:
        return _pixel_l1, "pixel-l1 (no judge: the data set has no labels)"
    judge = load_or_train_judge(kind, root, device=device, progress=progress)
    name = f"judge-features ({manifest.name} {kind} judge; LPIPS weights absent)"
    return div.judge_distance_fn(judge), name


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
