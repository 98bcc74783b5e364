"""A small HTML page with audio players, for listening to speech outputs next to their WAVs.

Speech results cannot be judged from numbers alone. ``translate`` and ``evaluate`` write their
WAVs into a folder and this page beside them: **notes** at the top (name → value: the run, its
step, the seed, the metrics), then sections:

- **grid** (rows = sentences, columns = reference styles; the paper's content-style swap grid),
  optionally with each column's reference playable at its head;
- **list** (text vs reference audio vs output audio);
- **table** (any columns; a cell holds text, players and pictures, e.g. one row per output with
  its transcript, its ground truth and mel thumbnails).

The page is self-contained (inline CSS, no scripts, nothing fetched) and links each WAV and
picture by a relative URL, so the folder can be copied, zipped or served as it is. Every linked
file must exist inside the page's folder when the page is written (a DataError names the first
one that does not): a page with dead players is worse than an error. All text is HTML-escaped.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from m3dgan.atomic import write_bytes, write_text
from m3dgan.errors import DataError

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 2em; }
th, td { border: 1px solid #ccc; padding: 0.4em; vertical-align: top; text-align: left; }
th { background: #f3f3f3; }
audio { width: 220px; display: block; }
img.mel { height: 80px; image-rendering: pixelated; display: block; border: 1px solid #999; }
.caption { font-size: 0.85em; color: #555; max-width: 220px; }
.note { color: #555; }
div.notes { display: flex; flex-wrap: wrap; gap: 0 1.5em; align-items: flex-start; }
table.notes td { font-size: 0.9em; padding: 0.2em 0.4em; }
.text { white-space: pre-wrap; max-width: 260px; }
"""


@dataclass(frozen=True)
class AudioClip:
    """One WAV file (a path inside the page's folder, absolute or relative to it) + caption."""

    path: Path | str
    caption: str = ""


@dataclass(frozen=True)
class Picture:
    """One image file (a path inside the page's folder, absolute or relative to it) + caption,
    drawn 80 px tall without blur (a mel thumbnail: one pixel per frame)."""

    path: Path | str
    caption: str = ""


@dataclass
class GridSection:
    """Rows (e.g. sentences) x columns (e.g. reference styles); ``cells[r][c]`` may be None.
    ``column_clips[c]`` (optional, may be None): a player at the head of column c (the
    reference the column was made with)."""

    title: str
    row_labels: list[str]
    column_labels: list[str]
    cells: list[list[AudioClip | None]]
    note: str = ""
    column_clips: list[AudioClip | None] | None = None


@dataclass
class ListItem:
    """One line of a list section: what was said, the reference and the output audio."""

    text: str
    output: AudioClip | None
    reference: AudioClip | None = None


@dataclass
class ListSection:
    title: str
    items: list[ListItem]
    note: str = ""
    headers: tuple[str, str, str] = field(default=("text", "reference", "output"))


# a table cell: text, a player, a picture, nothing, or several of these stacked
Item = str | AudioClip | Picture | None
Cell = Item | list[Item]


@dataclass
class TableSection:
    """Rows of cells under ``headers`` (one cell per header)."""

    title: str
    headers: list[str]
    rows: list[list[Cell]]
    note: str = ""


Section = GridSection | ListSection | TableSection


def copy_clip(source: Path | str, folder: Path, name: str, caption: str = "") -> AudioClip:
    """Copy an audio file from anywhere into the page's ``folder`` as ``name`` (atomically;
    nothing is copied where ``source`` already is that file) and return its clip."""
    source, target = Path(source), Path(folder) / name
    if not (target.exists() and target.resolve() == source.resolve()):
        write_bytes(target, source.read_bytes())
    return AudioClip(name, caption)


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


