"""Images users hand us, read as a viewer shows them (issue 10, section 2, cases 1-3 and 8).

Every test writes real files with Pillow and checks pixel values:

- bit depth: 16-bit (PNG, TIFF, PGM), 32-bit integer and float images keep their tones; deep
  images with no implied range are refused with a DataError naming the file and why;
- EXIF orientation: a JPEG tagged "rotate 90° clockwise" (orientation 6) is read upright, by
  the user-file reader and by the data-set converters (photos, pix2pix pairs, emoji);
- shape: a non-square image is centre-cropped (not squeezed) with one warning per file;
- output names: two inputs with the same name are refused before anything is written.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import train_tiny_run
from PIL import Image, ImageOps

from m3dgan.cli import build_parser, main
from m3dgan.data.builtin import edges2emoji
from m3dgan.data.formats import aligned, photos
from m3dgan.errors import DataError, InputError
from m3dgan.infer import Translator, check_output_names
from m3dgan.modalities.image import decode as image_decode
from m3dgan.modalities.image.io import read_image

pytestmark = pytest.mark.usefixtures("isolated_env")

DARK, LIGHT = 2000, 50000  # a light 16-bit digit stroke on a dark ground


def level(value: float, full: float) -> float:
    """The [-1, 1] value a pixel of ``value`` out of ``full`` must reach the model as."""
    return round(value / full * 255) / 127.5 - 1.0


def digit16() -> np.ndarray:
    """A 32×32 16-bit "1": a light vertical stroke on a dark ground."""
    pixels = np.full((32, 32), DARK, np.uint16)
    pixels[6:26, 14:18] = LIGHT
    return pixels


def assert_digit(t: torch.Tensor, dark: float, light: float) -> None:
    assert t.shape[-2:] == (32, 32)
    for c in range(t.shape[1]):
        assert t[0, c, 0, 0].item() == pytest.approx(dark, abs=1e-6)  # the ground stays dark
        assert t[0, c, 16, 15].item() == pytest.approx(light, abs=1e-6)  # the stroke stays light
    background = torch.ones(32, 32, dtype=torch.bool)
    background[6:26, 14:18] = False
    assert t[0, :, background].eq(t[0, 0, 0, 0]).all()


def png_bytes(pixels: np.ndarray, color_type: int) -> bytes:
    """A 16-bit-per-sample PNG written by hand (Pillow cannot write 48/64-bit RGB)."""
    h, w = pixels.shape[:2]
    raw = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


# --- 1. bit depth -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".tiff", ".pgm"])
@pytest.mark.parametrize("channels", [1, 3])
def test_16bit_grey_digit_keeps_dark_ground_and_light_stroke(
    tmp_path: Path, suffix: str, channels: int
) -> None:
    path = tmp_path / f"digit16{suffix}"
    Image.fromarray(digit16()).save(path)
    with Image.open(path) as img:  # PNG/TIFF: I;16, PGM: I (Pillow's ways of holding 16 bits)
        assert img.mode in ("I;16", "I")
    t = read_image(path, channels, 32)
    assert_digit(t, level(DARK, 65535), level(LIGHT, 65535))


def test_16bit_big_endian_mode(tmp_path: Path) -> None:
    img = Image.frombytes("I;16B", (32, 32), digit16().astype(">u2").tobytes())
    img.save(tmp_path / "be.tiff")
    assert_digit(read_image(tmp_path / "be.tiff", 1, 32), level(DARK, 65535), level(LIGHT, 65535))


def test_32bit_integer_image_is_read_as_16_bit_range(tmp_path: Path) -> None:
    Image.fromarray(digit16().astype(np.int32)).save(tmp_path / "i.tiff")
    with Image.open(tmp_path / "i.tiff") as img:
        assert img.mode == "I"
    assert_digit(read_image(tmp_path / "i.tiff", 1, 32), level(DARK, 65535), level(LIGHT, 65535))


@pytest.mark.parametrize(
    ("scale", "full"), [(1 / 65535, 1.0), (255 / 65535, 255.0), (1.0, 65535.0)]
)
def test_float_image_keeps_its_tones(tmp_path: Path, scale: float, full: float) -> None:
    values = digit16().astype(np.float64) * scale
    if full > 1:
        values = np.round(values)  # whole numbers stored as floats: an 8- or 16-bit range
    Image.fromarray(values.astype(np.float32)).save(tmp_path / "f.tiff")
    with Image.open(tmp_path / "f.tiff") as img:
        assert img.mode == "F"
    t = read_image(tmp_path / "f.tiff", 1, 32)
    dark, light = values[0, 0], values[16, 15]
    assert_digit(t, level(dark, full), level(light, full))


@pytest.mark.parametrize(
    ("mode", "values", "message"),
    [
        ("F", [-0.5, 0.5], "negative pixel values"),
        ("F", [0.0, 1.7], "floating-point image with values up to 1.7"),
        ("F", [0.0, float("nan")], "NaN"),
        ("I", [0, 70000], "above the 16-bit range"),
        ("I", [-3, 100], "negative pixel values"),
    ],
)
def test_deep_images_without_a_tonal_range_are_refused(
    tmp_path: Path, mode: str, values: list, message: str
) -> None:
    pixels = np.resize(np.array(values, np.float32 if mode == "F" else np.int32), (8, 8))
    path = tmp_path / "odd.tiff"
    Image.fromarray(pixels).save(path)
    with pytest.raises(DataError, match=rf"odd\.tiff: .*{message}"):
        read_image(path, 1, 8)


def test_48_and_64_bit_rgb_pngs(tmp_path: Path) -> None:
    rgb = np.zeros((32, 32, 3), np.uint16)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 60000, 1000, 30000
    (tmp_path / "rgb48.png").write_bytes(png_bytes(rgb, 2))
    rgba = np.zeros((32, 32, 4), np.uint16)
    rgba[..., 0], rgba[..., 3] = 60000, 65535
    rgba[:16, :, 3] = 0  # the top half transparent: on white
    (tmp_path / "rgb64.png").write_bytes(png_bytes(rgba, 6))
    t = read_image(tmp_path / "rgb48.png", 3, 32)
    for c, value in enumerate((60000, 1000, 30000)):
        assert t[0, c].sub(level(value, 65535)).abs().max() <= 1.5 / 127.5  # Pillow's 8 bits
    t = read_image(tmp_path / "rgb64.png", 3, 32)
    assert t[0, :, :16].eq(1.0).all()  # transparent → white
    assert t[0, 0, 16:].sub(level(60000, 65535)).abs().max() <= 1.5 / 127.5
    assert t[0, 1:, 16:].eq(-1.0).all()


def test_one_bit_palette_grey_alpha_and_cmyk(tmp_path: Path) -> None:
    bits = np.zeros((32, 32), bool)
    bits[:, 16:] = True
    Image.fromarray(bits).save(tmp_path / "bits.png")
    with Image.open(tmp_path / "bits.png") as img:
        assert img.mode == "1"
    t = read_image(tmp_path / "bits.png", 1, 32)
    assert t[0, 0, :, :16].eq(-1.0).all() and t[0, 0, :, 16:].eq(1.0).all()

    palette = Image.new("RGB", (32, 32), (255, 0, 0)).convert("P", palette=Image.Palette.ADAPTIVE)
    palette.save(tmp_path / "p.png")
    t = read_image(tmp_path / "p.png", 3, 32)
    assert t[0, 0].eq(1.0).all() and t[0, 1:].eq(-1.0).all()

    la = Image.new("LA", (32, 32), (0, 255))
    la.paste((0, 0), (0, 0, 32, 16))  # top half transparent
    la.save(tmp_path / "la.png")
    t = read_image(tmp_path / "la.png", 1, 32)
    assert t[0, 0, :16].eq(1.0).all() and t[0, 0, 16:].eq(-1.0).all()

    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    t = read_image(tmp_path / "cmyk.jpg", 3, 32)  # pure red in CMYK
    assert t[0, 0].mean() > 0.95 and t[0, 1:].mean() < -0.95


def test_data_set_readers_share_the_bit_depth_fix(tmp_path: Path) -> None:
    """The photo (CUB, COCO), pix2pix pair and emoji converters decode a 16-bit file alike."""
    pixels = np.full((32, 64), DARK, np.uint16)
    pixels[8:24, 8:24] = LIGHT  # a light square in the A half
    Image.fromarray(pixels).save(tmp_path / "pair16.png")
    a, b = aligned.read_pair(tmp_path / "pair16.png", 32)
    assert a[:, 0, 0].tolist() == [round(DARK / 65535 * 255)] * 3
    assert a[:, 16, 16].tolist() == [round(LIGHT / 65535 * 255)] * 3
    assert (b == round(DARK / 65535 * 255)).all()

    Image.fromarray(digit16()).save(tmp_path / "photo16.png")
    with open(tmp_path / "photo16.png", "rb") as handle:
        square = photos.read_square(handle, 32, name="photo16.png")
    assert square[:, 0, 0].tolist() == [round(DARK / 65535 * 255)] * 3
    assert square[:, 16, 15].tolist() == [round(LIGHT / 65535 * 255)] * 3

    big = np.tile(digit16(), (2, 2))  # the emoji reader's 64×64
    Image.fromarray(big).save(tmp_path / "emoji16.png")
    rgba = edges2emoji.load_rgba(tmp_path / "emoji16.png")
    assert rgba[0, 0].tolist() == pytest.approx([round(DARK / 65535 * 255) / 255] * 3 + [1.0])
    assert rgba[16, 15, 0] == pytest.approx(round(LIGHT / 65535 * 255) / 255)

    Image.fromarray(np.full((8, 8), -1.0, np.float32)).save(tmp_path / "neg.tiff")
    with open(tmp_path / "neg.tiff", "rb") as handle, pytest.raises(DataError, match="neg.tiff"):
        photos.read_square(handle, 8, name="neg.tiff")


# --- 2. EXIF orientation ----------------------------------------------------------------------


def marked_picture(width: int = 60, height: int = 40) -> Image.Image:
    """Blue, with a red block in the top-left corner as stored (asymmetric both ways)."""
    img = Image.new("RGB", (width, height), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 20, 20))
    return img


def save_rotated_jpeg(img: Image.Image, path: Path, orientation: int = 6) -> Path:
    exif = Image.Exif()
    exif[image_decode.ORIENTATION_TAG] = orientation
    img.save(path, quality=95, exif=exif)
    return path


def is_red(t: torch.Tensor, y: int, x: int) -> bool:
    r, g, b = (t[0, c, y, x].item() for c in range(3))
    return r > 0.8 and b < -0.8 and g < -0.8


def test_exif_orientation_6_is_read_upright(tmp_path: Path) -> None:
    """Orientation 6: viewers turn the stored picture 90° clockwise, so the stored 60×40 picture
    shows 40 wide and 60 tall, and its stored top-left corner shows at the top right."""
    path = save_rotated_jpeg(marked_picture(), tmp_path / "phone.jpg")
    with Image.open(path) as img:
        assert img.size == (60, 40)
        shown = ImageOps.exif_transpose(img)
    assert shown.size == (40, 60)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = read_image(path, 3, 40)
    # the centre 40×40 of the upright 40×60 picture: rows 10-50; the red block is at rows 0-20,
    # columns 20-40 of the upright picture, so rows 0-10 and columns 20-40 of the crop
    assert is_red(t, 3, 35) and is_red(t, 7, 25)
    assert not is_red(t, 3, 5) and not is_red(t, 30, 35) and not is_red(t, 30, 5)
    assert t[0, 2, 30, 5].item() > 0.8  # blue elsewhere
    assert [str(w.message) for w in caught] == [  # the shape warning gives the upright size
        f"{path}: 40x60 is not square; its centre 40x40 was cropped and resized to the model's "
        "40x40 (the sides are not used)"
    ]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_turns_as_viewers_do(tmp_path: Path, orientation: int) -> None:
    stored = Image.fromarray(np.random.default_rng(orientation).integers(0, 256, (3, 5, 3), "u1"))
    exif = Image.Exif()
    exif[image_decode.ORIENTATION_TAG] = orientation
    stored.save(tmp_path / "o.png", exif=exif)  # lossless, so pixels compare exactly
    with Image.open(tmp_path / "o.png") as img:
        img.load()
        assert image_decode.orientation(img) == orientation
        expected = np.asarray(ImageOps.exif_transpose(img))
        assert np.array_equal(np.asarray(image_decode.upright(img)), expected)
        assert np.array_equal(np.asarray(image_decode.decode(img, "RGB", "o.png")), expected)


def test_data_set_readers_share_the_orientation_fix(tmp_path: Path) -> None:
    """A tagged photo reads as the same picture stored upright, in every converter."""
    picture = marked_picture(60, 40)
    tagged = save_rotated_jpeg(picture, tmp_path / "tagged.jpg")
    upright = tmp_path / "upright.jpg"
    picture.transpose(Image.Transpose.ROTATE_270).save(upright, quality=95)

    def square(path: Path) -> np.ndarray:
        with open(path, "rb") as handle:
            return photos.read_square(handle, 20, name=path.name).astype(float)

    assert np.abs(square(tagged) - square(upright)).mean() < 4  # JPEG noise only
    top_right = square(tagged)[:, 1, 17]
    assert top_right[0] > 200 and top_right[2] < 60  # red, where a viewer shows it

    # pix2pix pair: split on the stored pixels, each half turned upright
    pair = Image.new("RGB", (64, 32), (0, 0, 255))
    pair.paste((255, 0, 0), (0, 0, 12, 12))  # A's stored top-left
    pair.paste((0, 255, 0), (32, 0, 44, 12))  # B's stored top-left
    a, b = aligned.read_pair(save_rotated_jpeg(pair, tmp_path / "pair.jpg"), 32)
    assert a[0, 3, 28] > 200 and a[2, 3, 28] < 60  # A's red at the top right
    assert b[1, 3, 28] > 200 and b[2, 3, 28] < 60  # B's green at the top right
    assert a[2, 3, 3] > 200 and b[2, 3, 3] > 200  # blue at the top left


# --- 3. shape ---------------------------------------------------------------------------------


def banded(width: int, height: int, centre=(255, 0, 0), sides=(0, 0, 255)) -> Image.Image:
    """``sides`` colour with a centre square (side = the short side) of ``centre`` colour."""
    img = Image.new("RGB", (width, height), sides)
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    img.paste(centre, (left, top, left + side, top + side))
    return img


@pytest.mark.parametrize("size", [(96, 32), (32, 96)])
def test_non_square_image_is_centre_cropped_not_squeezed(tmp_path: Path, size) -> None:
    path = tmp_path / "wide.png"
    banded(*size).save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = read_image(path, 3, 32)
    assert t[0, 0].eq(1.0).all() and t[0, 1:].eq(-1.0).all()  # all centre, no side
    assert [str(w.message) for w in caught] == [
        f"{path}: {size[0]}x{size[1]} is not square; its centre 32x32 was cropped and resized to "
        "the model's 32x32 (the sides are not used)"
    ]


def test_non_square_crop_is_resized_to_the_model_size(tmp_path: Path) -> None:
    banded(300, 100).save(tmp_path / "big.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = read_image(tmp_path / "big.png", 3, 16)
    assert t.shape == (1, 3, 16, 16)
    assert t[0, 0].eq(1.0).all() and t[0, 2].eq(-1.0).all()
    assert len(caught) == 1 and "300x100 is not square; its centre 100x100" in str(
        caught[0].message
    )


@pytest.mark.parametrize("side", [8, 32, 64, 100])
def test_square_images_are_resized_without_warning(tmp_path: Path, side: int) -> None:
    img = Image.new("RGB", (side, side), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, side // 2, side))  # left half red
    img.save(tmp_path / "sq.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = read_image(tmp_path / "sq.png", 3, 32)
    assert t.shape == (1, 3, 32, 32)
    assert t[0, 0, :, :14].gt(0.9).all() and t[0, 2, :, 18:].gt(0.9).all()  # not cropped


# --- through the command line (shape, output names) -------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step run of the tiny model (16 px, 3-channel sources, 1-channel targets)."""
    return train_tiny_run(tiny_data, tmp_path_factory, 2)


