"""The README's picture: the translations scripts/demo.sh makes, laid out with labels.

    bash scripts/demo.sh
    .venv/bin/python docs/images/digits_demo.py runs/demo/translate docs/images/digits-demo.png

Reads the folder scripts/demo.sh translates into (inputs/, references/, random/, reference/) and
draws one row per input: the input, its random-code outputs, then one output per reference (the
references head their columns). The same tiles as the demo's own overview.png, with labels.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

TILE, GAP, GROUP_GAP, MARGIN = 96, 6, 28, 18
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"  # Debian fonts-dejavu-core
INK, GREY, RULE = (31, 35, 40), (87, 96, 106), (208, 215, 222)


def _tile(path: Path) -> Image.Image:
    return Image.open(path).convert("RGB").resize((TILE, TILE), Image.NEAREST)


def _columns_width(n: int) -> int:
    return n * TILE + (n - 1) * GAP


def figure(folder: Path) -> Image.Image:
    inputs = sorted((folder / "inputs").glob("*.png"))
    refs = sorted((folder / "references").glob("*.png"))
    n_z = max(len(list((folder / "random").glob(f"{p.stem}_z*.png"))) for p in inputs)
    font, small = ImageFont.truetype(FONT, 17), ImageFont.truetype(FONT, 14)

    x_in = MARGIN
    x_z = x_in + TILE + GROUP_GAP
    x_ref = x_z + _columns_width(n_z) + GROUP_GAP
    width = x_ref + _columns_width(len(refs)) + MARGIN
    head = 30 + TILE + 8 + 24  # labels, the reference tiles, their captions
    height = MARGIN + head + _columns_width(len(inputs)) + MARGIN
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)

    draw.text((x_in, MARGIN), "input", font=font, fill=INK)
    draw.text((x_z, MARGIN), f"{n_z} random codes (no reference)", font=font, fill=INK)
    draw.text((x_ref, MARGIN), "with a reference", font=font, fill=INK)
    y_ref = MARGIN + 30
    draw.text(
        (x_in, y_ref + TILE // 2 - 10),
        "printed test\ndigits (fonts\nheld out)",
        font=small,
        fill=GREY,
    )
    draw.text(
        (x_z, y_ref + TILE // 2 - 10),
        f"e ~ N(0, I), --seed 0: the same\n{n_z} codes in every row",
        font=small,
        fill=GREY,
    )
    for k, ref in enumerate(refs):
        x = x_ref + k * (TILE + GAP)
        img.paste(_tile(ref), (x, y_ref))
        draw.text(
            (x + TILE // 2, y_ref + TILE + 6),
            f"handwritten {k + 1}",
            font=small,
            fill=GREY,
            anchor="mt",
        )

    y_body = MARGIN + head
    draw.line([(x_z - GROUP_GAP // 2, y_body), (x_z - GROUP_GAP // 2, height - MARGIN)], RULE, 2)
    draw.line(
        [(x_ref - GROUP_GAP // 2, MARGIN), (x_ref - GROUP_GAP // 2, height - MARGIN)], RULE, 2
    )
    for i, path in enumerate(inputs):
        y = y_body + i * (TILE + GAP)
        img.paste(_tile(path), (x_in, y))
        for k in range(n_z):
            img.paste(
                _tile(folder / "random" / f"{path.stem}_z{k}.png"), (x_z + k * (TILE + GAP), y)
            )
        for k in range(len(refs)):
            out = folder / "reference" / f"{path.stem}_ref{k}.png"
            img.paste(_tile(out), (x_ref + k * (TILE + GAP), y))
    return img


def main(argv: list[str]) -> int:
    folder, dest = Path(argv[0]), Path(argv[1])
    figure(folder).save(dest, optimize=True)
    print(dest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
