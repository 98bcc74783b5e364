"""Readers and fetchers of the published text data sets, on small fixtures in the real formats.

Each fixture is built at test time with the published layout: CUB-200-2011's tables and
``images/<class folder>/<file>.jpg`` plus Reed et al.'s ``text_c10`` descriptions (two tgz
archives), MS-COCO's captions JSON and photo folders (three zip archives), and WMT'14's Moses
parallel text and newstest2014 SGML (two tgz archives). They are served from 127.0.0.1, fetched,
converted, and the resulting data sets are checked row by row.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import torch
from http_server import serve
from PIL import Image

from m3dgan import paths
from m3dgan.cli import main
from m3dgan.data import build, store
from m3dgan.data.formats import coco, cub, fetch, wmt
from m3dgan.errors import ConfigError, DataError

pytestmark = pytest.mark.usefixtures("isolated_env")

# --- fixture material ----------------------------------------------------------------------------

# CUB: three species, each drawn in its own colour, photos of several sizes and aspect ratios.
CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
CUB_COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
CUB_SIZES = [(80, 60), (50, 90), (64, 64)]
CUB_PER_CLASS = 3  # photos per species; the first of each is a test photo
BIRD_BOX = (4, 6, 20, 16)  # x, y, w, h of a white "bird" in the top-left corner of every photo


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _cub_photo(label: int, index: int) -> bytes:
    width, height = CUB_SIZES[index % len(CUB_SIZES)]
    array = np.empty((height, width, 3), np.uint8)
    array[:] = CUB_COLOURS[label]
    x, y, w, h = BIRD_BOX
    array[y : y + h, x : x + w] = 255
    return _jpeg(array)


def _cub_photos() -> list[tuple[int, str, int, bool]]:
    """(image id, images.txt path, class index, is train) in CUB's order: class by class."""
    rows = []
    for label, folder in enumerate(CUB_CLASSES):
        stem = folder.split(".", 1)[1].replace("_", " ").title().replace(" ", "_")
        for i in range(CUB_PER_CLASS):
            image_id = len(rows) + 1
            rows.append(
                (image_id, f"{folder}/{stem}_{i + 1:04d}_{796100 + image_id}.jpg", label, i > 0)
            )
    return rows


def _description(image_id: int, k: int) -> str:
    return f"this bird number {image_id} has a pointed beak and grey wings, view {k}."


def _tgz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(
                name, data, zipfile.ZIP_STORED if name.endswith(".jpg") else zipfile.ZIP_DEFLATED
            )
    return buffer.getvalue()


