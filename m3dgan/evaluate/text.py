"""The metrics of ``m3dgan evaluate`` for the tasks with a text side (paper Table 2b–c, Table 4).

- **captioning** (emoji2text) and **translation** (en2fr): every distinct test source is decoded
  once (greedy, or beam search with ``beam``), with the domain code at the prior's mean (e = 0)
  when the model has one — the paper uses no reference at test time for these tasks. Corpus
  BLEU-1 and BLEU-4 (sacreBLEU) against all reference texts of the source.
- **text2image** (text2emoji): ``samples`` images per distinct test caption from random codes,
  judged by the emoji-identity classifier the project trains on real artwork of both vendors
  (``metrics.emoji_judge``): named-emoji accuracy (top-1 / top-5: does the picture show the emoji
  the caption names?), an Inception-style score and the number of missing modes, each next to
  its value on the real test artwork.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from m3dgan.data.store import to_float
from m3dgan.evaluate.context import Evaluation
from m3dgan.evaluate.generate import Outputs
from m3dgan.metrics import image_score
from m3dgan.metrics.bleu import corpus_bleu, corpus_chrf
from m3dgan.metrics.diversity import feature_distance
from m3dgan.metrics.emoji_judge import load_or_train_emoji_judge
from m3dgan.modalities.text.vocab import EOS, PAD

DECODE_BATCH = 64  # distinct sources decoded at a time
IMAGE_BATCH = 32  # captions drawn at a time (``samples`` draws each)
SAMPLES = 4  # default images per caption


def _groups(test: dict, kind: str) -> OrderedDict:
    """Distinct sources → row indices. Text sources by string; image sources by the pixels' item
    (label, domain), falling back to the row when there are no labels."""
    groups: OrderedDict = OrderedDict()
    n = len(test["label"])
    for i in range(n):
        if kind == "text":
            key = test["source_text"][i] if "source_text" in test else test["source"][i]
        else:
            label, domain = int(test["label"][i]), int(test["domain"][i])
            key = (label, domain) if label >= 0 else i
        groups.setdefault(key, []).append(i)
    return groups


def _references(test: dict, rows: list[int]) -> list[str]:
    refs: list[str] = []
    for i in rows:
        if "references" in test:
            refs.extend(test["references"][i])
        refs.append(test["target_text"][i])
    return list(dict.fromkeys(refs))  # unique, order kept


def decode_test(
    outputs: Outputs, test: dict, *, inputs: int | None
) -> tuple[list[str], list[list[str]], list[str]]:
    """Hypotheses, reference lists and source descriptions for distinct test sources."""
    groups = _groups(test, outputs.tr.source_spec.kind)
    keys = list(groups)[: inputs or None]
    hyps = outputs.texts(test["source"], [groups[k][0] for k in keys], DECODE_BATCH)
    refs = [_references(test, groups[k]) for k in keys]
    sources = [str(k) for k in keys]
    return hyps, refs, sources


def text_output(ev: Evaluation) -> dict:
    """BLEU of the text outputs (captioning, translation): the first ``inputs`` distinct test
    sources (all by default) decoded once each, greedy or beam search (``beam``), with the domain
    code at the prior's mean. ``bleu1`` and ``bleu4``: corpus BLEU-1 and BLEU-4 (sacreBLEU,
    13a tokens; its ``bleu_signature`` is kept) against every reference text of the source, in
    [0, 100]; ``chrf``: sacreBLEU's corpus chrF (character 6-grams, β = 2), in [0, 100], the
    more telling score for short phrases; ``test_nll`` and ``end_nll``: the teacher-forced
    cross-entropy in nats per target token and per end mark, e = 0, over the first ``inputs``
    test rows (all by default; :func:`_teacher_forced_nll`); ``exact_match``: the share
    of outputs equal to one of their references, in [0, 1]; with a domain code, what the output
    owes to it
    (:func:`_code_dependence`). Paper Table 2c (emoji2text) and Table 4 (en2fr)."""
    outputs = ev.outputs
    hyps, refs, sources = decode_test(outputs, ev.test, inputs=ev.inputs)
    tokenize = "13a"
    scores = corpus_bleu(hyps, refs, tokenize=tokenize)
    exact = sum(h in r for h, r in zip(hyps, refs, strict=True)) / max(len(hyps), 1)
    leak = _code_dependence(outputs, ev.test, hyps, refs, ev.inputs)
    n = len(ev.test["target"])
    test_nll, end_nll = _teacher_forced_nll(outputs, ev.test, range(min(ev.inputs or n, n)))
    return {
        "bleu1": scores.bleu1,
        "bleu4": scores.bleu4,
        "chrf": corpus_chrf(hyps, refs),
        "test_nll": test_nll,
        "end_nll": end_nll,
        **leak,
        "bleu_signature": scores.signature,
        "bleu_brevity_penalty": scores.brevity_penalty,
        "bleu_precisions": scores.precisions,
        "exact_match": exact,
        "decoded": len(hyps),
        "beam": outputs.beam,
        "examples": [
            {"source": s, "output": h, "references": r[:3]}
            for s, h, r in list(zip(sources, hyps, refs, strict=True))[:10]
        ],
    }


@torch.no_grad()
def _teacher_forced_nll(outputs: Outputs, test: dict, rows: range) -> tuple[float, float]:
    """Teacher-forced cross-entropy of the text target, in nats: (mean over every real target
    token, mean over the end marks alone) of the test split's ``rows`` (source, target pairs),
    with e = 0 for a model with a domain code. The first is the test loss (OpenNMT-py reports
    its exponential as validation perplexity); the second says how well the model knows where
    a sentence ends (high, with short outputs: the length decision is off). The model is in
    eval mode and a text decoder draws nothing at random there, so no RNG is involved."""
    model, device = outputs.model, outputs.device
    total = ends = 0.0
    n_tokens = n_ends = 0
    targets = outputs.batches(test["target"], DECODE_BATCH, rows)
    for source in outputs.batches(test["source"], DECODE_BATCH, rows):
        target = next(targets).long()
        z = None
        if model.attention is not None:
            z = model.embed(torch.zeros(len(source), model.cfg.nz, device=device))
        probs = model.target_modality.output_sample(model.generate(source, z, target)).float()
        nll = -probs.gather(-1, target.unsqueeze(-1)).squeeze(-1).clamp_min(1e-12).log()
        real, end = target != PAD, target == EOS
        total += float(nll[real].sum())
        ends += float(nll[end].sum())
        n_tokens += int(real.sum())
        n_ends += int(end.sum())
    return total / max(n_tokens, 1), ends / max(n_ends, 1)


def _code_dependence(
    outputs: Outputs, test: dict, hyps: list[str], refs: list[list[str]], inputs: int | None
) -> dict:
    """What the text output owes to the domain code e (issue 14's leak). Training encodes the
    target itself (R = T), so the code can carry the sentence; at test time e = 0.

    ``posterior_kl``: mean KL(q(e | T) ‖ N(0, I)) in nats over the decoded rows' own targets
    (0: the code carries nothing of T). ``code_dependence``: the share of sources, in [0, 1],
    whose output with the encoded e (their own target as reference) differs from the output
    with e = 0. ``bleu4_encoded`` / ``chrf_encoded``: the scores with the encoded e, the
    conditions training sees; far above ``bleu4`` / ``chrf``, the decoder leans on a channel
    it does not get at test time. Empty for models without a domain code (mle)."""
    if outputs.model.attention is None:
        return {}
    groups = _groups(test, outputs.tr.source_spec.kind)
    rows = [groups[k][0] for k in list(groups)[: inputs or None]]
    encoded = outputs.texts(test["source"], rows, DECODE_BATCH, references=test["target"])
    kl = outputs.posterior_kl(test["target"], rows, DECODE_BATCH)
    changed = sum(a != b for a, b in zip(hyps, encoded, strict=True)) / max(len(hyps), 1)
    return {
        "posterior_kl": float(kl.mean()),
        "code_dependence": changed,
        "bleu4_encoded": corpus_bleu(encoded, refs).bleu4,
        "chrf_encoded": corpus_chrf(encoded, refs),
    }


def text_to_image(ev: Evaluation) -> dict:
    """Text→image (text2emoji): ``samples`` (4) images from random codes for each of the first
    ``inputs`` distinct test captions (all by default), judged by the emoji-identity classifier
    the project trains on real artwork of both vendors. ``named_accuracy`` (and ``_top5``): the
    share of images showing the emoji their caption names, in [0, 1]; ``inception_score``: the
    Inception-style score exp E KL(p(y|x) ‖ p(y)) with that judge, from 1 up to the number of
    emoji; ``missing_modes``: test emoji never recognised with p > 0.5, out of ``modes``; each
    also on the real test artwork (``_real``). With a domain code and 2+ samples also
    ``diversity_z``: the mean judge-feature distance between consecutive samples of a caption
    (≥ 0; 0: the code changes nothing). Paper Table 2b."""
    outputs, test, samples = ev.outputs, ev.test, ev.samples or SAMPLES
    device, attention = outputs.device, outputs.model.attention
    class_names = ev.manifest.classes or None
    judge = load_or_train_emoji_judge(device=device, progress=ev.progress)
    groups = _groups(test, "text")
    keys = list(groups)[: ev.inputs or None]
    rows = [groups[k][0] for k in keys]
    named = test["label"][torch.tensor(rows)]
    images, labels = [], []
    for start, ids in zip(
        range(0, len(rows), IMAGE_BATCH),
        outputs.batches(test["source"], IMAGE_BATCH, rows),
        strict=True,
    ):
        for _ in range(samples if attention is not None else 1):
            images.append(outputs.translate(ids).cpu())
            labels.append(named[start : start + IMAGE_BATCH])
    fakes, fake_labels = torch.cat(images), torch.cat(labels)
    real = to_float(test["target"])
    out = image_score.text_to_image_scores(
        judge, fakes, fake_labels, real, test["label"], class_names=class_names, device=device
    )
    if attention is not None and samples > 1:
        out.update(_sample_diversity(judge, fakes, len(keys), samples, device))
    return out


def _sample_diversity(judge, fakes: torch.Tensor, n: int, samples: int, device) -> dict:
    """Mean emoji-judge feature distance between consecutive samples of the same caption
    (BicycleGAN's protocol, as for images): do random codes give different pictures?"""

    # ``fakes`` holds, per batch of ≤ IMAGE_BATCH captions, ``samples`` consecutive blocks
    dists = []
    start = 0
    for b0 in range(0, n, IMAGE_BATCH):
        width = min(IMAGE_BATCH, n - b0)
        blocks = [fakes[start + k * width : start + (k + 1) * width] for k in range(samples)]
        for k in range(samples - 1):
            dists.append(feature_distance(judge, blocks[k].to(device), blocks[k + 1].to(device)))
        start += samples * width
    d = torch.cat(dists).double()
    return {"diversity_z": float(d.mean()), "diversity_z_se": float(d.std() / len(d) ** 0.5)}
