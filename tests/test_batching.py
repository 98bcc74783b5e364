"""Batches of the training loop (``m3dgan.data.batching``): random batches and length buckets
(``train.length_buckets``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import TINY_OVERRIDES, set_args
from safetensors.torch import load_file
from text_fixtures import TEXT_MODEL_OVERRIDES, write_text2text

from m3dgan.cli import main
from m3dgan.config import Config, config_from_dict
from m3dgan.core.switches import check_switches
from m3dgan.data.batching import batch_indices, row_lengths
from m3dgan.data.frames import SpeechFrames
from m3dgan.errors import ConfigError
from m3dgan.modalities import ModalitySpec
from m3dgan.modalities.text.vocab import EOS, PAD

N, B = 1000, 16
PER_EPOCH = N // B


def lengths(seed: int = 0) -> torch.Tensor:
    """Skewed lengths, as sentences have: most short, some long."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(N, generator=gen) ** 3 * 60 + 1).floor()


def epoch(buckets: int, key: torch.Tensor | None, seed: int = 0, first: int = 0) -> list:
    steps = range(first, first + PER_EPOCH)
    return [batch_indices(N, B, s, seed, lengths=key, buckets=buckets) for s in steps]


@pytest.mark.parametrize("buckets", [0, 1, 8, 64, 1000])
def test_every_row_is_drawn_at_most_once_an_epoch(buckets: int) -> None:
    batches = epoch(buckets, lengths())
    rows = torch.cat(batches)
    assert all(len(b) == B for b in batches)
    assert len(rows) == PER_EPOCH * B and len(set(rows.tolist())) == len(rows)
    # the same rows as random batches take: the epoch's permutation less its last partial batch
    assert set(rows.tolist()) == set(torch.cat(epoch(0, None)).tolist())


def test_buckets_hold_rows_of_similar_length() -> None:
    key = lengths()

    def padding_share(batches: list) -> float:
        real = sum(float(key[b].sum()) for b in batches)
        padded = sum(float(key[b].max()) * len(b) for b in batches)
        return 1 - real / padded

    random_, bucketed = padding_share(epoch(0, key)), padding_share(epoch(32, key))
    assert random_ > 0.6 and bucketed < 0.25, (random_, bucketed)
    # one bucket of one batch sorts the rows inside the batch only: nothing changes
    assert padding_share(epoch(1, key)) == pytest.approx(random_)


def test_batches_are_a_function_of_seed_and_step() -> None:
    key = lengths()
    for step in (0, 5, PER_EPOCH + 3):  # a resumed run draws what an unbroken one drew
        a = batch_indices(N, B, step, 7, lengths=key, buckets=8)
        assert torch.equal(a, batch_indices(N, B, step, 7, lengths=key, buckets=8))
        assert not torch.equal(a, batch_indices(N, B, step, 8, lengths=key, buckets=8))
    # the order of the buckets is shuffled within a pool, and differs between epochs
    first = [int(key[b].max()) for b in epoch(8, key)[:8]]
    assert first != sorted(first)
    assert not torch.equal(torch.cat(epoch(8, key)), torch.cat(epoch(8, key, first=PER_EPOCH)))


def test_rank_shares_partition_a_bucketed_batch() -> None:
    key = lengths()
    for step in range(4):
        whole = batch_indices(N, B, step, 3, lengths=key, buckets=8)
        shares = [batch_indices(N, B, step, 3, 0 + r, 2, key, 8) for r in range(2)]
        assert torch.equal(shares[0], whole[0::2]) and torch.equal(shares[1], whole[1::2])


def test_a_split_smaller_than_a_batch() -> None:
    key = torch.tensor([3.0, 1.0, 2.0])
    rows = batch_indices(3, 8, 0, 0, lengths=key, buckets=4)
    assert sorted(rows.tolist()) == [0, 1, 2]
    assert rows.tolist() == [1, 2, 0]  # sorted by length


def test_row_lengths_of_text_and_speech_sides() -> None:
    ids = torch.tensor([[5, 6, EOS, PAD], [5, EOS, PAD, PAD], [5, 6, 7, EOS]])
    frames = SpeechFrames(torch.zeros(12, 4, dtype=torch.float16), torch.tensor([2, 4, 6]))
    key = row_lengths({"source": ids, "target": frames}, ("text", "speech"))
    # each side's length over its mean: (3, 2, 4) / 3 and (2, 4, 6) / 4
    torch.testing.assert_close(key, torch.tensor([1.0 + 0.5, 2 / 3 + 1.0, 4 / 3 + 1.5]))
    images = torch.zeros(3, 3, 8, 8, dtype=torch.uint8)
    key = row_lengths({"source": images, "target": ids}, ("image", "text"))
    torch.testing.assert_close(key, torch.tensor([1.0, 2 / 3, 4 / 3]))
    assert row_lengths({"source": images, "target": images}, ("image", "image")) is None


def test_the_switch_is_refused_where_every_row_has_one_size() -> None:
    cfg = Config()
    cfg.train.length_buckets = 64
    image = ModalitySpec("image", 3, 32)
    with pytest.raises(ConfigError, match="train.length_buckets"):
        check_switches(cfg, image, image)
    check_switches(cfg, image, ModalitySpec("text", 12, 7))  # image → text: fine
    with pytest.raises(ConfigError, match="train.length_buckets"):
        config_from_dict({"train": {"length_buckets": -1}})


def test_a_bucketed_run_resumes_exactly(tmp_path: Path) -> None:
    data = write_text2text(tmp_path / "data", n_train=40)
    sets = set_args([*TINY_OVERRIDES, *TEXT_MODEL_OVERRIDES, "train.length_buckets=2"])

    def train(run: Path, steps: int, *extra: str) -> None:
        args = ["train", "--data", str(data), "--out", str(run), "--steps", str(steps)]
        assert main([*args, "--no-progress", *extra]) == 0

    new = ["--task", "en2fr", "--objective", "mle", *sets]
    train(tmp_path / "straight", 4, *new)
    train(tmp_path / "resumed", 2, *new)
    train(tmp_path / "resumed", 4, "--resume")
    name = "checkpoints/step_00000004.safetensors"
    a = load_file(str(tmp_path / "straight" / name))
    b = load_file(str(tmp_path / "resumed" / name))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sentence_normalisation_weighs_long_rows_more() -> None:
    """loss.normalization=sentences: the sum over each row's real tokens, averaged over rows
    (OpenNMT-py's `normalization sents`); tokens: the mean over the batch's real tokens."""
    from m3dgan.modalities.text import TextModality

    ids = torch.tensor([[5, 6, 7, EOS], [5, EOS, PAD, PAD]])
    probs = torch.full((2, 4, 9), 0.1)
    probs[0, :, 5] = 0.5  # the first row's tokens get other probabilities than the second's
    nll = -torch.log(torch.tensor([[0.5, 0.1, 0.1, 0.1], [0.1, 0.1, 0.0, 0.0]]).clamp_min(1e-8))
    real = nll * (ids != PAD)
    ce = TextModality._cross_entropy
    torch.testing.assert_close(ce(probs, ids, 0.0, "tokens"), real.sum() / 6)
    torch.testing.assert_close(ce(probs, ids, 0.0, "sentences"), real.sum() / 2)
    cfg = Config()
    cfg.loss.normalization = "sentences"
    with pytest.raises(ConfigError, match="loss.normalization"):
        check_switches(cfg, ModalitySpec("text", 12, 7), ModalitySpec("image", 3, 32))
    with pytest.raises(ConfigError, match="loss.normalization"):
        config_from_dict({"loss": {"normalization": "words"}})