def cub_files() -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(CUB_200_2011.tgz members, cvpr2016_cub.tar.gz members), as the real archives lay them out."""
    photos = _cub_photos()
    root = "CUB_200_2011"
    table = lambda lines: ("\n".join(lines) + "\n").encode()  # noqa: E731
    images = {
        f"{root}/README": b"The Caltech-UCSD Birds-200-2011 Dataset\n",
        f"{root}/images.txt": table(f"{i} {p}" for i, p, _, _ in photos),
        f"{root}/classes.txt": table(f"{k + 1} {c}" for k, c in enumerate(CUB_CLASSES)),
        f"{root}/image_class_labels.txt": table(f"{i} {label + 1}" for i, _, label, _ in photos),
        f"{root}/train_test_split.txt": table(f"{i} {int(t)}" for i, _, _, t in photos),
        f"{root}/bounding_boxes.txt": table(
            f"{i} {' '.join(f'{v:.1f}' for v in BIRD_BOX)}" for i, _, _, _ in photos
        ),
        f"{root}/attributes/certainties.txt": b"1 not visible\n2 guessing\n",
    }
    for i, path, label, _ in photos:
        images[f"{root}/images/{path}"] = _cub_photo(label, i)
    text = {"cvpr2016_cub/trainvalclasses.txt": table(CUB_CLASSES[1:])}
    for i, path, _, _ in photos:
        stem = path.removesuffix(".jpg")
        text[f"cvpr2016_cub/text_c10/{stem}.txt"] = table(_description(i, k) for k in range(10))
    for folder in CUB_CLASSES:  # Torch files beside the text folders: never unpacked
        text[f"cvpr2016_cub/text_c10/{folder}.t7"] = b"\x00T7 binary"
    return images, text


COCO_TRAIN = {  # image id -> (file size, grey?, captions); 13 has no caption, 25 has six
    9: (
        (64, 48),
        False,
        ["Closeup of bins of food that include broccoli and bread."]
        + [f"c9 {k}" for k in range(4)],
    ),
    25: ((40, 60), True, [f"A giraffe eating from a tall tree {k}. " for k in range(6)]),
    13: ((50, 50), False, []),
    30: (
        (70, 50),
        False,
        ["A flower vase\nsitting on a porch  stand."] + [f"c30 {k}" for k in range(4)],
    ),
}
COCO_VAL = {
    42: (
        (60, 60),
        False,
        ["A bicycle replica with a clock as the front wheel."] + [f"v42 {k}" for k in range(4)],
    ),
    73: ((48, 64), False, [f"A motorcycle parked in a parking space {k}" for k in range(5)]),
}


def _coco_colour(image_id: int) -> tuple[int, int, int]:
    return (image_id * 7 % 256, image_id * 13 % 256, image_id * 29 % 256)


def _coco_photo(image_id: int, size: tuple[int, int], grey: bool) -> bytes:
    array = np.empty((size[1], size[0], 3), np.uint8)
    array[:] = _coco_colour(image_id)
    if grey:
        buffer = io.BytesIO()
        Image.fromarray(array).convert("L").save(buffer, format="JPEG", quality=95)
        return buffer.getvalue()
    return _jpeg(array)


def _captions_json(split: str, table: dict) -> bytes:
    images, notes = [], []
    for image_id, (size, _, captions) in table.items():
        images.append(
            {
                "license": 3,
                "file_name": f"COCO_{split}2014_{image_id:012d}.jpg",
                "coco_url": f"http://images.cocodataset.org/{split}2014/COCO_{split}2014_{image_id:012d}.jpg",
                "height": size[1],
                "width": size[0],
                "date_captured": "2013-11-14 16:28:13",
                "id": image_id,
            }
        )
        for caption in captions:
            notes.append({"image_id": image_id, "id": 600000 + len(notes), "caption": caption})
    info = {"description": "This is stable 1.0 version of the 2014 MS COCO dataset.", "year": 2014}
    return json.dumps(
        {"info": info, "images": images, "licenses": [], "annotations": notes}
    ).encode()


def coco_files() -> dict[str, dict[str, bytes]]:
    """Members of annotations_trainval2014.zip, train2014.zip and val2014.zip."""
    out = {
        "annotations": {
            "annotations/captions_train2014.json": _captions_json("train", COCO_TRAIN),
            "annotations/captions_val2014.json": _captions_json("val", COCO_VAL),
            "annotations/instances_val2014.json": b'{"images": [], "annotations": []}',
        }
    }
    for split, table in (("train", COCO_TRAIN), ("val", COCO_VAL)):
        out[split] = {f"{split}2014/": b""}
        for image_id, (size, grey, _) in table.items():
            name = f"{split}2014/COCO_{split}2014_{image_id:012d}.jpg"
            out[split][name] = _coco_photo(image_id, size, grey)
    return out


# Europarl: line 3 is an untranslated (empty) speech; line 5 holds a Unicode line separator that
# str.splitlines() would break on.
EUROPARL_EN = [
    "Resumption of the session",
    "I declare resumed the session of the European Parliament.",
    "",
    "Please rise, then, for this minute' s silence.",
    "The House rose\u2028and observed a minute' s silence",
    "Madam President, on a point of order.",
]
EUROPARL_FR = [
    "Reprise de la session",
    "Je déclare reprise la session du Parlement européen.",
    "(Le Parlement, debout, observe une minute de silence)",
    "Je vous invite à vous lever pour cette minute de silence.",
    "Le Parlement, debout,\u2028observe une minute de silence",
    "Madame la Présidente, c'est une motion de procédure.",
]
NEWSTEST = [  # (docid, English, French)
    (
        "1012-bbc",
        "Spectacular Wingsuit Jump Over Bogota",
        "Spectaculaire saut en wingsuit au-dessus de Bogota",
    ),
    (
        "1012-bbc",
        "Sportsman Jhonathan Florez jumped from a helicopter.",
        "Le sportif Jhonathan Florez a sauté d'un hélicoptère.",
    ),
    (
        "1017-lenta",
        "Fish &amp; chips &quot;today&quot;",
        "Poisson &amp; frites &quot;aujourd'hui&quot;",
    ),
]


def _sgm(side: str, lang: str) -> bytes:
    tag = "srcset" if side == "src" else "refset"
    lines = [f'<{tag} setid="newstest2014" srclang="any" trglang="{lang}">']
    doc = None
    for seg, (docid, english, french) in enumerate(NEWSTEST, 1):
        if docid != doc:
            if doc is not None:
                lines += ["</p>", "</doc>"]
            lines += [f'<doc sysid="ref" docid="{docid}" genre="news" origlang="en">', "<p>"]
            doc, seg = docid, 1
        lines.append(f'<seg id="{seg}">{english if lang == "en" else french}</seg>')
    lines += ["</p>", "</doc>", f"</{tag}>"]
    return ("\n".join(lines) + "\n").encode()


def wmt_files() -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(training-parallel-europarl-v7.tgz members, test-full.tgz members)."""
    text = lambda lines: ("\n".join(lines) + "\n").encode()  # noqa: E731
    train = {
        "training/europarl-v7.fr-en.en": text(EUROPARL_EN),
        "training/europarl-v7.fr-en.fr": text(EUROPARL_FR),
        "training/europarl-v7.de-en.en": text(["Resumption of the session"]),
        "training/europarl-v7.de-en.de": text(["Wiederaufnahme der Sitzungsperiode"]),
    }
    test = {
        "test-full/newstest2014-fren-src.en.sgm": _sgm("src", "en"),
        "test-full/newstest2014-fren-ref.fr.sgm": _sgm("ref", "fr"),
        "test-full/newstest2014-deen-src.en.sgm": _sgm("src", "en"),
    }
    return train, test


