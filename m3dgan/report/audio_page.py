"""A small HTML page with audio players, for listening to speech outputs next to their WAVs.

Speech results cannot be judged from numbers alone. ``evaluate`` writes its WAVs into a folder
and this page beside them: a **grid** section (rows = sentences, columns = reference styles; the
paper's content-style swap grid) and **list** sections (reference audio vs output audio vs text).

The page is self-contained (inline CSS, no scripts, nothing fetched) and links each WAV by a
relative URL, so the folder can be copied, zipped or served as it is. Every linked file must exist
inside the page's folder when the page is written (a DataError names the first one that does not):
a page with dead players is worse than an error. All text is HTML-escaped.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from m3dgan.atomic import write_text
from m3dgan.errors import DataError

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 2em; }
th, td { border: 1px solid #ccc; padding: 0.4em; vertical-align: top; text-align: left; }
th { background: #f3f3f3; }
audio { width: 220px; display: block; }
.caption { font-size: 0.85em; color: #555; max-width: 220px; }
.note { color: #555; }
"""


@dataclass(frozen=True)
class AudioClip:
    """One WAV file (a path inside the page's folder, absolute or relative to it) + caption."""

    path: Path | str
    caption: str = ""


@dataclass
class GridSection:
    """Rows (e.g. sentences) x columns (e.g. reference styles); ``cells[r][c]`` may be None."""

    title: str
    row_labels: list[str]
    column_labels: list[str]
    cells: list[list[AudioClip | None]]
    note: str = ""


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


Section = GridSection | ListSection


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


class _Linker:
    """Turns clip paths into relative URLs, checking that each file exists inside ``folder``."""

    def __init__(self, folder: Path):
        self.folder = folder.resolve()

    def url(self, clip: AudioClip) -> str:
        path = Path(clip.path)
        path = (path if path.is_absolute() else self.folder / path).resolve()
        if not path.is_file():
            raise DataError(f"audio page: linked file {path} does not exist")
        if not path.is_relative_to(self.folder):
            raise DataError(
                f"audio page: {path} is outside the page's folder {self.folder}; "
                "write the WAVs next to the page so the links survive copying the folder"
            )
        return quote(Path(os.path.relpath(path, self.folder)).as_posix())

    def player(self, clip: AudioClip | None) -> str:
        if clip is None:
            return "<td></td>"
        caption = f'<div class="caption">{_esc(clip.caption)}</div>' if clip.caption else ""
        return (
            f'<td><audio controls preload="none" src="{_esc(self.url(clip))}"></audio>'
            f"{caption}</td>"
        )


def _grid(section: GridSection, link: _Linker) -> list[str]:
    rows, cols = len(section.row_labels), len(section.column_labels)
    if len(section.cells) != rows or any(len(r) != cols for r in section.cells):
        raise ValueError(
            f"grid {section.title!r}: cells must be {rows} rows x {cols} columns, matching the labels"
        )
    out = ["<table>", "<tr><th></th>"]
    out += [f"<th>{_esc(c)}</th>" for c in section.column_labels]
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


def write_audio_page(path: Path | str, title: str, sections: Sequence[Section]) -> Path:
    """Write the page to ``path`` (atomically) and return it; clip paths are resolved against
    the page's folder and must exist inside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    link = _Linker(path.parent)
    body = [f"<h1>{_esc(title)}</h1>"]
    for section in sections:
        body.append(f"<h2>{_esc(section.title)}</h2>")
        if section.note:
            body.append(f'<p class="note">{_esc(section.note)}</p>')
        if isinstance(section, GridSection):
            body += _grid(section, link)
        elif isinstance(section, ListSection):
            body += _list(section, link)
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
