"""Files for scripts/demo.sh: test inputs to translate, and one overview picture of the results.

python scripts/demo_files.py inputs DIR [N]   N printed test digits -> DIR/inputs/*.png and 3
                                             handwritten test digits -> DIR/references/*.png
python scripts/demo_files.py overview DIR     DIR/overview.png: one row per input — the input,
                                             its random-code outputs, then one output per
                                             reference (the references head their columns)
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

from m3dgan.data.build import ensure_dataset
from m3dgan.data.store import load_split

SCALE = 4  # 32 px digits are tiny on a screen
GAP = 8


def export_inputs(out: Path, n: int) -> None:
    split = load_split(ensure_dataset("digits"), "test")
    for folder in ("inputs", "references"):
        (out / folder).mkdir(parents=True, exist_ok=True)
        for old in (out / folder).glob("*.png"):
            old.unlink()
    # the first test item of each class, so the inputs show different digits
    labels = split["label"].tolist()
    firsts = [labels.index(c) for c in sorted(set(labels))][:n]
    for i in firsts:
        image = split["source"][i].permute(1, 2, 0).numpy()
        Image.fromarray(image).save(out / "inputs" / f"printed_{labels[i]}.png")
    # references: handwritten digits (the target domain) of three different writers
    for k, i in enumerate(firsts[-3:]):
        image = split["target"][i][0].numpy()
        Image.fromarray(image, mode="L").save(out / "references" / f"writer_{k}.png")


def _tile(path: Path | None, size: int) -> Image.Image:
    if path is None:
        return Image.new("RGB", (size, size), "white")
    return Image.open(path).convert("RGB").resize((size, size), Image.NEAREST)


def overview(out: Path) -> Path:
    inputs = sorted((out / "inputs").glob("*.png"))
    references = sorted((out / "references").glob("*.png"))
    size = 32 * SCALE
    random_count = 0
    body = []
    for path in inputs:
        randoms = sorted((out / "random").glob(f"{path.stem}_*.png"))
        by_ref = sorted((out / "reference").glob(f"{path.stem}_*.png"))
        random_count = max(random_count, len(randoms))
        body.append((path, randoms, by_ref))
    # header row: each reference over the column of its outputs
    rows = [[None, *[None] * random_count, None, *references]]
    for path, randoms, by_ref in body:
        randoms = randoms + [None] * (random_count - len(randoms))
        rows.append([path, *randoms, None, *by_ref])
    width = max(len(r) for r in rows) * (size + GAP)
    sheet = Image.new("RGB", (width, len(rows) * (size + GAP)), "white")
    for y, row in enumerate(rows):
        for x, cell in enumerate(row):
            if cell is not None:
                sheet.paste(_tile(cell, size), (x * (size + GAP), y * (size + GAP)))
    target = out / "overview.png"
    sheet.save(target)
    return target


def main(argv: list[str]) -> int:
    command, out = argv[0], Path(argv[1])
    if command == "inputs":
        export_inputs(out, int(argv[2]) if len(argv) > 2 else 4)
    elif command == "overview":
        print(overview(out))
    else:
        raise SystemExit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