def _unpack(members: dict[str, bytes], folder: Path) -> Path:
    for name, data in members.items():
        if name.endswith("/"):
            continue
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


# --- CUB ---------------------------------------------------------------------------------------


def test_fetch_cub_downloads_and_converts(tmp_path: Path) -> None:
    images, text = cub_files()
    served = {"/cub/CUB_200_2011.tgz": _tgz(images), "/reed/cvpr2016_cub.tar.gz": _tgz(text)}
    with serve(served) as server:
        urls = {
            "images": server.base_url + "/cub/CUB_200_2011.tgz",
            "text": server.base_url + "/reed/cvpr2016_cub.tar.gz",
        }
        out = fetch.fetch("cub", tmp_path / "dl", url=urls, image_size=16, progress=False)
    assert out == paths.dataset_dir("cub") == build.ensure_dataset("cub")
    manifest = store.verify(out)
    assert (manifest.source_kind, manifest.target_kind) == ("text", "image")
    assert (manifest.source_channels, manifest.target_channels, manifest.image_size) == (0, 3, 16)
    assert manifest.classes == CUB_CLASSES
    n_train = len(CUB_CLASSES) * (CUB_PER_CLASS - 1)
    assert manifest.splits == {"train": n_train * 10, "test": len(CUB_CLASSES)}
    assert (
        manifest.provenance["images"]["archive_sha256"]
        == hashlib.sha256(served["/cub/CUB_200_2011.tgz"]).hexdigest()
    )
    photos = {i: (label, train) for i, _, label, train in _cub_photos()}
    for split in ("train", "test"):
        data = store.load_split(out, split)
        assert data["target"].shape == (manifest.splits[split], 3, 16, 16)
        for row, (source, refs) in enumerate(zip(data["source"], data["references"], strict=True)):
            image_id = int(source.split()[3])
            label, train = photos[image_id]
            assert train == (split == "train")
            assert refs == [_description(image_id, k) for k in range(10)]
            assert source in refs
            assert int(data["label"][row]) == label
            # centre crop of a photo in its species' colour (the white bird sits in a corner)
            centre = data["target"][row, :, 8, 8].float()
            assert (centre - torch.tensor(CUB_COLOURS[label])).abs().max() < 30
        if split == "test":  # one row per photo: its first description
            assert all(s.endswith("view 0.") for s in data["source"])
    assert not list((tmp_path / "dl").glob("*.extracted"))
    # the same options again: the converted folder is reused, no network needed (server is gone)
    written = (out / store.MANIFEST).stat().st_mtime_ns
    assert fetch.fetch("cub", tmp_path / "dl", url=urls, image_size=16, progress=False) == out
    assert (out / store.MANIFEST).stat().st_mtime_ns == written


