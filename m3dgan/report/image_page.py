"""A small HTML page that shows image outputs next to what made them.

``m3dgan translate`` writes loose PNGs named ``<input>_ref<k>`` / ``_z<k>``; this page lays them
out the way the paper's figures do: one row per input, the input itself first (as the model read
it: cropped and resized), then one column per reference — the reference shown at the head of
its column — or per random code.

The page is self-contained (inline CSS, no scripts, nothing fetched). Outputs are linked by a
relative URL, so the folder can be copied or served as it is; every linked file must exist in
the page's folder when the page is written (a DataError names the first one that does not).
Inputs and references, which may live anywhere, are embedded as PNG data URIs at the size the
model saw them. Small images are drawn large with ``image-rendering: pixelated`` (no blur).
All text is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from urllib.parse import quote

import torch
from PIL import Image

from m3dgan.atomic import write_text
from m3dgan.data.store import to_uint8
from m3dgan.errors import DataError
from m3dgan.report.output_page import OutputPage

TILE_PX = 96  # how large each image is drawn, whatever its size in pixels

_STYLE = f"""
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ddd; padding: 0.3em; text-align: center; vertical-align: bottom; }}
th {{ background: #f6f6f6; font-weight: normal; font-size: 0.85em; }}
td.source {{ background: #f6f6f6; }}
img {{ width: {TILE_PX}px; height: {TILE_PX}px; image-rendering: pixelated; display: block;
      margin: auto; }}
table.notes {{ margin-bottom: 1.5em; }}
table.notes td {{ text-align: left; font-size: 0.9em; }}
.caption {{ font-size: 0.8em; color: #555; max-width: {TILE_PX + 20}px; word-wrap: break-word; }}
"""


def data_uri(image: torch.Tensor) -> str:
    """A float image [C, H, W] in [-1, 1] (C = 1 or 3) → a ``data:image/png`` URI."""
    array = to_uint8(image[None].float().cpu())[0].permute(1, 2, 0).numpy()
    picture = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(src: str, alt: str) -> str:
    return f'<img src="{html.escape(src, quote=True)}" alt="{html.escape(alt, quote=True)}">'


def _link(folder: Path, path: Path) -> str:
    """A relative URL from the page's folder to ``path`` (which must exist inside it)."""
    path = Path(path)
    full = path if path.is_absolute() else Path.cwd() / path
    try:
        relative = full.resolve().relative_to(folder.resolve())
    except ValueError:
        raise DataError(f"{path}: not inside the page's folder {folder}") from None
    if not full.is_file():
        raise DataError(f"{path}: the page links it, and it does not exist")
    return quote(relative.as_posix())


def _notes(notes: dict[str, object] | None) -> str:
    """name → value rows of a small table (floats to 4 significant digits)."""
    if not notes:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td>"
        f"<td>{html.escape(f'{v:.4g}' if isinstance(v, float) else str(v))}</td></tr>"
        for k, v in notes.items()
    )
    return f'<table class="notes">{rows}</table>\n'


def _overview(folder: Path) -> str:
    """A link to the same grid as one PNG, where the folder has one (``overview.png``)."""
    if not (folder / "overview.png").is_file():
        return ""
    return '<p><a href="overview.png">overview.png</a>: the same grid as one image</p>\n'


def write_image_page(path: Path, spec: OutputPage) -> Path:
    """Write the page ``spec`` describes to ``path`` (atomically) and return it: the ``notes``
    table at the top, then one row per input (its ``sources`` picture, if any) and one column per
    label (its ``headers`` picture, if any), each output a PNG of ``files`` inside the page's
    folder.

    Raises:
        DataError: an output file is missing or outside the page's folder.
        OutputError: the page cannot be written (m3dgan.atomic).
    """
    path = Path(path)
    folder = path.parent
    title, rows, columns, files = spec.title, spec.rows, spec.columns, spec.files
    sources, headers, notes = spec.sources, spec.headers, spec.notes
    show_sources = sources is not None and any(s is not None for s in sources)
    head = ["<th>input</th>"] if show_sources else ["<th></th>"]
    for c, label in enumerate(columns):
        header = headers[c] if headers is not None and c < len(headers) else None
        picture = _img(data_uri(header), label) if header is not None else ""
        head.append(f'<th>{picture}<div class="caption">{html.escape(label)}</div></th>')
    body = ["<tr>" + "".join(head) + "</tr>"]
    for r, label in enumerate(rows):
        cells = []
        source = sources[r] if show_sources else None
        picture = _img(data_uri(source), label) if source is not None else ""
        cells.append(
            f'<td class="source">{picture}<div class="caption">{html.escape(label)}</div></td>'
        )
        for output in files[r]:
            name = Path(output).name
            cells.append(
                f'<td>{_img(_link(folder, output), name)}<div class="caption">'
                f"{html.escape(name)}</div></td>"
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    page = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
        f"<h1>{html.escape(title)}</h1>\n{_notes(notes)}{_overview(folder)}<table>\n"
        + "\n".join(body)
        + "\n</table>\n</body></html>\n"
    )
    return write_text(path, page)
