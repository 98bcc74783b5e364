"""``m3dgan data export``: a split's rows as files that ``translate`` reads (images, text)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import train_tiny_run
from PIL import Image
from text_fixtures import write_text2text

from m3dgan.cli import main
from m3dgan.data.export import pick_rows
from m3dgan.data.store import load_split

pytestmark = pytest.mark.usefixtures("isolated_env")


def _export(data: Path, out: Path, *extra: str, task: str = "digits") -> int:
    return main(["data", "export", task, "--data", str(data), "--out", str(out), *extra])


def test_images_come_out_as_stored_with_an_index(tiny_data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "files"
    assert _export(tiny_data, out, "--count", "3") == 0
    said = capsys.readouterr().out
    assert "wrote 3 inputs" in said and "next: m3dgan translate" in said
    split = load_split(tiny_data, "test")
    inputs = sorted((out / "inputs").glob("*.png"))
    references = sorted((out / "references").glob("*.png"))
    assert len(inputs) == len(references) == 3
    # pixel for pixel what the data set stores (grey targets as mode L, RGB sources)
    for path in inputs:
        row = int(path.stem.split("_")[0])
        assert np.array_equal(np.asarray(Image.open(path)), split["source"][row].permute(1, 2, 0))
    first = Image.open(references[0])
    assert first.mode == "L"
    row = int(references[0].stem.split("_")[0])
    assert np.array_equal(np.asarray(first), split["target"][row][0].numpy())
    # the file name carries the row's domain, and index.tsv lists every file
    domain = ["dim", "bright"][int(split["domain"][row])]
    assert references[0].stem.endswith(domain)
    lines = (out / "index.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["file", "side", "row", "domain", "label", "text"]
    assert len(lines) == 1 + 6


def test_exported_files_translate(tiny_data: Path, tmp_path_factory, tmp_path: Path) -> None:
    run = train_tiny_run(tiny_data, tmp_path_factory, 2)
    out = tmp_path / "files"
    assert _export(tiny_data, out, "--count", "2") == 0
    source = sorted((out / "inputs").glob("*.png"))[0]
    reference = sorted((out / "references").glob("*.png"))[-1]
    args = ["translate", "--checkpoint", str(run), "--input", str(source)]
    assert main([*args, "--reference", str(reference), "--out", str(tmp_path / "t")]) == 0
    assert (tmp_path / "t" / f"{source.stem}_ref0.png").is_file()


def test_text_rows_are_one_sentence_per_file(tmp_path: Path) -> None:
    data = write_text2text(tmp_path / "data")
    out = tmp_path / "files"
    assert _export(data, out, "--count", "20", task="en2fr") == 0
    split = load_split(data, "test")
    inputs = sorted((out / "inputs").glob("*.txt"))
    assert len(inputs) == len(set(split["source"]))  # 8 test rows, fewer if a source repeats
    for path in inputs:
        row = int(path.stem.split("_")[0])
        assert path.read_text(encoding="utf-8") == split["source"][row] + "\n"
        assert path.stem.endswith("_none")  # this data set has no domain labels
    target = sorted((out / "references").glob("*.txt"))[0]
    assert target.read_text(encoding="utf-8").strip() == split["target"][int(target.stem[:5])]


def test_rows_skip_repeated_content() -> None:
    split = {"label": torch.tensor([3, 3, 1, -1, -1, 1, 2]), "source": torch.zeros(7)}
    assert pick_rows(split, 5) == [0, 2, 3, 4, 6]  # one per label first
    assert pick_rows(split, 2) == [0, 2]
    assert pick_rows(split, 10) == list(range(7))  # then the rest, in order
    texts = {"label": torch.full((4,), -1), "source": ["a", "b", "a", "c"]}
    assert pick_rows(texts, 10) == [0, 1, 3]


def test_references_take_each_domain_in_turn() -> None:
    """Sentence 7 in domains 0..2 (rows 0-2), sentence 8 in 0..2 (rows 3-5), an unlabelled row."""
    from m3dgan.data.export import reference_rows

    split = {
        "label": torch.tensor([7, 7, 7, 8, 8, 8, -1]),
        "domain": torch.tensor([0, 1, 2, 0, 1, 2, 1]),
    }
    assert reference_rows(split, [0, 3, 6]) == [0, 4, 6]  # domain 0, then 1; -1 keeps its own
    assert reference_rows(split, [0, 3, 0, 3]) == [0, 4, 2, 3]
    one_domain = {"label": split["label"], "domain": torch.zeros(7, dtype=torch.long)}
    assert reference_rows(one_domain, [0, 3]) == [0, 3]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--count", "0"], "--count must be at least 1"),
        (["--split", "valid"], "valid.safetensors is missing (splits are"),
    ],
)
def test_bad_requests_are_clean_errors(tiny_data, tmp_path, capsys, extra, message) -> None:
    assert _export(tiny_data, tmp_path / "files", *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "files").exists()


def test_an_unknown_task_is_a_clean_error(tmp_path, capsys) -> None:
    assert main(["data", "export", "nope", "--out", str(tmp_path / "f")]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err