def test_cub_options_bbox_crop_limit_and_texts_per_image(tmp_path: Path) -> None:
    images, text = cub_files()
    root_images, root_text = _unpack(images, tmp_path / "a"), _unpack(text, tmp_path / "b")
    classes, splits = cub.read_cub(
        root_images,
        root_text,
        image_size=16,
        crop="bbox",
        limit=2,
        texts_per_image=3,
        progress=False,
    )
    assert len(classes) == 3
    assert len(splits["train"]["source"]) == 2 * 3 and len(splits["test"]["source"]) == 2
    # the square around the bird's box is mostly bird (white); the centre crop showed the species colour
    assert splits["train"]["target"][:, :, 8, 8].min() > 200


def test_cub_malformed_inputs_are_named(tmp_path: Path) -> None:
    images, text = cub_files()
    good_images, good_text = _unpack(images, tmp_path / "i"), _unpack(text, tmp_path / "t")
    split_file = good_images / "CUB_200_2011" / "train_test_split.txt"
    original = split_file.read_text()
    lines = original.splitlines()
    lines[3] = "4"  # the split column of image 4 is missing
    split_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"train_test_split\.txt, line 4: expected 2 columns"):
        cub.read_cub(good_images, good_text, progress=False)
    split_file.write_text(original)
    first = _cub_photos()[0][1]
    (good_text / "cvpr2016_cub" / "text_c10" / first.replace(".jpg", ".txt")).unlink()
    with pytest.raises(DataError, match=r"Black_Footed_Albatross_0001_796101\.txt is missing"):
        cub.read_cub(good_images, good_text, progress=False)
    _unpack(text, tmp_path / "t")
    broken = good_images / "CUB_200_2011" / "images" / first
    broken.write_bytes(broken.read_bytes()[:100])
    with pytest.raises(DataError, match=r"0001_796101\.jpg: unreadable or corrupt image"):
        cub.read_cub(good_images, good_text, progress=False)


# --- COCO --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coco_archives() -> dict[str, bytes]:
    return {key: _zip(members) for key, members in coco_files().items()}


def _coco_urls(server, names=("annotations", "train", "val")) -> dict[str, str]:
    files = {
        "annotations": "annotations_trainval2014.zip",
        "train": "train2014.zip",
        "val": "val2014.zip",
    }
    return {key: f"{server.base_url}/{files[key]}" for key in names}


