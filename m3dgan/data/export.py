"""``m3dgan data export``: a task's test rows as the files ``m3dgan translate`` reads.

A new user with a trained run needs inputs to translate (an edge map, a sentence, a recording)
and references that set the domain. The built-in data sets store tensors, token-free strings
and mel frames, not files; this writes a few rows of a split as files:

- ``OUT/inputs/<row>_<domain>.<ext>``: the source side (S) of each chosen row;
- ``OUT/references/<row>_<domain>.<ext>``: the target side (T) of the same rows, usable as
  ``translate --reference`` (a sample of that domain);
- ``OUT/index.tsv``: one line per file (file, side, row, domain, label, text).

Files by kind: images → PNG (as stored: 8-bit grey or RGB); text → a UTF-8 ``.txt`` holding one
sentence (``translate --input`` reads one sentence per file); speech → 16-bit WAV made from the
stored mel frames by Griffin-Lim (``m3dgan.audio.vocoder``): the data sets keep mels only, so a
WAV sounds like the vocoder ceiling of ``docs/tasks.md``, not like the original recording.

Rows: one per content label first (where rows carry labels), so the files show different items;
then the split's other rows in order, up to ``--count``; a text source is never written twice.
Where the split has several domains and content labels, the k-th reference is the same
content's row in the k-th domain in turn (``reference_rows``): a tts export gives recordings in
every style (neutral, cheerful, sad, soft, neutral, ...), not only the first style of each
sentence; a row without that domain keeps its own target.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from m3dgan.atomic import make_folder, write_text
from m3dgan.data.frames import SpeechFrames
from m3dgan.data.store import Manifest
from m3dgan.data.views import open_dataset
from m3dgan.errors import ConfigError

SUFFIX = {"image": ".png", "text": ".txt", "speech": ".wav"}


@dataclass(frozen=True)
class Exported:
    """What :func:`export_rows` wrote: the input and reference files, in row order."""

    inputs: list[Path]
    references: list[Path]
    index: Path


def pick_rows(split: dict, count: int) -> list[int]:
    """Up to ``count`` row indices of ``split``: first one row per content label (rows with
    label -1 count as their own content), in order; then, if that is fewer than ``count``, the
    other rows in order. A text source already taken is never taken again."""
    labels = split["label"].tolist()
    sources = split["source"] if isinstance(split["source"], list) else None
    seen_labels: set[int] = set()
    seen_texts: set[str] = set()
    rows: set[int] = set()
    for distinct in (True, False):
        for i, label in enumerate(labels):
            if len(rows) >= count:
                return sorted(rows)
            if i in rows or (distinct and label >= 0 and label in seen_labels):
                continue
            if sources is not None:
                if sources[i] in seen_texts:
                    continue
                seen_texts.add(sources[i])
            seen_labels.add(label)
            rows.add(i)
    return sorted(rows)


def reference_rows(split: dict, rows: list[int]) -> list[int]:
    """The row whose target is written as the reference of each of ``rows``: for the k-th row,
    the row of the same content label in the k-th of the split's domains in turn, or the next
    domain whose row is not a reference yet (no file is written twice); the row itself where its
    label is -1, where no such row is left, or where the split has one domain."""
    labels, domains = split["label"].tolist(), split["domain"].tolist()
    order = sorted({d for d in domains if d >= 0})
    if len(order) < 2:
        return list(rows)
    where: dict[tuple[int, int], int] = {}
    for i, key in enumerate(zip(labels, domains, strict=True)):
        where.setdefault(key, i)
    out: list[int] = []
    for k, i in enumerate(rows):
        turns = [order[(k + j) % len(order)] for j in range(len(order))]
        found = [where.get((labels[i], d)) for d in turns] if labels[i] >= 0 else []
        same = [r for r, label in enumerate(labels) if label == labels[i] >= 0]
        free = (r for r in [*found, i, *same] if r is not None and r not in out)
        out.append(next(free, i))
    return out


def export_rows(
    root: Path, out: Path, *, split: str = "test", count: int = 8, swap: bool = False
) -> Exported:
    """Write ``count`` rows of ``split`` of the data set at ``root`` into ``out`` (see the
    module doc); ``swap``: read the data set target → source, as ``asr`` does.

    Raises ConfigError for a count below 1, DataError for a split the data set lacks or a
    damaged data set (from the reader, ``m3dgan.data.store.load_split``), OutputError when a file cannot be written (each file is written
    atomically: nothing half-written is left)."""
    if count < 1:
        raise ConfigError(f"--count must be at least 1, got {count}")
    manifest, splits = open_dataset(root, (split,), swap=swap)
    data = splits[split]
    rows = pick_rows(data, count)
    make_folder(out)
    domains = manifest.domains or []
    lines = ["file\tside\trow\tdomain\tlabel\ttext"]
    written: dict[str, list[Path]] = {"inputs": [], "references": []}
    chosen = {"inputs": rows, "references": reference_rows(data, rows)}
    for folder, side in (("inputs", "source"), ("references", "target")):
        kind = manifest.source_kind if side == "source" else manifest.target_kind
        for i in chosen[folder]:
            d = int(data["domain"][i])
            domain = domains[d] if 0 <= d < len(domains) else "none"
            path = out / folder / f"{i:05d}_{_safe(domain)}{SUFFIX[kind]}"
            text = _write(path, kind, data[side], i, manifest)
            written[folder].append(path)
            row = [str(path.relative_to(out)), side, str(i), domain, str(int(data["label"][i]))]
            lines.append("\t".join(row + [text.replace("\t", " ").replace("\n", " ")]))
    index = write_text(out / "index.tsv", "\n".join(lines) + "\n")
    return Exported(written["inputs"], written["references"], index)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name) or "none"


def _write(path: Path, kind: str, values, i: int, manifest: Manifest) -> str:
    """Write row ``i`` of one side as a file of its kind; returns its text (text rows) or ""."""
    if kind == "text":
        write_text(path, values[i] + "\n")
        return values[i]
    if kind == "image":
        from m3dgan.report.grid import save_image

        save_image(values[i], path)  # the store keeps images as uint8 [C, H, W]
        return ""
    from m3dgan.audio.config import MelConfig
    from m3dgan.audio.io import save_wav
    from m3dgan.audio.vocoder import mel_to_wave

    frames = values if isinstance(values, SpeechFrames) else SpeechFrames.from_list(values)
    cfg = MelConfig.from_dict(manifest.audio)
    save_wav(path, mel_to_wave(frames.row(i).float(), cfg), cfg.sample_rate)
    return ""
