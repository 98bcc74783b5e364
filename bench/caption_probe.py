"""How fast can a caption → emoji picture map be learned, by caption encoder? (text2emoji-seen)

A probe, not the model: the text → image generator's upsampling blocks
(``m3dgan.modalities.image.from_text.UpBlock``) trained with L1 alone (no GAN, no code) from a
sentence vector made by one of these encoders, for a wall-clock budget, then judged by the emoji
identity judge on the held-out captions (named top-1 / top-5 accuracy, as ``m3dgan evaluate``):

- ``oracle``: an embedding of the emoji's label (no caption): the ceiling at this budget;
- ``words``: a bag of word embeddings (mean), words from the training captions;
- ``pieces-bag``: a bag of sentencepiece pieces (``--pieces``), as ``model.text_encoder=bag``
  with ``model.subwords``;
- ``ngrams-bag``: a bag of words and their character trigrams (``<sm``, ``smi``, …, ``le>``),
  fastText's subword features, the vocabulary of the training captions;
- ``pieces-cbhg`` / ``chars-cbhg``: the paper's CBHG text prenet (``TextPrenet``) over pieces or
  characters, its states' mean as the sentence vector.

    OMP_NUM_THREADS=1 python bench/caption_probe.py --encoder oracle --minutes 6
    OMP_NUM_THREADS=1 python bench/caption_probe.py --encoder pieces-bag --pieces 2000 --minutes 6

Prints one JSON line and appends it to ``--out`` (default bench/results/caption_probe/probe.jsonl).
Needs ``m3dgan data build text2emoji-seen``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from m3dgan.config import ModelConfig
from m3dgan.data import store
from m3dgan.data.build import ensure_dataset
from m3dgan.data.subwords import train_unigram
from m3dgan.metrics.emoji_judge import load_or_train_emoji_judge
from m3dgan.metrics.image_score import text_to_image_scores
from m3dgan.modalities.image.from_text import UpBlock
from m3dgan.modalities.text.nets import TextPrenet
from m3dgan.modalities.text.vocab import CharVocabulary, SubwordVocabulary

ENCODERS = ("oracle", "words", "ngrams-bag", "pieces-bag", "pieces-cbhg", "chars-cbhg")
COND = 192  # sentence-vector width (the generator's 128 + the 64 of a domain embedding)
WIDTHS = [128, 128, 128, 64, 32]  # 4×4 → 64×64, the text2emoji generator's widths


class Probe(nn.Module):
    def __init__(self, encoder: str, vocab_size: int, classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        if encoder == "oracle":
            self.embed = nn.Embedding(classes, COND)
        elif encoder.endswith("cbhg"):
            self.prenet = TextPrenet(vocab_size, ModelConfig())
            self.to_cond = nn.Linear(2 * ModelConfig().text_gru, COND)
        else:
            self.bag = nn.Embedding(vocab_size, COND, padding_idx=0)
        self.fc = nn.Linear(COND, WIDTHS[0] * 16)
        self.blocks = nn.ModuleList(UpBlock(WIDTHS[i], WIDTHS[i + 1], COND) for i in range(4))
        self.to_image = nn.Conv2d(WIDTHS[-1], 3, 3, 1, 1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.encoder == "oracle":
            cond = self.embed(ids)
        elif self.encoder.endswith("cbhg"):
            cond = F.leaky_relu(self.to_cond(self.prenet(ids).pooled()), 0.2)
        else:  # the mean of the real (non-padding) ids' embeddings
            mask = (ids > 0).float().unsqueeze(-1)
            cond = (self.bag(ids) * mask).sum(1) / mask.sum(1).clamp_min(1)
        h = self.fc(cond).view(len(cond), WIDTHS[0], 4, 4)
        for block in self.blocks:
            h = block(h, cond)
        return torch.tanh(self.to_image(h))


def tokenizer(encoder: str, train_texts: list[str], pieces: int):
    """(text → ids, vocabulary size); id 0 is padding."""
    if encoder == "words":
        words = sorted({w for t in train_texts for w in re.findall(r"[a-z0-9]+", t)})
        index = {w: i + 2 for i, w in enumerate(words)}  # 1: unknown word
        return (lambda t: [index.get(w, 1) for w in re.findall(r"[a-z0-9]+", t)] or [1]), len(
            words
        ) + 2
    if encoder == "ngrams-bag":

        def features(text: str) -> list[str]:
            words = re.findall(r"[a-z0-9]+", text.lower())
            grams = [f"<{w}>"[i : i + 3] for w in words for i in range(len(w))]
            return words + grams

        names = sorted({f for t in train_texts for f in features(t)})
        index = {f: i + 2 for i, f in enumerate(names)}  # 1: unknown feature
        return (lambda t: [index.get(f, 1) for f in features(t)] or [1]), len(names) + 2
    if encoder.startswith("pieces"):
        vocab = SubwordVocabulary(train_unigram(sorted(set(train_texts)), pieces))
    else:
        vocab = CharVocabulary.build(train_texts)
    return (lambda t: vocab.pieces(t) or [3]), vocab.size


def padded(rows: list[list[int]]) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [0] * (width - len(r)) for r in rows])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--encoder", choices=ENCODERS, required=True)
    p.add_argument("--minutes", type=float, default=6.0)
    p.add_argument("--pieces", type=int, default=2000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("bench/results/caption_probe/probe.jsonl"))
    args = p.parse_args()
    torch.manual_seed(args.seed)
    root = ensure_dataset("text2emoji-seen")
    train, test = store.load_split(root, "train"), store.load_split(root, "test")
    manifest = store.read_manifest(root)
    encode, vocab_size = tokenizer(args.encoder, train["source"], args.pieces)

    def inputs(split, rows: list[int]) -> torch.Tensor:
        if args.encoder == "oracle":
            return split["label"][rows]
        return padded([encode(split["source"][r]) for r in rows])

    model = Probe(args.encoder, vocab_size, len(manifest.classes))
    opt = torch.optim.Adam(model.parameters(), args.lr, betas=(0.5, 0.999))
    images, steps, start = train["target"], 0, time.perf_counter()
    while time.perf_counter() - start < args.minutes * 60:
        rows = torch.randint(len(images), (args.batch_size,)).tolist()
        real = images[rows].float() / 127.5 - 1
        loss = F.l1_loss(model(inputs(train, rows)), real)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
    model.eval()
    seen: set[str] = set()
    rows = [i for i, t in enumerate(test["source"]) if not (t in seen or seen.add(t))]
    with torch.no_grad():
        fakes = torch.cat([model(inputs(test, rows[i : i + 64])) for i in range(0, len(rows), 64)])
    scores = text_to_image_scores(
        load_or_train_emoji_judge(), fakes, test["label"][rows], standard_inception=False
    )
    row = {
        "encoder": args.encoder,
        "pieces": args.pieces if args.encoder.startswith("pieces") else None,
        "minutes": args.minutes,
        "steps": steps,
        "lr": args.lr,
        "threads": torch.get_num_threads(),
        "captions": len(rows),
    } | {
        k: scores[k]
        for k in ("named_accuracy", "named_accuracy_top5", "inception_score", "missing_modes")
    }
    print(json.dumps(row))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as handle:
        handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