def test_fetch_coco_captions(tmp_path: Path, coco_archives: dict[str, bytes], monkeypatch) -> None:
    served = {
        "/annotations_trainval2014.zip": coco_archives["annotations"],
        "/train2014.zip": coco_archives["train"],
        "/val2014.zip": coco_archives["val"],
    }
    with serve(served) as server:
        monkeypatch.setenv(fetch.MIRROR_ENV, server.base_url + "/")  # every archive from a mirror
        out = fetch.fetch("coco-captions", tmp_path, image_size=8, progress=False)
    manifest = store.verify(out)
    assert (manifest.source_kind, manifest.target_kind) == ("image", "text")
    assert manifest.provenance["train"]["url"] == server.base_url + "/train2014.zip"
    captioned = {i: t for i, t in COCO_TRAIN.items() if t[2]}
    n_train = sum(len(t[2]) for t in captioned.values())
    assert manifest.splits == {"train": n_train, "test": len(COCO_VAL)}
    train = store.load_split(out, "train")
    assert train["source"].shape == (n_train, 3, 8, 8)
    assert "A flower vase sitting on a porch stand." in train["target"]  # whitespace normalised
    by_captions = {tuple(" ".join(c.split()) for c in t[2]): i for i, t in captioned.items()}
    for row, refs in enumerate(train["references"]):
        assert train["target"][row] in refs
        image_id = by_captions[tuple(refs)]
        colour = _coco_colour(image_id)
        if not captioned[image_id][1]:  # colour photos keep their colour; grey ones become RGB grey
            assert np.abs(train["source"][row, :, 4, 4].numpy().astype(int) - colour).max() < 20
        else:
            pixel = train["source"][row, :, 4, 4].tolist()
            assert max(pixel) - min(pixel) <= 2
    test = store.load_split(out, "test")
    assert test["target"] == [COCO_VAL[42][2][0], COCO_VAL[73][2][0].strip()]
    assert [len(r) for r in test["references"]] == [5, 5]
    # a second fetch with other options converts the kept archives again, without downloading
    again = fetch.fetch(
        "coco-captions",
        tmp_path,
        url=_coco_urls(server),
        image_size=8,
        limit=1,
        texts_per_image=2,
        progress=False,
    )
    assert store.read_manifest(again).splits == {"train": 2, "test": 1}


