"""A data set as a task sees it.

Some tasks read a data set the other way round: ``asr`` (speech→text) trains on the ``speech``
corpus built for ``tts`` (text→speech). Rather than store the corpus twice, the task swaps the
sides at load time: the manifest's kinds and channel counts and every split's source/target.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from m3dgan.data.store import Manifest, SplitData, load_split, read_manifest


def swap_manifest(manifest: Manifest) -> Manifest:
    return dataclasses.replace(
        manifest,
        source_kind=manifest.target_kind,
        target_kind=manifest.source_kind,
        source_channels=manifest.target_channels,
        target_channels=manifest.source_channels,
    )


def swap_split(split: SplitData) -> SplitData:
    out = dict(split)
    out["source"], out["target"] = split["target"], split["source"]
    return out


def open_dataset(
    root: Path, splits: tuple[str, ...] = ("train", "test"), swap: bool = False
) -> tuple[Manifest, dict[str, SplitData]]:
    """The manifest and the named splits of the data set at ``root``, sides swapped if asked."""
    manifest = read_manifest(root)
    loaded = {name: load_split(root, name) for name in splits}
    if swap:
        return swap_manifest(manifest), {k: swap_split(v) for k, v in loaded.items()}
    return manifest, loaded