class _Linker:
    """Turns clip and picture paths into relative URLs, checking that each file exists inside
    ``folder``."""

    def __init__(self, folder: Path):
        self.folder = folder.resolve()

    def url(self, clip: AudioClip | Picture) -> str:
        path = Path(clip.path)
        path = (path if path.is_absolute() else self.folder / path).resolve()
        if not path.is_file():
            raise DataError(f"page: linked file {path} does not exist")
        if not path.is_relative_to(self.folder):
            raise DataError(
                f"page: {path} is outside the page's folder {self.folder}; "
                "write the files next to the page so the links survive copying the folder"
            )
        return quote(Path(os.path.relpath(path, self.folder)).as_posix())

    def item(self, item: Item) -> str:
        """One cell item as HTML (no ``<td>``)."""
        if item is None:
            return ""
        if isinstance(item, str):
            return f'<div class="text">{_esc(item)}</div>'
        caption = f'<div class="caption">{_esc(item.caption)}</div>' if item.caption else ""
        if isinstance(item, Picture):
            alt = item.caption or Path(item.path).name
            return f'<img class="mel" src="{_esc(self.url(item))}" alt="{_esc(alt)}">{caption}'
        return f'<audio controls preload="none" src="{_esc(self.url(item))}"></audio>{caption}'

    def player(self, clip: AudioClip | None) -> str:
        return f"<td>{self.item(clip)}</td>"

    def cell(self, cell: Cell) -> str:
        items = cell if isinstance(cell, list) else [cell]
        return "<td>" + "".join(self.item(item) for item in items) + "</td>"


def _grid(section: GridSection, link: _Linker) -> list[str]:
    rows, cols = len(section.row_labels), len(section.column_labels)
    if len(section.cells) != rows or any(len(r) != cols for r in section.cells):
        raise ValueError(
            f"grid {section.title!r}: cells must be {rows} rows x {cols} columns, matching the labels"
        )
    heads = section.column_clips or [None] * cols
    if len(heads) != cols:
        raise ValueError(f"grid {section.title!r}: one column clip per column ({cols}) or none")
    out = ["<table>", "<tr><th></th>"]
    out += [
        f"<th>{_esc(c)}{link.item(clip)}</th>"
        for c, clip in zip(section.column_labels, heads, strict=True)
    ]
    out.append("</tr>")
    for label, cells in zip(section.row_labels, section.cells, strict=True):
        out.append(f"<tr><th>{_esc(label)}</th>")
        out += [link.player(clip) for clip in cells]
        out.append("</tr>")
    out.append("</table>")
    return out


def _list(section: ListSection, link: _Linker) -> list[str]:
    out = ["<table>", "<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in section.headers) + "</tr>"]
    for item in section.items:
        out.append(
            f"<tr><td>{_esc(item.text)}</td>{link.player(item.reference)}"
            f"{link.player(item.output)}</tr>"
        )
    out.append("</table>")
    return out


def _table(section: TableSection, link: _Linker) -> list[str]:
    width = len(section.headers)
    if any(len(row) != width for row in section.rows):
        raise ValueError(f"table {section.title!r}: every row needs {width} cells, one per header")
    out = ["<table>", "<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in section.headers) + "</tr>"]
    out += ["<tr>" + "".join(link.cell(c) for c in row) + "</tr>" for row in section.rows]
    out.append("</table>")
    return out


NOTES_PER_COLUMN = 16  # longer notes are laid out in side-by-side tables of this many rows


def notes_table(notes: dict[str, object] | None) -> list[str]:
    """name → value rows of small tables (floats to 4 significant digits), side by side, at
    most ``NOTES_PER_COLUMN`` rows each, so that a long list of metrics stays short."""
    if not notes:
        return []
    rows = [
        f"<tr><td>{_esc(k)}</td><td>{_esc(f'{v:.4g}' if isinstance(v, float) else v)}</td></tr>"
        for k, v in notes.items()
    ]
    tables = [
        f'<table class="notes">{"".join(rows[i : i + NOTES_PER_COLUMN])}</table>'
        for i in range(0, len(rows), NOTES_PER_COLUMN)
    ]
    return ['<div class="notes">', *tables, "</div>"]


def write_audio_page(
    path: Path | str,
    title: str,
    sections: Sequence[Section],
    notes: dict[str, object] | None = None,
) -> Path:
    """Write the page to ``path`` (atomically) and return it; clip and picture paths are
    resolved against the page's folder and must exist inside it. ``notes``: name → value rows
    of a table under the title."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    link = _Linker(path.parent)
    body = [f"<h1>{_esc(title)}</h1>", *notes_table(notes)]
    for section in sections:
        body.append(f"<h2>{_esc(section.title)}</h2>")
        if section.note:
            body.append(f'<p class="note">{_esc(section.note)}</p>')
        if isinstance(section, GridSection):
            body += _grid(section, link)
        elif isinstance(section, ListSection):
            body += _list(section, link)
        elif isinstance(section, TableSection):
            body += _table(section, link)
        else:
            raise TypeError(f"unknown section type {type(section).__name__}")
    page = "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{_esc(title)}</title>",
            f"<style>{_STYLE}</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )
    return write_text(path, page)