def translate_args(run: Path, out: Path, *args: str) -> list[str]:
    return ["translate", "--checkpoint", str(run), "--out", str(out), "--device", "cpu", *args]


def test_translator_reads_the_centre_of_a_wide_input(trained_run: Path, tmp_path: Path) -> None:
    digit = Image.new("RGB", (16, 16), (0, 0, 0))
    digit.paste((200, 200, 200), (4, 4, 12, 12))
    wide = Image.new("RGB", (48, 16), (255, 255, 255))
    wide.paste(digit, (16, 0))
    wide.save(tmp_path / "wide.png")
    digit.save(tmp_path / "digit.png")
    tr = Translator.from_checkpoint(trained_run, device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = tr.read_source(tmp_path / "wide.png")
    assert torch.equal(source, tr.read_source(tmp_path / "digit.png"))
    assert len(caught) == 1 and "wide.png: 48x16 is not square" in str(caught[0].message)


def test_cli_prints_one_warning_line_per_cropped_file(trained_run: Path, tmp_path: Path) -> None:
    banded(48, 16).save(tmp_path / "wide.png")
    banded(16, 40).save(tmp_path / "tall.png")
    Image.new("RGB", (24, 24)).save(tmp_path / "square.png")
    args = translate_args(trained_run, tmp_path / "out", "--input")
    args += [str(tmp_path / n) for n in ("wide.png", "tall.png", "square.png")]
    args += ["--reference", str(tmp_path / "tall.png")]  # read again for each input
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": ""}
    done = subprocess.run(
        [sys.executable, "-m", "m3dgan", *args], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert sorted(lines) == sorted(
        [
            f"warning: {tmp_path / 'wide.png'}: 48x16 is not square; its centre 16x16 was "
            "cropped and resized to the model's 16x16 (the sides are not used)",
            f"warning: {tmp_path / 'tall.png'}: 16x40 is not square; its centre 16x16 was "
            "cropped and resized to the model's 16x16 (the sides are not used)",
        ]
    ), done.stderr
    assert "UserWarning" not in done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "index.html",
        "overview.png",
        "square_ref0.png",
        "tall_ref0.png",
        "wide_ref0.png",
    ]


# --- 8. output names --------------------------------------------------------------------------


def test_inputs_with_the_same_name_are_refused_before_writing(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for folder, value in (("a", 60), ("b", 220)):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (16, 16), (value,) * 3).save(tmp_path / folder / "digit.png")
    first, second = tmp_path / "a" / "digit.png", tmp_path / "b" / "digit.png"
    out = tmp_path / "out"
    code = main(translate_args(trained_run, out, "--input", str(first), str(second)))
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err
    assert f"inputs {first} and {second} would write the same output files" in err
    assert not out.exists() or not any(out.iterdir())  # nothing written


def test_distinct_names_translate_each_input(trained_run: Path, tmp_path: Path) -> None:
    Image.new("RGB", (16, 16), (60,) * 3).save(tmp_path / "digit.png")
    Image.new("RGB", (16, 16), (220,) * 3).save(tmp_path / "digit_b.png")
    out = tmp_path / "out"
    args = ["--input", str(tmp_path / "digit.png"), str(tmp_path / "digit_b.png")]
    assert main(translate_args(trained_run, out, *args, "--samples", "2", "--seed", "0")) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "digit_b_z0.png",
        "digit_b_z1.png",
        "digit_z0.png",
        "digit_z1.png",
        "index.html",
        "overview.png",
    ]


