"""Text in the data store, and the text2emoji / emoji2text / en2fr builders on real material.

The builders run with small ``limit``s on the installed npm packages, babel's CLDR data and the
system's French gettext catalogues; tests that need the npm material skip when it is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REAL_NPM

from m3dgan.data import build, store
from m3dgan.data.builtin import emoji_text, en2fr
from m3dgan.errors import DataError

pytestmark = pytest.mark.usefixtures("isolated_env")

_TEXT_PACKAGES = (*emoji_text.NPM_PACKAGES, *en2fr.NPM_PACKAGES)
NPM = (
    REAL_NPM
    if REAL_NPM is not None
    and all((REAL_NPM / p / "package.json").is_file() for p in _TEXT_PACKAGES)
    else None
)
needs_npm = pytest.mark.skipif(
    NPM is None,
    reason=f"npm packages {', '.join(_TEXT_PACKAGES)} not installed "
    "(run `bash scripts/setup.sh` or set M3DGAN_NPM_MODULES)",
)
try:
    en2fr.catalogues()
    HAS_CATALOGUES = True
except DataError:
    HAS_CATALOGUES = False
needs_catalogues = pytest.mark.skipif(
    not HAS_CATALOGUES, reason="no French gettext catalogues under /usr/share/locale/fr"
)
EMOJI_LIMIT = 12
EN2FR_LIMIT = 300


def _build(name: str, root: Path, **kw) -> Path:
    """Build with the real npm folder, whatever the test's M3DGAN_HOME."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("M3DGAN_NPM_MODULES", str(NPM))
        return build.build_dataset(name, root, progress=False, **kw)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small builds shared by the module (read-only for tests)."""
    if NPM is None:
        pytest.skip("npm material missing")
    out = tmp_path_factory.mktemp("text_data")
    roots = {
        name: _build(name, out / name, limit=EMOJI_LIMIT)
        for name in ("text2emoji", "emoji2text", "edges2emoji")
    }
    if HAS_CATALOGUES:
        roots["en2fr"] = _build("en2fr", out / "en2fr", limit=EN2FR_LIMIT)
    return roots


# --- the store ----------------------------------------------------------------------------------


def _text_manifest(**kw) -> store.Manifest:
    base = dict(
        name="captions",
        image_size=8,
        source_channels=3,
        target_channels=0,
        source_kind="image",
        target_kind="text",
        classes=["a", "b"],
    )
    return store.Manifest(**(base | kw))


def _text_split(n: int = 3) -> dict:
    return {
        "source": torch.arange(n * 3 * 8 * 8, dtype=torch.uint8).reshape(n, 3, 8, 8),
        "target": [f"caption {i} é" for i in range(n)],
        "references": [[f"caption {i} é", f"other {i}"] for i in range(n)],
        "label": torch.arange(n) % 2,
        "domain": torch.full((n,), -1),
    }


def test_store_round_trip_with_a_text_side(tmp_path: Path) -> None:
    split = _text_split()
    root = store.write_dataset(tmp_path / "d", _text_manifest(), {"train": split, "test": split})
    manifest = store.verify(root)
    assert set(manifest.files) == {
        "train.safetensors",
        "train.texts.json",
        "test.safetensors",
        "test.texts.json",
    }
    assert manifest.splits == {"train": 3, "test": 3}
    assert manifest.text_sides() == ("target",) and manifest.image_sides() == ("source",)
    data = store.load_split(root, "train")
    assert data["target"] == split["target"] and data["references"] == split["references"]
    assert torch.equal(data["source"], split["source"])
    assert torch.equal(data["label"], split["label"])
    # the text side is not in the tensors file; a changed texts file fails verification
    with open(root / "train.texts.json", "a") as handle:
        handle.write(" ")
    with pytest.raises(DataError, match=r"train\.texts\.json.*checksum"):
        store.verify(root)


def test_store_text_to_text_with_tokenizer_file(tmp_path: Path) -> None:
    manifest = _text_manifest(
        image_size=0, source_channels=0, source_kind="text", tokenizer="tok.model"
    )
    split = _text_split(2) | {"source": ["hello", "good morning"]}
    root = store.write_dataset(
        tmp_path / "d", manifest, {"train": split}, extra_files={"tok.model": b"model bytes"}
    )
    manifest = store.verify(root)
    assert "tok.model" in manifest.files and "train.texts.json" in manifest.files
    assert store.tokenizer_path(root) == root / "tok.model"
    data = store.load_split(root, "train")
    assert data["source"] == ["hello", "good morning"] and "target" in data
    assert set(json.loads((root / "train.texts.json").read_text())) == {
        "source",
        "target",
        "references",
    }
    with pytest.raises(DataError, match="tokenizer.*not written"):
        store.write_dataset(tmp_path / "e", store.Manifest(**vars(manifest)), {"train": split})


def test_store_reads_image_manifests_without_kind_fields(tmp_path: Path) -> None:
    manifest = store.Manifest(name="img", image_size=8, source_channels=1, target_channels=3)
    split = {
        "source": torch.zeros(2, 1, 8, 8, dtype=torch.uint8),
        "target": torch.zeros(2, 3, 8, 8, dtype=torch.uint8),
        "label": torch.zeros(2, dtype=torch.int64),
        "domain": torch.zeros(2, dtype=torch.int64),
    }
    root = store.write_dataset(tmp_path / "d", manifest, {"train": split})
    raw = json.loads((root / store.MANIFEST).read_text())
    for key in ("source_kind", "target_kind", "tokenizer"):
        del raw[key]
    raw["format_version"] = 1
    (root / store.MANIFEST).write_text(json.dumps(raw))
    old = store.verify(root)
    assert (old.source_kind, old.target_kind, old.tokenizer) == ("image", "image", "")
    assert set(store.load_split(root, "train")) == set(store.SPLIT_KEYS)
    assert not list(root.glob("*.texts.json"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"target": ["a", "b"]}, r"target must be a list of 3 strings, got 2 rows"),
        ({"target": ["a", "  ", "c"]}, r"target\[1\] must be a non-empty string"),
        ({"target": ["a", 5, "c"]}, r"target\[1\] must be a non-empty string"),
        ({"target": torch.zeros(3, 3, 8, 8, dtype=torch.uint8)}, r"target is text.*tensor"),
        ({"source": ["a", "b", "c"]}, r"source is an image.*list was given"),
        ({"references": [["a"], ["b"]]}, r"references must be a list of 3 lists"),
        ({"references": [["a"], [], ["c"]]}, r"references\[1\] must be a non-empty list"),
        ({"references": [["a"], [""], ["c"]]}, r"references\[1\] holds ''"),
        ({"label": torch.zeros(4, dtype=torch.int64)}, r"source has 3 rows, label has 4"),
    ],
)
def test_store_rejects_bad_text_splits(tmp_path: Path, change: dict, message: str) -> None:
    split = _text_split() | change
    if "label" in change:
        split["domain"] = torch.zeros(4, dtype=torch.int64)
    with pytest.raises(DataError, match=message):
        store.write_dataset(tmp_path / "d", _text_manifest(), {"train": split})
    assert not (tmp_path / "d").exists()  # nothing written before validation passed


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"target_channels": 3}, r"target is text, so target_channels must be 0"),
        ({"target_kind": "audio"}, r"target_kind must be one of"),
        ({"source_kind": "text", "source_channels": 0}, r"image_size must be 0"),
        (
            {"target_kind": "image", "target_channels": 3, "tokenizer": "spm.model"},
            r"tokenizer 'spm.model' set but no side is text",
        ),
    ],
)
def test_store_rejects_contradictory_manifests(tmp_path: Path, fields: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        store.write_dataset(tmp_path / "d", _text_manifest(**fields), {})


def test_store_names_a_missing_or_damaged_texts_file(tmp_path: Path) -> None:
    root = store.write_dataset(tmp_path / "d", _text_manifest(), {"train": _text_split()})
    texts = root / "train.texts.json"
    texts.write_text('{"target": ["only one"]}')
    with pytest.raises(DataError, match=r"train\.texts\.json.*3 strings"):
        store.load_split(root, "train")
    texts.write_text("[not json")
    with pytest.raises(DataError, match=r"train\.texts\.json: damaged texts file"):
        store.load_split(root, "train")
    texts.write_text('{"source": ["x", "y", "z"]}')
    with pytest.raises(
        DataError, match=r"train\.texts\.json: damaged texts file \(no \['target'\]"
    ):
        store.load_split(root, "train")
    texts.unlink()
    with pytest.raises(DataError, match=r"train\.texts\.json is missing"):
        store.load_split(root, "train")


# --- text2emoji / emoji2text --------------------------------------------------------------------


@needs_npm
@pytest.mark.parametrize("name", ["text2emoji", "emoji2text"])
def test_emoji_text_shares_identities_split_and_artwork_with_edges2emoji(
    built: dict[str, Path], name: str
) -> None:
    manifest, edges = store.verify(built[name]), store.verify(built["edges2emoji"])
    assert manifest.classes == edges.classes and len(manifest.classes) == EMOJI_LIMIT
    assert manifest.domains == ["google", "twitter"] and manifest.image_size == 64
    assert manifest.provenance["test_emoji"] == edges.provenance["test_emoji"]
    image_side = "target" if name == "text2emoji" else "source"
    assert manifest.image_sides() == (image_side,) and manifest.tokenizer == ""
    labels = {}
    for split in ("train", "test"):
        data, ref = (
            store.load_split(built[name], split),
            store.load_split(built["edges2emoji"], split),
        )
        labels[split] = set(data["label"].tolist())
        assert labels[split] == set(ref["label"].tolist())
        # the same (emoji, vendor) has the very same artwork as edges2emoji's target
        art = {
            (int(lb), int(d)): img
            for lb, d, img in zip(ref["label"], ref["domain"], ref["target"], strict=True)
        }
        for lb, d, img in zip(data["label"], data["domain"], data[image_side], strict=True):
            assert torch.equal(img, art[(int(lb), int(d))])
    assert labels["train"] and labels["test"] and not labels["train"] & labels["test"]


@needs_npm
def test_text2emoji_rows_captions_and_references(built: dict[str, Path]) -> None:
    manifest = store.read_manifest(built["text2emoji"])
    assert (manifest.source_kind, manifest.target_kind) == ("text", "image")
    assert (manifest.source_channels, manifest.target_channels) == (0, 3)
    captions_of: dict[int, set[str]] = {}
    for split in ("train", "test"):
        data = store.load_split(built["text2emoji"], split)
        per_image: dict[tuple[int, int], list[str]] = {}
        for text, refs, lb, d in zip(
            data["source"], data["references"], data["label"], data["domain"], strict=True
        ):
            assert text in refs  # references cover the row's own caption
            assert text == text.lower() and len(text) <= emoji_text.MAX_CAPTION_CHARS
            assert " ".join(text.split()) == text
            per_image.setdefault((int(lb), int(d)), []).append(text)
            assert captions_of.setdefault(int(lb), set(refs)) == set(refs)  # one set per emoji
        # every (emoji, vendor) image appears with CAPTIONS_PER_IMAGE distinct captions (or all
        # of the emoji's captions when it has fewer)
        for (label, _), texts in per_image.items():
            expected = min(emoji_text.CAPTIONS_PER_IMAGE, len(captions_of[label]))
            assert len(texts) == len(set(texts)) == expected
        assert {d for _, d in per_image} == {0, 1}
    # the emoji's name is one of its captions
    for label, refs in captions_of.items():
        assert manifest.classes[label].lower() in refs


@needs_npm
def test_emoji2text_targets_are_names_and_references_cover_them(built: dict[str, Path]) -> None:
    manifest = store.read_manifest(built["emoji2text"])
    assert (manifest.source_kind, manifest.target_kind) == ("image", "text")
    t2e = {
        int(lb): set(refs)
        for split in ("train", "test")
        for lb, refs in zip(
            *(store.load_split(built["text2emoji"], split)[k] for k in ("label", "references")),
            strict=True,
        )
    }
    names: dict[int, set[str]] = {}
    for split in ("train", "test"):
        data = store.load_split(built["emoji2text"], split)
        assert len(data["target"]) == 2 * len(set(data["label"].tolist()))  # one row per vendor
        for text, refs, lb in zip(data["target"], data["references"], data["label"], strict=True):
            assert text in refs and manifest.classes[int(lb)].lower() in refs
            assert set(refs) <= t2e[int(lb)]  # names are a subset of text2emoji's captions
            names[int(lb)] = set(refs)
    # keyword captions ("grin, happy, smile, face") are text2emoji captions but not names
    assert all(names[lb] < t2e[lb] for lb in names)


@needs_npm
def test_emoji_text_build_is_deterministic_given_seed(
    built: dict[str, Path], tmp_path: Path
) -> None:
    again = _build("text2emoji", tmp_path / "again", limit=EMOJI_LIMIT)
    assert store.read_manifest(again).files == store.read_manifest(built["text2emoji"]).files
    other = _build("text2emoji", tmp_path / "other", limit=EMOJI_LIMIT, seed=1)
    assert store.read_manifest(other).files != store.read_manifest(built["text2emoji"]).files


@needs_npm
def test_text2emoji_seen_holds_out_captions_not_emoji(
    built: dict[str, Path], tmp_path: Path
) -> None:
    root = _build("text2emoji-seen", tmp_path / "seen", limit=EMOJI_LIMIT)
    manifest = store.verify(root)
    assert manifest.classes == store.read_manifest(built["text2emoji"]).classes
    train, test = (store.load_split(root, split) for split in ("train", "test"))
    train_captions, test_captions = set(train["source"]), set(test["source"])
    assert test_captions and not train_captions & test_captions  # no caption in both splits
    # every test emoji is seen in training (in both vendors' artwork), with other captions
    assert set(test["label"].tolist()) <= set(train["label"].tolist())
    assert len(set(train["label"].tolist())) == EMOJI_LIMIT
    assert manifest.provenance["test_captions"] == len(test_captions)
    # one held-out caption per emoji, for each vendor; it is one of the emoji's captions, and
    # no other emoji has it
    full = {
        int(lb): set(refs)
        for split in ("train", "test")
        for lb, refs in zip(
            *(store.load_split(built["text2emoji"], split)[k] for k in ("label", "references")),
            strict=True,
        )
    }
    owner = {}
    for text, lb in zip(test["source"], test["label"], strict=True):
        assert text in full[int(lb)]
        assert sum(text in caps for caps in full.values()) == 1
        assert owner.setdefault(text, int(lb)) == int(lb)
    assert len(test["source"]) == 2 * len(owner)
    # training references never show a test caption (they are the emoji's training captions)
    assert not set().union(*map(set, train["references"])) & test_captions


def test_held_out_captions_rules() -> None:
    caps = [
        emoji_text.Captions(("cat", "cat face"), ("pet, animal",)),
        emoji_text.Captions(("dog",), ()),  # one caption: stays in training only
        emoji_text.Captions(("shared", "x"), ()),
        emoji_text.Captions(("shared",), ("y, z",)),
    ]
    for seed in range(20):
        train, test = emoji_text.held_out_captions(caps, np.random.default_rng(seed))
        assert test[1] is None and train[1] == ["dog"]
        assert test[2] == "x" and train[2] == ["shared"]  # "shared" names two emoji
        assert test[3] == "y, z" and train[3] == ["shared"]
        assert test[0] in caps[0].all and test[0] not in train[0]
        assert len(train[0]) == 2


def test_caption_cleaning() -> None:
    assert emoji_text.clean_caption("  Thumbs_UP\u2019s  sign ") == "thumbs up's sign"
    long = emoji_text.clean_caption("word " * 30)
    assert len(long) <= emoji_text.MAX_CAPTION_CHARS and long.endswith("word")
    assert emoji_text.hexcode_key("2639-fe0f") == emoji_text.hexcode_key("2639") == "2639"
    groups = emoji_text._keyword_groups([f"tag{i}" for i in range(20)])
    assert len(groups) == emoji_text.MAX_KEYWORD_CAPTIONS
    assert groups[0] == "tag0, tag1, tag2, tag3"


# --- en2fr --------------------------------------------------------------------------------------


@needs_npm
@needs_catalogues
def test_en2fr_split_by_source_and_references(built: dict[str, Path]) -> None:
    root = built["en2fr"]
    manifest = store.verify(root)
    assert (manifest.source_kind, manifest.target_kind) == ("text", "text")
    assert manifest.image_size == manifest.source_channels == manifest.target_channels == 0
    assert manifest.domains == list(en2fr.MATERIALS) and manifest.tokenizer == "spm.model"
    keys = {}
    for split in ("train", "test"):
        data = store.load_split(root, split)
        keys[split] = {en2fr.source_key(s) for s in data["source"]}
        assert (data["label"] == -1).all()
        for en, fr, refs in zip(data["source"], data["target"], data["references"], strict=True):
            assert fr in refs and en.casefold() != fr.casefold()
            assert 1 <= len(en.split()) <= en2fr.MAX_WORDS
        assert len(set(zip(data["source"], data["target"], strict=True))) == len(
            data["source"]
        )  # deduplicated
    assert len(keys["train"]) + len(keys["test"]) == EN2FR_LIMIT
    assert not keys["train"] & keys["test"]
    assert len(keys["test"]) == round(EN2FR_LIMIT * en2fr.TEST_FRACTION)
    materials = manifest.provenance["materials"]
    assert set(materials) == set(en2fr.MATERIALS)
    assert all(0 < m["kept"] <= m["pairs"] for m in materials.values())
    assert manifest.provenance["catalogues"]["used"]


@needs_npm
@needs_catalogues
def test_en2fr_tokenizer_loads_and_round_trips(built: dict[str, Path]) -> None:
    import sentencepiece as spm

    root = built["en2fr"]
    model = spm.SentencePieceProcessor(model_file=str(store.tokenizer_path(root)))
    assert model.GetPieceSize() == store.read_manifest(root).provenance["tokenizer"]["vocab_size"]
    assert model.unk_id() == 0 and model.bos_id() == model.eos_id() == model.pad_id() == -1
    test = store.load_split(root, "test")
    for text in test["source"] + test["target"]:
        ids = model.encode(text)
        assert model.decode(ids) == text
    train = store.load_split(root, "train")
    pieces = sum(len(model.encode(t)) for t in train["target"])
    assert pieces < sum(len(t) for t in train["target"]) / 2  # subwords, not characters


@needs_npm
@needs_catalogues
def test_en2fr_is_deterministic_given_seed(built: dict[str, Path], tmp_path: Path) -> None:
    again = _build("en2fr", tmp_path / "again", limit=EN2FR_LIMIT)
    files = store.read_manifest(built["en2fr"]).files
    assert store.read_manifest(again).files == files  # spm.model included


def test_en2fr_split_groups_variants_of_a_source_and_follows_the_seed() -> None:
    pairs = [(f"Item {i}", f"Article {i}") for i in range(200)]
    pairs += [("Open", "Ouvrir"), ("open.", "ouvrir."), ("OPEN:", "OUVRIR :")]
    splits = {
        seed: en2fr.split_pairs(pairs, np.random.default_rng(seed), None) for seed in (0, 1, 2)
    }
    for split in splits.values():
        assert sorted(split["train"] + split["test"]) == list(range(len(pairs)))
        assert len({en2fr.source_key(pairs[i][0]) for i in split["test"]}) == 15  # 7.5% of 201
        variants = {len(pairs) - 3, len(pairs) - 2, len(pairs) - 1}
        assert variants <= set(split["train"]) or variants <= set(split["test"])
    assert splits[0]["test"] != splits[1]["test"] != splits[2]["test"]
    assert en2fr.split_pairs(pairs, np.random.default_rng(0), 20)["test"] != splits[0]["test"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("_Open", "Open"),
        ("&Save As", "Save As"),
        ("Search & Replace", "Search & Replace"),
        ("Fichier (_F)", "Fichier"),
        ("Cannot open file %s", None),
        ("%(count)d files", None),
        ("Copy {name}", None),
        ("<b>Bold</b>", None),
        ("see /etc/passwd", None),
        ("use --force to override", None),
        ("line one\nline two", None),
        ("file_name", None),
        ("123", None),
        ("word " * (en2fr.MAX_WORDS + 1), None),
    ],
)
def test_gettext_message_cleaning(text: str, expected: str | None) -> None:
    assert en2fr.clean_message(text) == expected


@needs_catalogues
def test_en2fr_names_an_empty_locale_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "locale" / "fr" / "LC_MESSAGES").mkdir(parents=True)
    monkeypatch.setenv(en2fr.LOCALE_ENV, str(tmp_path / "locale"))
    with pytest.raises(DataError, match=r"no French gettext catalogues.*locale/fr/LC_MESSAGES"):
        en2fr.catalogues()


def test_missing_text_npm_packages_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("M3DGAN_NPM_MODULES", str(tmp_path))
    with pytest.raises(DataError, match=r"emojibase-data, openmoji.*setup\.sh"):
        build.build_dataset("text2emoji", tmp_path / "out", progress=False)
    with pytest.raises(DataError, match=r"npm package\(s\) emojibase-data not found"):
        build.build_dataset("en2fr", tmp_path / "out", progress=False)


@needs_npm
@needs_catalogues
def test_rebuild_removes_files_the_old_manifest_listed(built: dict[str, Path]) -> None:
    root = built["en2fr"]
    copy = root.parent / "copy"
    copy.mkdir()
    for path in root.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    store.clear_dataset_files(copy)
    assert not list(copy.iterdir())
