"""``m3dgan translate`` to an image target writes an index.html beside its PNGs: one row per
input (the input as the model read it), one column per reference (shown at its head) or per
random code; every output linked exists, inputs and references are embedded."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import train_tiny_run
from PIL import Image

from m3dgan.cli import main

pytestmark = pytest.mark.usefixtures("isolated_env")


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


@pytest.fixture(scope="module")
def run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_run(tiny_data, tmp_path_factory, 1)


def images_of(page: Path) -> tuple[list[Path], list[Image.Image]]:
    parser = _Images()
    parser.feed(page.read_text())
    linked = [page.parent / s for s in parser.sources if not s.startswith("data:")]
    embedded = [
        Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1])))
        for s in parser.sources
        if s.startswith("data:image/png;base64,")
    ]
    return linked, embedded


def test_translate_writes_a_page_of_inputs_references_and_outputs(run, tmp_path, capsys) -> None:
    inputs, refs = [], []
    for i, colour in enumerate([(200, 30, 30), (30, 30, 200)]):
        inputs.append(tmp_path / f"in{i}.png")
        Image.new("RGB", (40, 40), colour).save(inputs[-1])  # square; the model reads 16 px
        refs.append(tmp_path / f"ref{i}.png")
        Image.new("L", (16, 16), 60 + 100 * i).save(refs[-1])
    out = tmp_path / "out"
    argv = ["translate", "--checkpoint", str(run), "--out", str(out), "--input", *map(str, inputs)]
    assert main([*argv, "--reference", *map(str, refs)]) == 0
    assert f"page: {out / 'index.html'}" in capsys.readouterr().out
    linked, embedded = images_of(out / "index.html")
    assert sorted(p.name for p in linked) == sorted(
        f"in{i}_ref{k}.png" for i in range(2) for k in range(2)
    )
    assert all(p.is_file() for p in linked)
    # two references at their column heads, then each input as the model read it (16 px)
    assert len(embedded) == 4 and all(im.size == (16, 16) for im in embedded)
    text = (out / "index.html").read_text()
    assert "reference: ref0.png" in text and "in1.png" in text
    # the same grid as one labelled PNG: a header (references + labels), 2 rows of tiles
    # (16 px outputs drawn 6× to reach 96 px), input column + 2 reference columns
    assert 'href="overview.png"' in text
    with Image.open(out / "overview.png") as grid:
        assert grid.size == (3 * (96 + 4) + 4, (96 + 4 + 16 + 4) + 2 * (96 + 4) + 4)

    out_z = tmp_path / "z"
    assert main([*argv[:4], str(out_z), *argv[5:], "--samples", "3", "--seed", "0"]) == 0
    linked, embedded = images_of(out_z / "index.html")
    assert len(linked) == 6 and all(p.is_file() for p in linked) and len(embedded) == 2


def test_labelled_grid_heads_columns_with_their_references() -> None:
    """Training samples: each column is named, and a ref<k> column shows its reference above."""
    import torch

    from m3dgan.report.grid import labelled_grid

    tile = torch.full((1, 16, 16), -1.0)  # black
    reference = torch.zeros(1, 16, 16)  # mid grey (128), to tell it from the white paper
    grid = labelled_grid([[tile] * 3, [tile] * 3], ["truth", "ref0", "z0"], [None, reference, None])
    # 16 px tiles drawn 4× (64 px), 4 px gaps; header = reference row + label line
    assert grid.shape == (3, 88 + 2 * 68 + 4, 3 * 68 + 4) and grid.dtype == torch.uint8
    x_ref, x_truth = 4 + 68 + 32, 4 + 32  # centres of columns 1 and 0
    assert grid[:, 4 + 32, x_ref].tolist() == [128, 128, 128]  # the reference above ref0
    assert grid[:, 4 + 32, x_truth].tolist() == [255, 255, 255]  # nothing above truth
    label_band = grid[:, 68 + 4 : 88, 4 : 4 + 64]
    assert (label_band < 200).any()  # the label "truth" is drawn
    assert grid[:, 88 + 32, x_truth].tolist() == [0, 0, 0]  # the tiles below
