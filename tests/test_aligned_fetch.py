"""The pix2pix aligned reader and the resumable fetcher, on tiny real-format fixtures.

The fixture archive has the layout of the published ``edges2shoes.tar.gz``: ``<name>/train/*.jpg``
and ``<name>/val/*.jpg``, each JPEG an A|B pair. It is served from 127.0.0.1 with Range support.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from http_server import serve
from PIL import Image

from m3dgan import paths
from m3dgan.data import build, store
from m3dgan.data.formats import aligned, fetch
from m3dgan.errors import DataError

SIDE = 32  # pixel size of each half in the fixture
# A is dark (source), B is bright (target): a conversion that swaps halves fails the checks.
A_VALUE, B_VALUE = 40, 210


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("M3DGAN_HOME", str(tmp_path / "home"))


def _pair_jpeg(seed: int, side: int = SIDE) -> bytes:
    rng = np.random.default_rng(seed)
    a = np.full((side, side, 3), A_VALUE, np.uint8) + rng.integers(
        0, 10, (side, side, 3), dtype=np.uint8
    )
    b = np.full((side, side, 3), B_VALUE, np.uint8) + rng.integers(
        0, 10, (side, side, 3), dtype=np.uint8
    )
    buffer = io.BytesIO()
    Image.fromarray(np.concatenate([a, b], axis=1)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _make_folder(root: Path, counts: dict[str, int]) -> Path:
    for split, n in counts.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / split / f"{i + 1}_AB.jpg").write_bytes(_pair_jpeg(hash((split, i)) % 1000))
    return root


def _make_archive(name: str, counts: dict[str, int]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for split, n in counts.items():
            for i in range(n):
                data = _pair_jpeg(i + (100 if split == "val" else 0))
                info = tarfile.TarInfo(f"{name}/{split}/{i + 1}_AB.jpg")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _check_converted(root: Path, sizes: dict[str, int], image_size: int) -> None:
    manifest = store.verify(root)
    assert manifest.splits == sizes
    assert (manifest.source_channels, manifest.target_channels) == (3, 3)
    for split, n in sizes.items():
        data = store.load_split(root, split)
        assert data["source"].shape == (n, 3, image_size, image_size)
        assert data["target"].shape == (n, 3, image_size, image_size)
        assert data["source"].dtype == data["target"].dtype == torch.uint8
        assert torch.all(data["label"] == -1) and torch.all(data["domain"] == -1)
        # left half is the source, right half the target
        assert abs(data["source"].float().mean().item() - A_VALUE - 4.5) < 8
        assert abs(data["target"].float().mean().item() - B_VALUE - 4.5) < 8


# --- aligned reader ---------------------------------------------------------------------------


def test_convert_aligned_val_becomes_test(tmp_path: Path) -> None:
    src = _make_folder(tmp_path / "edges2tiny", {"train": 5, "val": 3})
    out = aligned.convert_aligned(src, tmp_path / "out", image_size=16, progress=False)
    _check_converted(out, {"train": 5, "test": 3}, 16)
    assert store.read_manifest(out).provenance["split_folders"] == {"train": "train", "test": "val"}


def test_convert_aligned_keeps_val_when_test_exists(tmp_path: Path) -> None:
    src = _make_folder(tmp_path / "night2tiny", {"train": 3, "val": 2, "test": 2})
    out = aligned.convert_aligned(src, tmp_path / "out", image_size=SIDE, limit=2, progress=False)
    _check_converted(out, {"train": 2, "test": 2, "val": 2}, SIDE)


def test_corrupt_jpeg_is_named_or_skipped(tmp_path: Path) -> None:
    src = _make_folder(tmp_path / "bad", {"train": 3, "val": 1})
    broken = src / "train" / "2_AB.jpg"
    broken.write_bytes(broken.read_bytes()[:200])  # truncated JPEG
    with pytest.raises(DataError, match="2_AB.jpg"):
        aligned.convert_aligned(src, tmp_path / "out", image_size=16, progress=False)
    with pytest.warns(UserWarning, match="2_AB.jpg"):
        out = aligned.convert_aligned(
            src, tmp_path / "out", image_size=16, skip_bad=True, progress=False
        )
    assert store.verify(out).splits == {"train": 2, "test": 1}
    assert list(store.read_manifest(out).provenance["skipped"]) == [str(broken)]


def test_wrong_aspect_is_a_data_error(tmp_path: Path) -> None:
    src = _make_folder(tmp_path / "aspect", {"train": 2})
    Image.new("RGB", (48, 32)).save(src / "train" / "3_AB.jpg")
    with pytest.raises(DataError, match=r"3_AB\.jpg.*twice the height"):
        aligned.convert_aligned(src, tmp_path / "out", image_size=16, progress=False)


def test_folder_without_images_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        aligned.convert_aligned(tmp_path / "empty", tmp_path / "out", progress=False)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "1.jpg").write_bytes(_pair_jpeg(0))
    with pytest.raises(DataError, match="no train/"):
        aligned.convert_aligned(tmp_path / "photos", tmp_path / "out2", progress=False)


def test_ensure_dataset_converts_an_aligned_folder_once(tmp_path: Path) -> None:
    src = _make_folder(tmp_path / "facadesish", {"train": 2, "val": 1})
    out = build.ensure_dataset(src, progress=False)
    assert out == paths.dataset_dir("facadesish")
    first = (out / store.MANIFEST).stat().st_mtime_ns
    assert build.ensure_dataset(src, progress=False) == out
    assert (out / store.MANIFEST).stat().st_mtime_ns == first
    assert build.ensure_dataset(out) == out  # a built folder is used as is


# --- fetcher -----------------------------------------------------------------------------------

COUNTS = {"train": 4, "val": 2}


@pytest.fixture(scope="module")
def archive_bytes() -> bytes:
    return _make_archive("edges2shoes", COUNTS)


def test_fetch_downloads_verifies_and_converts(tmp_path: Path, archive_bytes: bytes) -> None:
    digest = hashlib.sha256(archive_bytes).hexdigest()
    with serve({"/edges2shoes.tar.gz": archive_bytes}) as server:
        out = fetch.fetch(
            "edges2shoes",
            tmp_path / "dl",
            url=server.base_url + "/edges2shoes.tar.gz",
            expected_sha256=digest,
            image_size=SIDE,
            progress=False,
        )
    assert out == paths.dataset_dir("edges2shoes")
    _check_converted(out, {"train": 4, "test": 2}, SIDE)
    provenance = store.read_manifest(out).provenance
    assert provenance["archive_sha256"] == digest
    assert (tmp_path / "dl" / "edges2shoes.tar.gz").read_bytes() == archive_bytes
    assert not (tmp_path / "dl" / "edges2shoes.extracted").exists()
    assert build.ensure_dataset("edges2shoes") == out


def test_fetch_without_pinned_digest_records_it(tmp_path: Path, archive_bytes: bytes) -> None:
    with serve({"/a.tar.gz": archive_bytes}) as server:
        fetch.fetch("edges2shoes", tmp_path, url=server.base_url + "/a.tar.gz", progress=False)
    record = (tmp_path / "edges2shoes.sha256").read_text().split()
    assert record[0] == hashlib.sha256(archive_bytes).hexdigest()


def test_sha256_mismatch_fails_cleanly(tmp_path: Path, archive_bytes: bytes) -> None:
    with (
        serve({"/e.tar.gz": archive_bytes}) as server,
        pytest.raises(DataError, match="does not match"),
    ):
        fetch.fetch(
            "edges2shoes",
            tmp_path,
            url=server.base_url + "/e.tar.gz",
            expected_sha256="0" * 64,
            progress=False,
        )
    assert not (tmp_path / "edges2shoes.tar.gz").exists()
    assert not (tmp_path / "edges2shoes.tar.gz.part").exists()
    assert not (paths.dataset_dir("edges2shoes") / store.MANIFEST).exists()


@pytest.mark.parametrize("honour_range", [True, False])
def test_download_resumes_from_a_partial_file(
    tmp_path: Path, archive_bytes: bytes, honour_range: bool
) -> None:
    part = tmp_path / "edges2shoes.tar.gz.part"
    half = len(archive_bytes) // 2
    part.write_bytes(archive_bytes[:half])
    with serve({"/e.tar.gz": archive_bytes}, honour_range=honour_range) as server:
        fetch.download(
            server.base_url + "/e.tar.gz", tmp_path / "edges2shoes.tar.gz", progress=False
        )
    assert server.ranges == [f"bytes={half}-"]  # the client asked to resume
    assert (tmp_path / "edges2shoes.tar.gz").read_bytes() == archive_bytes  # 206 or 200: intact
    assert not part.exists()


def test_download_of_a_complete_part_file(tmp_path: Path, archive_bytes: bytes) -> None:
    (tmp_path / "x.tar.gz.part").write_bytes(archive_bytes)
    with serve({"/x.tar.gz": archive_bytes}) as server:  # server answers 416
        fetch.download(server.base_url + "/x.tar.gz", tmp_path / "x.tar.gz", progress=False)
    assert (tmp_path / "x.tar.gz").read_bytes() == archive_bytes


def test_unreachable_url_is_a_data_error(tmp_path: Path) -> None:
    with serve({}) as server:
        url = server.base_url + "/missing.tar.gz"
        with pytest.raises(DataError, match=r"missing\.tar\.gz.*404"):
            fetch.fetch("edges2shoes", tmp_path, url=url, progress=False)
    # nothing listens on the port any more: connection refused
    with pytest.raises(DataError, match=r"cannot download http://127\.0\.0\.1"):
        fetch.fetch("night2day", tmp_path, url=url, progress=False)


def test_unsafe_archive_members_are_refused(tmp_path: Path) -> None:
    for bad in ("../evil.jpg", "/tmp/evil.jpg"):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            info = tarfile.TarInfo(bad)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
        archive = tmp_path / "evil.tar.gz"
        archive.write_bytes(buffer.getvalue())
        with pytest.raises(DataError, match="unsafe member"):
            fetch.safe_extract(archive, tmp_path / "x")
    assert not (tmp_path / "evil.jpg").exists()


def test_unknown_name_without_url(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="fetchable ones"):
        fetch.fetch("cityscapes", tmp_path, progress=False)
