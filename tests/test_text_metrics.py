"""Tests for the text-task metrics: BLEU, the emoji-identity judge, and the text->image scores.

BLEU cases are small enough to check by hand (and against sacreBLEU's own ``corpus_bleu``). The
emoji judge is trained here on only 8 emoji with a tiny network, never the full one.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import sacrebleu
import torch
from conftest import REAL_NPM

from m3dgan.data.builtin import edges2emoji
from m3dgan.data.store import to_float
from m3dgan.errors import ConfigError, DataError
from m3dgan.metrics.bleu import corpus_bleu, corpus_chrf, reference_streams
from m3dgan.metrics.emoji_judge import (
    EmojiJudgeRecipe,
    augment_emoji,
    cross_vendor_accuracy,
    emoji_judge_path,
    load_artwork,
    load_or_train_emoji_judge,
    train_emoji_judge,
)
from m3dgan.metrics.image_score import (
    inception_score,
    inception_style_score,
    inception_unavailable_reason,
    judge_class_indices,
    missing_modes,
    named_accuracy,
    text_to_image_scores,
)
from m3dgan.metrics.judge import pooled_features, predict_proba

# --------------------------------------------------------------------------- BLEU


def test_bleu_identical_is_100_and_disjoint_is_0():
    hyps = ["the quick brown fox jumps over it", "a small red heart on white"]
    same = corpus_bleu(hyps, [[h] for h in hyps])
    assert same.bleu1 == pytest.approx(100.0)
    assert same.bleu4 == pytest.approx(100.0)
    other = corpus_bleu(hyps, [["zebra yak walrus"], ["moon sun star planet comet"]])
    assert other.bleu1 == 0.0
    assert other.bleu4 == 0.0


def test_bleu1_by_hand_with_brevity_penalty():
    # all 3 unigrams match, but the hypothesis is 3 words against a 6-word reference
    score = corpus_bleu(["the cat sat"], [["the cat sat on the mat"]])
    assert score.bleu1 == pytest.approx(100.0 * math.exp(1 - 6 / 3), abs=1e-6)
    assert score.brevity_penalty == pytest.approx(math.exp(-1), abs=1e-6)


def test_bleu_ragged_references_by_hand():
    # hyp 1: a, b, c, d each appear in one of its two references -> 4/4, closest ref length 4;
    # hyp 2: "e" matches, "f" does not -> 1/2, ref length 2. BLEU-1 = 5/6 with BP = 1.
    hyps = ["a b c d", "e f"]
    refs = [["a b x d", "a b c d e f"], ["e g"]]
    score = corpus_bleu(hyps, refs)
    assert score.bleu1 == pytest.approx(100 * 5 / 6, abs=1e-6)
    assert "nrefs:var" in score.signature and "tok:13a" in score.signature


def test_bleu4_matches_sacrebleu_corpus_bleu_on_a_partial_case():
    hyps = [
        "the grinning face with big eyes",
        "red heart",
        "a thumbs up sign from a hand",
    ]
    refs = [
        ["grinning face with big eyes", "smiley"],
        ["red heart", "heart"],
        ["thumbs up sign", "thumbs up", "+1 hand"],
    ]
    ours = corpus_bleu(hyps, refs)
    theirs = sacrebleu.corpus_bleu(hyps, reference_streams(refs))
    assert 0.0 < ours.bleu4 < 100.0
    assert ours.bleu4 == pytest.approx(theirs.score, abs=1e-9)
    assert ours.bleu1 > ours.bleu4  # unigrams match more often than 4-grams
    # padding short lists with None == padding them with copies of their own reference
    duplicated = [r + [r[0]] * (3 - len(r)) for r in refs]
    assert corpus_bleu(hyps, duplicated).bleu4 == pytest.approx(ours.bleu4, abs=1e-9)
    report = ours.as_dict()
    assert report["bleu4"] == ours.bleu4 and len(report["precisions"]) == 4
    assert report["sentences"] == 3


def test_bleu_char_tokenizer_scores_characters():
    words = corpus_bleu(["abc"], [["abd"]])
    chars = corpus_bleu(["abc"], [["abd"]], tokenize="char")
    assert words.bleu1 == 0.0
    assert chars.bleu1 == pytest.approx(100 * 2 / 3, abs=1e-6)
    assert "tok:char" in chars.signature


def test_bleu_errors_are_clear():
    with pytest.raises(DataError, match="no hypotheses"):
        corpus_bleu([], [])
    with pytest.raises(ValueError, match="2 hypotheses but 1 reference lists"):
        corpus_bleu(["a", "b"], [["a"]])
    with pytest.raises(DataError, match="hypothesis 1 has no reference"):
        corpus_bleu(["a", "b"], [["a"], []])
    with pytest.raises(ValueError, match="is a string"):
        corpus_bleu(["a"], ["a"])
    with pytest.raises(ConfigError, match="unknown BLEU tokenizer"):
        corpus_bleu(["a"], [["a"]], tokenize="nope")


def test_chrf_scores_characters_and_takes_the_best_reference():
    assert corpus_chrf(["le chat noir"], [["le chat noir"]]) == 100.0
    assert corpus_chrf(["xyz"], [["le chat noir"]]) < 5.0
    # partial credit inside words, where word BLEU-4 gives nothing
    near = corpus_chrf(["les chats noirs"], [["le chat noir"]])
    assert 30.0 < near < 100.0 and corpus_bleu(["les chats noirs"], [["le chat noir"]]).bleu4 == 0
    # ragged references: the matching one counts, padding does not
    both = corpus_chrf(["bonjour", "le chat"], [["salut", "bonjour"], ["le chat"]])
    assert both == 100.0
    ours = corpus_chrf(["a cat sat", "dogs"], [["a cat sat down"], ["a dog"]])
    theirs = sacrebleu.corpus_chrf(["a cat sat", "dogs"], [["a cat sat down", "a dog"]]).score
    assert math.isclose(ours, theirs)
    with pytest.raises(DataError, match="no hypotheses to score with chrF"):
        corpus_chrf([], [])
    with pytest.raises(ValueError, match="2 hypotheses but 1 reference lists"):
        corpus_chrf(["a", "b"], [["a"]])


# --------------------------------------------------------------------------- image scores


def _one_hot(classes: list[int], k: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(classes), k).float()


def test_inception_style_score_bounds():
    uniform = torch.full((12, 5), 0.2)
    assert inception_style_score(uniform)[0] == pytest.approx(1.0)
    # confident and spread evenly over K = 4 classes -> K, however many images per class
    assert inception_style_score(_one_hot([0, 1, 2, 3], 6))[0] == pytest.approx(4.0)
    assert inception_style_score(_one_hot([0, 1, 2, 3] * 3, 6))[0] == pytest.approx(4.0)
    # confident but collapsed onto one class -> 1
    assert inception_style_score(_one_hot([2] * 5, 6))[0] == pytest.approx(1.0)
    # uneven coverage lies strictly between: exp(entropy of [1/2, 1/4, 1/4]) = 2^(3/2)
    assert inception_style_score(_one_hot([0, 0, 1, 2], 3))[0] == pytest.approx(2**1.5)


def test_inception_style_score_splits_and_errors():
    probs = torch.cat([_one_hot([0, 1], 4), _one_hot([0, 0], 4)])  # split scores 2 and 1
    mean, std = inception_style_score(probs, splits=2)
    assert mean == pytest.approx(1.5) and std == pytest.approx(0.5)
    with pytest.raises(ValueError, match="probability distribution"):
        inception_style_score(torch.ones(3, 4))
    with pytest.raises(DataError, match="no images"):
        inception_style_score(torch.zeros(0, 4))
    with pytest.raises(ValueError, match="splits"):
        inception_style_score(probs, splits=5)


def test_missing_modes_counts_classes_never_above_half():
    k = 6
    probs = torch.tensor(
        [
            [0.9, 0.02, 0.02, 0.02, 0.02, 0.02],  # class 0 hit
            [0.2, 0.6, 0.05, 0.05, 0.05, 0.05],  # class 1 hit
            [0.1, 0.1, 0.5, 0.1, 0.1, 0.1],  # class 2 only AT 0.5: not a hit
            [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],  # class 5 hit, but not a test class
        ]
    )
    assert probs.shape[1] == k
    result = missing_modes(probs, [0, 1, 2, 3])
    assert (result.count, result.modes, result.missing) == (2, 4, (2, 3))
    assert missing_modes(probs, [0, 1, 5]).count == 0
    with pytest.raises(ValueError, match="classes must lie"):
        missing_modes(probs, [6])


def test_named_accuracy_top1_and_top5():
    probs = torch.tensor(
        [
            [0.5, 0.2, 0.1, 0.1, 0.05, 0.05, 0.0],
            [0.5, 0.2, 0.1, 0.1, 0.05, 0.05, 0.0],
            [0.5, 0.2, 0.1, 0.1, 0.05, 0.05, 0.0],
        ]
    )
    named = torch.tensor([0, 3, 6])  # top-1; top-5 only; outside the top 5
    acc = named_accuracy(probs, named)
    assert acc["top1"] == pytest.approx(1 / 3)
    assert acc["top5"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="3 predictions but 2 labels"):
        named_accuracy(probs, named[:2])


def test_standard_inception_score_says_when_absent(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    reason = inception_unavailable_reason()
    assert reason is not None
    assert "torchvision" in reason or "not in the torch hub cache" in reason
    with pytest.raises(DataError, match="no pretrained Inception"):
        inception_score(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    assert not any((tmp_path / "empty_torch_home").rglob("*.pth"))  # nothing was downloaded


# --------------------------------------------------------------------------- emoji judge

_HAS_EMOJI = REAL_NPM is not None and all((REAL_NPM / p).is_dir() for p in edges2emoji.NPM_PACKAGES)
needs_emoji = pytest.mark.skipif(
    not _HAS_EMOJI, reason="npm emoji-datasource-google/-twitter not installed (scripts/setup.sh)"
)
LIMIT = 8
TINY = EmojiJudgeRecipe(epochs=100, batch_size=16, widths=[8, 16, 32], eval_views=2)


@pytest.fixture(scope="module")
def packages() -> dict[str, Path]:
    return {name: REAL_NPM / name for name in edges2emoji.NPM_PACKAGES}


@pytest.fixture(scope="module")
def artwork(packages):
    return load_artwork(packages, limit=LIMIT)


@pytest.fixture(scope="module")
def tiny_judge(artwork):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny net: a second (shared) core only adds synchronisation
    try:
        return train_emoji_judge(artwork, TINY)
    finally:
        torch.set_num_threads(threads)


def test_augment_fills_with_white_and_is_seeded():
    white = torch.ones(4, 3, 64, 64)
    recipe = EmojiJudgeRecipe(jitter=0.0, blur_prob=1.0, scale=(0.7, 0.8), max_shift=0.2)
    out = augment_emoji(white.clone(), torch.Generator().manual_seed(0), recipe)
    assert torch.allclose(out, white, atol=1e-5)  # shrunk, shifted and blurred: still white
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    a = augment_emoji(x.clone(), torch.Generator().manual_seed(1))
    b = augment_emoji(x.clone(), torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert a.min() >= -1 and a.max() <= 1


@needs_emoji
def test_artwork_rows_follow_catalogue_order(artwork, packages):
    catalogue = edges2emoji.list_emoji(packages)[:LIMIT]
    assert [e.image for e in artwork.emoji] == [e.image for e in catalogue]
    assert artwork.images.shape == (2 * LIMIT, 3, 64, 64)
    assert sorted(artwork.labels.tolist()) == sorted(list(range(LIMIT)) * 2)
    assert set(artwork.vendors.tolist()) == {0, 1}


@needs_emoji
def test_tiny_judge_recognises_artwork_and_gives_pooled_features(tiny_judge, artwork):
    probs = predict_proba(tiny_judge, artwork.images)
    assert probs.shape == (2 * LIMIT, LIMIT)
    assert named_accuracy(probs, artwork.labels)["top1"] >= 0.75  # chance is 1/8
    feats = pooled_features(tiny_judge, artwork.images[:3])
    assert feats.shape == (3, TINY.widths[-1])


@needs_emoji
def test_text_to_image_scores_real_vs_collapsed(tiny_judge, artwork):
    real = text_to_image_scores(
        tiny_judge, artwork.images, artwork.labels, artwork.images, artwork.labels
    )
    assert real["modes"] == LIMIT and real["images"] == 2 * LIMIT
    assert real["named_accuracy"] >= 0.75
    assert real["named_accuracy"] == pytest.approx(real["named_accuracy_real"])
    assert real["inception_score"] == pytest.approx(real["inception_score_real"])
    assert real["inception_score"] > 2.0  # a collapsed set scores 1 (below)
    assert real["missing_modes"] == real["missing_modes_real"]
    # a collapsed generator: one picture for every caption
    collapsed = artwork.images[:1].expand(2 * LIMIT, -1, -1, -1)
    scores = text_to_image_scores(tiny_judge, collapsed, artwork.labels)
    assert scores["inception_score"] == pytest.approx(1.0)
    assert scores["missing_modes"] >= LIMIT - 1  # one image hits at most one class above 0.5
    assert scores["named_accuracy"] <= 2 / (2 * LIMIT)
    assert "inception_score_real" not in scores
    # float inputs in [-1, 1] give the same numbers as uint8
    as_float = text_to_image_scores(tiny_judge, to_float(artwork.images), artwork.labels)
    assert as_float["inception_score"] == pytest.approx(real["inception_score"])


@needs_emoji
def test_text_to_image_scores_maps_renumbered_labels_by_name(tiny_judge, artwork):
    # a data set that kept only emoji 5 and 2 (in that order) labels them 0 and 1
    class_names = [artwork.emoji[5].name, artwork.emoji[2].name]
    rows = torch.isin(artwork.labels, torch.tensor([5, 2]))
    relabelled = (artwork.labels[rows] == 2).long()  # 5 -> 0, 2 -> 1
    by_name = text_to_image_scores(
        tiny_judge, artwork.images[rows], relabelled, class_names=class_names
    )
    direct = text_to_image_scores(tiny_judge, artwork.images[rows], artwork.labels[rows])
    assert by_name["named_accuracy"] == direct["named_accuracy"]
    assert by_name["missing_modes"] == direct["missing_modes"] and by_name["modes"] == 2
    with pytest.raises(DataError, match="pass class_names"):
        text_to_image_scores(tiny_judge, artwork.images[:1], torch.tensor([LIMIT]))


@needs_emoji
@pytest.mark.usefixtures("isolated_env")
def test_emoji_judge_is_cached_with_sidecar_and_retrains_on_recipe_change():
    judge = load_or_train_emoji_judge(limit=LIMIT, recipe=TINY)
    weights = emoji_judge_path(LIMIT)
    assert weights.is_file() and weights.with_suffix(".json").is_file()
    info = judge.info
    assert info["arch"]["num_classes"] == LIMIT and info["train_size"] == 2 * LIMIT
    assert 0.0 <= info["view_accuracy"]["top1"] <= info["view_accuracy"]["top5"] <= 1.0
    assert info["clean_accuracy"]["top1"] >= 0.75
    names = info["class_names"]
    assert judge_class_indices(judge, [names[3], info["class_images"][5]]).tolist() == [3, 5]
    with pytest.raises(DataError, match="unknown to the judge"):
        judge_class_indices(judge, ["NOT AN EMOJI"])

    again = load_or_train_emoji_judge(limit=LIMIT, recipe=TINY)
    assert again.info == info  # from the cache, not retrained
    cached, trained = again.state_dict(), judge.state_dict()
    assert cached.keys() == trained.keys()
    assert all(torch.equal(cached[k], trained[k]) for k in trained)
    changed = EmojiJudgeRecipe(**{**TINY.__dict__, "seed": 1})
    other = load_or_train_emoji_judge(limit=LIMIT, recipe=changed)
    assert other.info["recipe"]["seed"] == 1
    assert not torch.equal(other.head.weight, judge.head.weight)


@needs_emoji
@pytest.mark.usefixtures("isolated_env")
def test_emoji_judge_over_a_named_subset(artwork):
    # as for a data set built with a limit: a random subset, named by name or image file
    picked = [artwork.emoji[6].name, artwork.emoji[1].image, artwork.emoji[3].name]
    judge = load_or_train_emoji_judge(only=picked, recipe=TINY)
    assert judge.info["class_images"] == [artwork.emoji[i].image for i in (1, 3, 6)]
    assert emoji_judge_path(only=picked).is_file()
    assert judge_class_indices(judge, [artwork.emoji[6].name]).tolist() == [2]
    with pytest.raises(DataError, match="not in the catalogue"):
        load_or_train_emoji_judge(only=["NOT AN EMOJI"], recipe=TINY)


@needs_emoji
@pytest.mark.usefixtures("isolated_env")
def test_cross_vendor_diagnostic_runs():
    result = cross_vendor_accuracy(limit=LIMIT, recipe=TINY)
    assert (result["train_vendor"], result["test_vendor"]) == ("google", "twitter")
    assert result["n"] == LIMIT
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0