def test_coco_malformed_inputs_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"captions_val2014\.json: no 'annotations' list"):
        coco.parse_captions(b'{"images": []}', "annotations/captions_val2014.json")
    with pytest.raises(DataError, match=r"annotations\[0\] refers to image 5"):
        coco.parse_captions(
            b'{"images": [], "annotations": [{"image_id": 5, "caption": "x"}]}', "c.json"
        )
    with pytest.raises(DataError, match=r"c\.json: not valid JSON"):
        coco.parse_captions(b"{", "c.json")
    members = coco_files()
    (tmp_path / "ann.zip").write_bytes(_zip(members["annotations"]))
    bad = dict(members["val"])
    name = "val2014/COCO_val2014_000000000073.jpg"
    bad[name] = bad[name][:120]
    (tmp_path / "val.zip").write_bytes(_zip(bad))
    with pytest.raises(
        DataError, match=r"COCO_val2014_000000000073\.jpg: unreadable or corrupt image"
    ):
        coco.read_split(tmp_path / "ann.zip", tmp_path / "val.zip", "test", progress=False)
    del bad[name]
    (tmp_path / "val.zip").write_bytes(_zip(bad))
    with pytest.raises(
        DataError, match=r"COCO_val2014_000000000073\.jpg \(image 73\) is not in it"
    ):
        coco.read_split(tmp_path / "ann.zip", tmp_path / "val.zip", "test", progress=False)
    (tmp_path / "val.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="damaged or not a zip"):
        coco.read_split(tmp_path / "ann.zip", tmp_path / "val.zip", "test", progress=False)


def test_fetch_names_a_captions_file_without_annotations(tmp_path: Path, coco_archives) -> None:
    members = coco_files()["annotations"]
    members["annotations/captions_train2014.json"] = b'{"info": {}, "images": []}'
    served = {
        "/a.zip": _zip(members),
        "/t.zip": coco_archives["train"],
        "/v.zip": coco_archives["val"],
    }
    with serve(served) as server:
        urls = {
            "annotations": server.base_url + "/a.zip",
            "train": server.base_url + "/t.zip",
            "val": server.base_url + "/v.zip",
        }
        with pytest.raises(DataError, match=r"captions_train2014\.json: no 'annotations' list"):
            fetch.fetch("coco-captions", tmp_path, url=urls, progress=False)
    assert not (paths.dataset_dir("coco-captions") / store.MANIFEST).exists()


# --- WMT'14 ------------------------------------------------------------------------------------


def test_fetch_wmt_from_the_command_line(tmp_path: Path, capsys) -> None:
    train, test = wmt_files()
    served = {"/training-parallel-europarl-v7.tgz": _tgz(train), "/test-full.tgz": _tgz(test)}
    with serve(served) as server:
        args = [
            "data",
            "fetch",
            "wmt14-en-fr",
            "--url",
            f"train={server.base_url}/training-parallel-europarl-v7.tgz",
        ]
        args += ["--url", f"test={server.base_url}/test-full.tgz", "--option", "vocab_size=60"]
        assert main(args) == 0
    out = paths.dataset_dir("wmt14-en-fr")
    assert str(out) in capsys.readouterr().out
    assert build.ensure_dataset("wmt14-en-fr") == out
    manifest = store.verify(out)
    assert (manifest.source_kind, manifest.target_kind, manifest.image_size) == ("text", "text", 0)
    assert manifest.tokenizer == "spm.model" and "spm.model" in manifest.files
    assert manifest.provenance["dropped_empty_pairs"] == 1
    train_rows = store.load_split(out, "train")
    expected = [  # the Unicode line separator inside line 5 is a space, not a line break
        (" ".join(e.split()), " ".join(f.split()))
        for e, f in zip(EUROPARL_EN, EUROPARL_FR, strict=True)
        if e and f
    ]
    assert list(zip(train_rows["source"], train_rows["target"], strict=True)) == expected
    assert train_rows["references"] == [[f] for _, f in expected]
    test_rows = store.load_split(out, "test")
    assert test_rows["source"][2] == 'Fish & chips "today"'  # SGML entities decoded
    assert test_rows["target"] == [
        f.replace("&amp;", "&").replace("&quot;", '"') for _, _, f in NEWSTEST
    ]
    model = spm.SentencePieceProcessor(model_file=str(store.tokenizer_path(out)))
    sentence = "Je déclare reprise la session."
    assert model.decode(model.encode(sentence)) == sentence
    assert 0 < model.get_piece_size() <= 60


def test_wmt_limit_and_lowercase(tmp_path: Path) -> None:
    train, test = wmt_files()
    splits, facts = wmt.read_wmt(
        _unpack(train, tmp_path / "tr"), _unpack(test, tmp_path / "te"), limit=3, lowercase=True
    )
    assert splits["train"]["source"] == [s.lower() for s in EUROPARL_EN if s][:3]
    assert facts["train_corpora"] == ["europarl-v7.fr-en"]
    assert splits["test"]["target"][0] == NEWSTEST[0][2].lower()


def test_wmt_malformed_inputs_are_named(tmp_path: Path) -> None:
    train, test = wmt_files()
    train["training/europarl-v7.fr-en.fr"] += b"Une ligne de trop\n"
    folder = _unpack(train, tmp_path / "tr")
    with pytest.raises(
        DataError, match=r"europarl-v7\.fr-en\.en has 6 lines but .*europarl-v7\.fr-en\.fr has 7"
    ):
        wmt.read_parallel(
            folder / "training/europarl-v7.fr-en.en", folder / "training/europarl-v7.fr-en.fr"
        )
    test["test-full/newstest2014-fren-ref.fr.sgm"] = _sgm("ref", "fr").replace(
        b'<seg id="2">', b'<seg id="9">'
    )
    tfolder = _unpack(test, tmp_path / "te")
    with pytest.raises(DataError, match=r"hold different segments .*doc '1012-bbc' seg 2"):
        wmt.read_test(
            tfolder / "test-full" / wmt.TEST_SOURCE, tfolder / "test-full" / wmt.TEST_REFERENCE
        )
    (tmp_path / "x.sgm").write_bytes(b"no segments here\n")
    with pytest.raises(DataError, match=r"x\.sgm: no <seg"):
        wmt.read_sgm(tmp_path / "x.sgm")
    (tmp_path / "bad.en").write_bytes(b"ok\n\xff\xfe broken\n")
    (tmp_path / "bad.fr").write_bytes(b"ok\nok\n")
    with pytest.raises(DataError, match=r"bad\.en, line 2: not UTF-8"):
        wmt.read_parallel(tmp_path / "bad.en", tmp_path / "bad.fr")


# --- the fetch machinery for several archives ------------------------------------------------


def test_fetchable_names_match_the_published_table() -> None:
    assert set(build.FETCHABLE) == set(fetch.PUBLISHED)


def test_overrides_and_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cub has 2 archives \(images, text\).*KEY=VALUE"):
        fetch.fetch("cub", tmp_path, url="http://127.0.0.1:9/x.tgz", progress=False)
    with pytest.raises(ConfigError, match="has no archive pictures"):
        fetch.fetch("cub", tmp_path, url={"pictures": "http://127.0.0.1:9/x"}, progress=False)
    with pytest.raises(ConfigError, match="has no option colour"):
        fetch.fetch("wmt14-en-fr", tmp_path, colour="red", progress=False)
    assert (
        fetch.parse_keyed(["https://drive.example/uc?id=1&export=download"])
        == "https://drive.example/uc?id=1&export=download"
    )
    assert fetch.parse_keyed(["text=https://x/y?id=1", "images=http://z"]) == {
        "text": "https://x/y?id=1",
        "images": "http://z",
    }
    assert fetch.parse_options(["limit=3", "lowercase=true", "crop=bbox"]) == {
        "limit": 3,
        "lowercase": True,
        "crop": "bbox",
    }
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        fetch.parse_options(["lowercase"])


def test_command_line_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert main(["data", "fetch", "cub", "--url", "http://127.0.0.1:9/CUB_200_2011.tgz"]) == 2
    assert "error: cub has 2 archives" in capsys.readouterr().err
    assert main(["data", "fetch", "wmt14-en-fr", "--option", "colour=red"]) == 2
    assert "has no option colour" in capsys.readouterr().err


def test_a_web_page_instead_of_an_archive_is_refused(tmp_path: Path) -> None:
    images, _ = cub_files()
    page = (
        b"<!DOCTYPE html><html><body>Google Drive can't scan this file for viruses.</body></html>"
    )
    with serve({"/i.tgz": _tgz(images), "/t": page}) as server:
        urls = {"images": server.base_url + "/i.tgz", "text": server.base_url + "/t"}
        with pytest.raises(DataError, match=r"answered with a web page.*cvpr2016_cub\.tar\.gz"):
            fetch.fetch("cub", tmp_path, url=urls, progress=False)
    assert not (tmp_path / "cvpr2016_cub.tar.gz").exists()
    assert (tmp_path / "CUB_200_2011.tgz").is_file()  # the good archive is kept for the next try


def test_unsafe_zip_members_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    archive.write_bytes(_zip({"../evil.txt": b"x"}))
    with pytest.raises(DataError, match="unsafe member"):
        fetch.safe_extract(archive, tmp_path / "x")
    assert not (tmp_path / "evil.txt").exists()
    archive.write_bytes(_zip({"keep/a.txt": b"a", "skip/b.txt": b"b"}))
    fetch.safe_extract(archive, tmp_path / "y", keep=lambda name: name.startswith("keep/"))
    assert (tmp_path / "y/keep/a.txt").read_bytes() == b"a" and not (tmp_path / "y/skip").exists()
