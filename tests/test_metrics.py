"""Tests for the offline metrics: judges, their cache, feature distance, diversity and realism.

All data here is synthetic but learnable, so the tests never depend on built data sets:
the class is which quadrant of a 16x16 image is bright, the domain is a red or blue tint.
"""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch

from m3dgan.data.store import Manifest, to_float, write_dataset
from m3dgan.errors import DataError
from m3dgan.metrics import (
    JudgeRecipe,
    classification_accuracy,
    diversity_score,
    feature_distance,
    judge_distance_fn,
    judge_path,
    load_or_train_judge,
    lpips_distance_fn,
    lpips_unavailable_reason,
    real_pair_diversity,
    train_judge,
)
from m3dgan.metrics import judge as judge_mod
from m3dgan.metrics.judge import JudgeNet, random_shift

SIZE = 16
SMALL = JudgeRecipe(epochs=6, batch_size=64, lr=3e-3, seed=0, augment=True, widths=[16, 32, 64])


def synthetic_split(n: int, seed: int) -> dict[str, torch.Tensor]:
    """Quadrant-class, tint-domain RGB images with noise, as a data set split."""
    gen = torch.Generator().manual_seed(seed)
    label = torch.randint(0, 4, (n,), generator=gen)
    domain = torch.randint(0, 2, (n,), generator=gen)
    img = torch.rand(n, 3, SIZE, SIZE, generator=gen) * 0.3
    half = SIZE // 2
    for q in range(4):
        rows = slice(half * (q // 2), half * (q // 2) + half)
        cols = slice(half * (q % 2), half * (q % 2) + half)
        img[label == q, :, rows, cols] += 0.6
    img[domain == 0, 0] += 0.1  # red tint
    img[domain == 1, 2] += 0.1  # blue tint
    target = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    source = target.float().mean(dim=1, keepdim=True).round().to(torch.uint8)
    return {"source": source, "target": target, "label": label, "domain": domain}


def write_synthetic(root, seed: int = 0, domains: bool = True):
    splits = {"train": synthetic_split(384, seed), "test": synthetic_split(128, seed + 100)}
    if not domains:
        for split in splits.values():
            split["domain"] = torch.full_like(split["domain"], -1)
    manifest = Manifest(
        name="synthetic",
        image_size=SIZE,
        source_channels=1,
        target_channels=3,
        classes=["tl", "tr", "bl", "br"],
        domains=["red", "blue"] if domains else [],
    )
    return write_dataset(root, manifest, splits)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Train on one thread: on a shared 2-core machine OpenMP's spinning threads make 2-thread
    training of these tiny nets up to 30x slower than 1 thread (unless OMP_WAIT_POLICY=PASSIVE)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data() -> dict[str, dict[str, torch.Tensor]]:
    return {"train": synthetic_split(384, 0), "test": synthetic_split(128, 100)}


@pytest.fixture(scope="module")
def class_judge(data) -> JudgeNet:
    train = data["train"]
    return train_judge(
        train["target"],
        train["label"],
        4,
        epochs=SMALL.epochs,
        batch_size=SMALL.batch_size,
        lr=SMALL.lr,
        seed=0,
        augment=True,
        widths=SMALL.widths,
    )


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("M3DGAN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def count_training(monkeypatch) -> list[int]:
    """Count calls of train_judge made by load_or_train_judge."""
    calls: list[int] = []
    real = judge_mod.train_judge

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(judge_mod, "train_judge", counting)
    return calls


# --------------------------------------------------------------------------- judge


def test_judge_learns_synthetic_classes(class_judge, data):
    test = data["test"]
    assert not class_judge.training
    acc = classification_accuracy(class_judge, to_float(test["target"]), test["label"])
    assert acc > 0.9


def test_judge_training_is_deterministic(data):
    train = data["train"]
    kwargs = {"epochs": 0.5, "batch_size": 64, "lr": 1e-3, "seed": 3, "augment": True}
    a = train_judge(train["target"], train["label"], 4, widths=[8, 8, 8], **kwargs)
    b = train_judge(train["target"], train["label"], 4, widths=[8, 8, 8], **kwargs)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


def test_training_leaves_global_rng_alone(data):
    train = data["train"]
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_judge(train["target"][:64], train["label"][:64], 4, epochs=1, widths=[8, 8, 8])
    assert torch.equal(torch.rand(3), expected)


def test_judge_rejects_wrong_channels(class_judge):
    with pytest.raises(ValueError, match="expects"):
        class_judge(torch.zeros(2, 1, SIZE, SIZE))


def test_random_shift_keeps_shape_and_zero_shift_is_identity():
    x = torch.randn(5, 3, 12, 12)
    gen = torch.Generator().manual_seed(0)
    assert random_shift(x, 2, gen).shape == x.shape
    assert torch.equal(random_shift(x, 0, gen), x)


def test_judge_cache_round_trip_and_retrain_on_new_data(tmp_path, home, count_training):
    root = write_synthetic(tmp_path / "ds", seed=0)
    first = load_or_train_judge("class", root, recipe=SMALL)
    assert len(count_training) == 1
    assert first.info["test_accuracy"] > 0.9
    weights = judge_path("synthetic", "class")
    assert weights.is_file() and weights.with_suffix(".json").is_file()
    sidecar = json.loads(weights.with_suffix(".json").read_text())
    assert sidecar["test_accuracy"] == pytest.approx(first.info["test_accuracy"])

    second = load_or_train_judge("class", root, recipe=SMALL)
    assert len(count_training) == 1, "a matching cache must load, not retrain"
    x = to_float(synthetic_split(8, 7)["target"])
    assert torch.allclose(first(x), second(x), atol=1e-5)

    write_synthetic(tmp_path / "ds", seed=1)  # rebuilt data set: new train sha256
    load_or_train_judge("class", root, recipe=SMALL)
    assert len(count_training) == 2


def test_judge_cache_retrains_on_new_recipe_or_damage(tmp_path, home, count_training):
    root = write_synthetic(tmp_path / "ds")
    load_or_train_judge("class", root, recipe=SMALL)
    other = JudgeRecipe(**{**SMALL.__dict__, "seed": 1})
    load_or_train_judge("class", root, recipe=other)
    assert len(count_training) == 2
    judge_path("synthetic", "class").write_bytes(b"not safetensors")
    with pytest.warns(UserWarning, match="retraining"):
        load_or_train_judge("class", root, recipe=other)
    assert len(count_training) == 3


def test_domain_judge_learns_tint(tmp_path, home):
    root = write_synthetic(tmp_path / "ds")
    judge = load_or_train_judge("domain", root, recipe=SMALL)
    assert judge.num_classes == 2
    assert judge.info["test_accuracy"] > 0.9
    assert judge_path("synthetic", "domain").is_file()


def test_domain_judge_needs_domain_labels(tmp_path, home):
    root = write_synthetic(tmp_path / "ds", domains=False)
    with pytest.raises(DataError, match="no domain labels"):
        load_or_train_judge("domain", root, recipe=SMALL)


def test_unknown_kind_is_rejected(tmp_path, home):
    with pytest.raises(ValueError, match="unknown judge kind"):
        load_or_train_judge("style", tmp_path)


# --------------------------------------------------------------------------- realism


def test_classification_accuracy_skips_unlabelled(class_judge, data):
    test = data["test"]
    labels = test["label"].clone()
    labels[::2] = -1
    acc = classification_accuracy(class_judge, test["target"], labels)  # uint8 accepted too
    assert acc > 0.9
    with pytest.raises(ValueError, match="no labelled"):
        classification_accuracy(class_judge, test["target"], torch.full_like(labels, -1))


# --------------------------------------------------------------------------- feature distance


def test_feature_distance_properties(class_judge, data):
    x = to_float(data["test"]["target"][:16])
    other = to_float(data["test"]["target"][16:32])
    gen = torch.Generator().manual_seed(0)
    near = (x + 0.05 * torch.randn(x.shape, generator=gen)).clamp(-1, 1)

    same = feature_distance(class_judge, x, x)
    assert same.shape == (16,)
    assert torch.allclose(same, torch.zeros(16), atol=1e-6)

    d_xo, d_ox = feature_distance(class_judge, x, other), feature_distance(class_judge, other, x)
    assert torch.allclose(d_xo, d_ox, atol=1e-6)
    assert feature_distance(class_judge, x, near).mean() < d_xo.mean()
    assert (d_xo >= 0).all() and (d_xo <= 2 * len(class_judge.widths)).all()
    assert class_judge.training is False


def test_feature_distance_rejects_shape_mismatch(class_judge):
    with pytest.raises(ValueError, match="equal shapes"):
        feature_distance(class_judge, torch.zeros(2, 3, SIZE, SIZE), torch.zeros(3, 3, SIZE, SIZE))


# --------------------------------------------------------------------------- diversity


def test_diversity_zero_when_z_is_ignored_and_positive_when_used(class_judge, data):
    sources = to_float(data["test"]["target"][:10])
    distance = judge_distance_fn(class_judge)
    torch.manual_seed(0)

    def ignores_z(s):
        _z = torch.randn(len(s), 8)
        return s

    def uses_z(s):
        z = torch.randn(len(s), 3, 1, 1)
        return (s + 0.8 * z).clamp(-1, 1)

    mean0, _ = diversity_score(ignores_z, sources, n_samples=5, distance_fn=distance)
    mean1, err1 = diversity_score(uses_z, sources, n_samples=5, distance_fn=distance, batch_size=4)
    assert mean0 == pytest.approx(0.0, abs=1e-6)
    assert mean1 > 0.05
    assert 0 <= err1 < mean1


def test_diversity_needs_two_samples(class_judge, data):
    with pytest.raises(ValueError, match="at least 2"):
        diversity_score(
            lambda s: s, data["test"]["target"][:2], 1, distance_fn=judge_distance_fn(class_judge)
        )


def test_real_pair_diversity_positive_and_seeded(class_judge, data):
    targets = data["test"]["target"]
    distance = judge_distance_fn(class_judge)
    mean, err = real_pair_diversity(targets, distance, n_pairs=64, seed=0)
    again, _ = real_pair_diversity(targets, distance, n_pairs=64, seed=0)
    assert mean > 0.05 and err >= 0
    assert mean == again


# --------------------------------------------------------------------------- LPIPS


def test_lpips_unavailable_offline_returns_none(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    if "lpips" not in sys.modules:
        monkeypatch.setitem(sys.modules, "lpips", None)  # make find_spec fail if not installed
    assert lpips_distance_fn("cpu") is None
    assert isinstance(lpips_unavailable_reason(), str)


def test_lpips_without_weights_is_not_loaded(monkeypatch, tmp_path):
    """A present lpips package without weights must be reported, never imported or run."""
    pkg = tmp_path / "site" / "lpips"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('lpips must not be imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "lpips", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert "linear weights" in lpips_unavailable_reason()
    assert lpips_distance_fn("cpu") is None

    (pkg / "weights" / "v0.1").mkdir(parents=True)
    (pkg / "weights" / "v0.1" / "alex.pth").write_bytes(b"")
    fake_tv = types.ModuleType("torchvision.models")  # no AlexNet_Weights here
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    monkeypatch.setitem(sys.modules, "torchvision.models", fake_tv)
    assert "torchvision" in lpips_unavailable_reason()
    assert lpips_distance_fn("cpu") is None


def test_a_judge_on_a_one_class_data_set_is_a_clean_error(tmp_path, monkeypatch) -> None:
    """The synthetic set has one class ("square"): a class judge cannot exist, and evaluate must
    say so as a DataError (exit 2), not crash inside the network's constructor."""
    from conftest import write_synthetic_dataset

    monkeypatch.setenv("M3DGAN_HOME", str(tmp_path / "home"))
    root = write_synthetic_dataset(tmp_path / "one-class")
    with pytest.raises(DataError, match="at least 2 classes"):
        judge_mod.load_or_train_judge("class", root)