def test_translating_into_a_folder_with_earlier_outputs_says_so(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    Image.new("RGB", (16, 16), (60,) * 3).save(tmp_path / "digit.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "digit_b_z0.png").write_bytes(b"another input's output")
    args = ["--input", str(tmp_path / "digit.png"), "--seed", "0"]
    assert main(translate_args(trained_run, out, *args, "--samples", "3")) == 0
    assert "note:" not in capsys.readouterr().err  # digit_b's output is not digit's
    assert main(translate_args(trained_run, out, *args, "--samples", "1")) == 0
    err = capsys.readouterr().err
    assert f"note: {out} already holds 3 output file(s) of these inputs (e.g. digit_z0.png)" in err
    assert sorted(p.name for p in out.iterdir()) == [
        "digit_b_z0.png",
        "digit_z0.png",
        "digit_z1.png",
        "digit_z2.png",
        "index.html",
        "overview.png",
    ]


def test_check_output_names() -> None:
    check_output_names([Path("a/one.png"), Path("a/two.png"), Path("one_z0.png")])
    for clash in (
        [Path("a/digit.png"), Path("b/digit.png")],
        [Path("digit.png"), Path("digit.jpg")],
        [Path("x.png"), Path("x.png")],
        [Path("Digit.png"), Path("digit.png")],  # the same file on macOS and Windows
    ):
        with pytest.raises(InputError, match=f"inputs {clash[0]} and {clash[1]}"):
            check_output_names(clash)


def test_translate_help_documents_the_naming_rule() -> None:
    parser = build_parser()
    translate = parser._subparsers._group_actions[0].choices["translate"]
    text = " ".join(translate.format_help().split())
    assert "two inputs with the same name (a/digit.png, b/digit.png) are refused" in text
