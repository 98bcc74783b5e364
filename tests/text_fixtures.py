"""Small text data sets in the real store format, for the text-modality tests."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from m3dgan.data.store import Manifest, write_dataset

TEXT_MODEL_OVERRIDES = [
    "model.text_embed=8",
    "model.text_prenet=[16,8]",
    "model.cbhg_bank=3",
    "model.cbhg_channels=8",
    "model.cbhg_highway=1",
    "model.text_gru=8",
    "model.decoder_attention_rnn=16",
    "model.decoder_rnn=16",
]

WORDS = ["red", "cat", "sun", "blue", "dog", "moon", "big", "tree"]


def reverse_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """Two-word phrases → the same words in reverse order (order matters: attention's job)."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        a, b = rng.sample(WORDS, 2)
        pairs.append((f"{a} {b}", f"{b} {a}"))
    return pairs


def write_text2text(root: Path, n_train: int = 24, n_test: int = 8) -> Path:
    manifest = Manifest(
        name="synthetic-text",
        image_size=0,
        source_channels=0,
        target_channels=0,
        source_kind="text",
        target_kind="text",
    )
    splits = {}
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        pairs = reverse_pairs(n, seed)
        splits[split] = {
            "source": [p[0] for p in pairs],
            "target": [p[1] for p in pairs],
            "references": [[p[1]] for p in pairs],
            "label": torch.full((n,), -1, dtype=torch.long),
            "domain": torch.full((n,), -1, dtype=torch.long),
        }
    return write_dataset(root, manifest, splits)


def _square_images(n: int, seed: int, size: int = 16) -> tuple[torch.Tensor, list[str]]:
    """Coloured squares and their captions ("red square" / "blue square")."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.full((n, 3, size, size), 255, dtype=torch.uint8)
    captions = []
    for i in range(n):
        red = bool(torch.randint(0, 2, (1,), generator=gen))
        y, x = torch.randint(0, size // 2, (2,), generator=gen).tolist()
        colour = torch.tensor([220, 30, 30] if red else [30, 30, 220], dtype=torch.uint8)
        images[i, :, y : y + size // 2, x : x + size // 2] = colour[:, None, None]
        captions.append("red square" if red else "blue square")
    return images, captions


def write_image_text(root: Path, text_source: bool, n_train: int = 16, n_test: int = 8) -> Path:
    """image→text (captions of squares) or, with ``text_source``, text→image."""
    manifest = Manifest(
        name="synthetic-caption",
        image_size=16,
        source_channels=0 if text_source else 3,
        target_channels=3 if text_source else 0,
        source_kind="text" if text_source else "image",
        target_kind="image" if text_source else "text",
        classes=["blue square", "red square"],
        domains=["only"],
    )
    splits = {}
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        images, captions = _square_images(n, seed)
        label = torch.tensor([1 if c.startswith("red") else 0 for c in captions])
        row = {"label": label, "domain": torch.zeros(n, dtype=torch.long)}
        if text_source:
            row.update(source=captions, target=images)
        else:
            row.update(source=images, target=captions, references=[[c] for c in captions])
        splits[split] = row
    return write_dataset(root, manifest, splits)
