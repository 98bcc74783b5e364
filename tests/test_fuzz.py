"""Fuzzing every reader a user can hand a file or a string: each input either works or raises an
:class:`~m3dgan.errors.M3DGANError` (which the CLI prints as one ``error:`` line, exit code 2) —
never another exception type, never a hang.

Readers: the config parser (``load_config``, ``apply_overrides``), images (``read_image``),
pix2pix A|B pairs (``read_pair``), data set manifests and split files (``read_manifest``,
``load_split``) and checkpoints (``load_latest`` and the Translator built on it). Inputs are
random bytes, random YAML/JSON documents, and real files (PNG, JPEG, safetensors, checkpoints)
truncated or with bytes overwritten. Hangs are caught by the file's timeout; there are no
per-example deadlines (the machine is shared, wall-clock limits would flake).
"""

from __future__ import annotations

import io
import json
import os
import string
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_model_config, write_synthetic_dataset
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from m3dgan import checkpoint as ckpt
from m3dgan.config import Config, apply_overrides, load_config
from m3dgan.data.formats.aligned import read_pair
from m3dgan.data.store import MANIFEST, Manifest, load_split, read_manifest
from m3dgan.errors import CheckpointError, ConfigError, DataError, M3DGANError
from m3dgan.modalities.image.io import read_image

pytestmark = [pytest.mark.usefixtures("isolated_env"), pytest.mark.timeout(300)]

FUZZ = settings(
    # modest by default (the file runs in well under 30 s); raise it for a deeper hunt, e.g.
    # M3DGAN_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz.py
    max_examples=int(os.environ.get("M3DGAN_FUZZ_EXAMPLES", "60")),
    deadline=None,
    # the same examples on every default run (CI failures reproduce); deep hunts draw fresh ones
    derandomize="M3DGAN_FUZZ_EXAMPLES" not in os.environ,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- strategies -----------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def config_keys() -> list[str]:
    data = Config().to_dict()
    keys = []
    for section, value in data.items():
        if isinstance(value, dict):
            keys += [f"{section}.{leaf}" for leaf in value]
        else:
            keys.append(section)
    return keys


CONFIG_KEYS = config_keys()
SECTIONS = [k for k, v in Config().to_dict().items() if isinstance(v, dict)]


@st.composite
def config_documents(draw) -> object:
    """Mostly-plausible configs: real sections and keys with random values, some unknown keys."""
    doc: dict = {}
    for key in draw(st.lists(st.sampled_from(CONFIG_KEYS), max_size=6)):
        *section, leaf = key.split(".")
        node = doc.setdefault(section[0], {}) if section else doc
        if isinstance(node, dict):
            node[leaf] = draw(json_values)
    if draw(st.booleans()):
        doc[draw(st.text(max_size=6))] = draw(json_values)
    if draw(st.booleans()):
        doc[draw(st.sampled_from(SECTIONS))] = draw(json_values)
    return doc if draw(st.integers(0, 9)) else draw(json_values)


def image_bytes(fmt: str, size: tuple[int, int], mode: str, seed: int) -> bytes:
    gen = torch.Generator().manual_seed(seed)
    bands = len(mode) if mode != "P" else 1
    pixels = torch.randint(0, 256, (size[1], size[0], bands), generator=gen, dtype=torch.uint8)
    img = Image.fromarray(pixels.squeeze(-1).numpy() if bands == 1 else pixels.numpy())
    if mode == "P":
        img = img.convert("P")
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@st.composite
def damaged(draw, payload: bytes) -> bytes:
    """``payload`` truncated, with bytes overwritten, or with junk inserted."""
    data = bytearray(payload)
    how = draw(st.sampled_from(["truncate", "overwrite", "insert", "untouched-prefix"]))
    if how == "truncate":
        return bytes(data[: draw(st.integers(0, max(len(data) - 1, 0)))])
    if how == "insert":
        at = draw(st.integers(0, len(data)))
        return bytes(data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:])
    if how == "untouched-prefix":  # a file cut anywhere and padded with junk
        cut = draw(st.integers(0, len(data)))
        return bytes(data[:cut]) + draw(st.binary(max_size=64))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if data:
            data[at] = draw(st.integers(0, 255))
    return bytes(data)


@st.composite
def real_images(draw, pair: bool = False) -> bytes:
    fmt = draw(st.sampled_from(["PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF"]))
    mode = draw(st.sampled_from(["RGB", "L"] + (["RGBA", "P"] if fmt in ("PNG", "GIF") else [])))
    height = draw(st.integers(1, 24))
    width = 2 * height if pair else draw(st.integers(1, 24))
    return image_bytes(fmt, (width, height), mode, draw(st.integers(0, 1000)))


def expect_ok_or(error: type[M3DGANError], fn, *args):
    """Call ``fn``; an M3DGANError subclass is a pass only if it is ``error``; anything else
    propagates and fails the test with its traceback."""
    try:
        return fn(*args)
    except error:
        return None


# --- the config parser ----------------------------------------------------------------------------


@FUZZ
@given(raw=st.binary(max_size=300))
def test_load_config_random_bytes(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(raw)
    cfg = expect_ok_or(ConfigError, load_config, path)
    assert cfg is None or isinstance(cfg, Config)


@FUZZ
@given(doc=config_documents(), style=st.sampled_from(["yaml", "json", "flow"]))
def test_load_config_random_documents(tmp_path: Path, doc: object, style: str) -> None:
    path = tmp_path / "c.yaml"
    try:
        if style == "json":
            text = json.dumps(doc)
        else:
            text = yaml.safe_dump(doc, default_flow_style=style == "flow", allow_unicode=True)
    except (ValueError, yaml.YAMLError):
        assume(False)
    path.write_text(text, encoding="utf-8")
    cfg = expect_ok_or(ConfigError, load_config, path)
    if cfg is not None:  # whatever loads is valid: it survives a save/load round trip
        cfg.save(tmp_path / "again.yaml")
        assert load_config(tmp_path / "again.yaml") == cfg


@FUZZ
@given(text=st.text(alphabet=string.printable + "éü{}[]:!&*#|>%@`", max_size=200))
def test_load_config_random_text(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    expect_ok_or(ConfigError, load_config, path)


override_values = st.one_of(
    st.text(max_size=20),
    scalars.map(lambda v: yaml.safe_dump(v, default_flow_style=True).removesuffix("\n...\n")),
    st.sampled_from(["[", "{", "]", "!!python/name:os.system", "*alias", "&a [1, *a]", "- -"]),
)


@FUZZ
@given(
    items=st.lists(
        st.one_of(
            st.tuples(st.sampled_from(CONFIG_KEYS), override_values).map("=".join),
            st.tuples(st.text(max_size=12), override_values).map("=".join),
            st.text(max_size=20),
        ),
        max_size=4,
    )
)
def test_apply_overrides_random_strings(items: list[str]) -> None:
    cfg = expect_ok_or(ConfigError, apply_overrides, Config(), items)
    if cfg is not None:
        assert isinstance(cfg, Config)


# --- images ---------------------------------------------------------------------------------------


@FUZZ
@given(raw=st.binary(max_size=400), channels=st.sampled_from([1, 3]))
def test_read_image_random_bytes(tmp_path: Path, raw: bytes, channels: int) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(raw)
    expect_ok_or(DataError, read_image, path, channels, 16)


@FUZZ
@given(data=st.data(), channels=st.sampled_from([1, 3]))
def test_read_image_damaged_real_files(tmp_path: Path, data, channels: int) -> None:
    payload = data.draw(damaged(data.draw(real_images())))
    path = tmp_path / "x.img"
    path.write_bytes(payload)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL warns about some damaged files it still reads
        out = expect_ok_or(DataError, read_image, path, channels, 16)
    if out is not None:
        assert out.shape == (1, channels, 16, 16)
        assert out.dtype == torch.float32 and out.abs().max() <= 1.0


def test_read_image_reports_file_and_problem(tmp_path: Path) -> None:
    good = image_bytes("JPEG", (20, 20), "RGB", 0)
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"cut\.jpg.*not a readable image"):
        read_image(tmp_path / "cut.jpg", 3, 16)
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(DataError, match=r"folder\.png.*directory"):
        read_image(tmp_path / "folder.png", 3, 16)


@FUZZ
@given(data=st.data())
def test_read_pair_damaged_and_random(tmp_path: Path, data) -> None:
    if data.draw(st.booleans()):
        payload = data.draw(damaged(data.draw(real_images(pair=True))))
    else:
        payload = data.draw(st.binary(max_size=300))
    path = tmp_path / "1_AB.jpg"
    path.write_bytes(payload)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pair = expect_ok_or(DataError, read_pair, path, 8)
    if pair is not None:
        assert pair[0].shape == pair[1].shape == (3, 8, 8)


# --- data sets: manifest and split files ----------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("fuzzdata") / "ds", n_train=4, n_test=2)


def copy_dataset(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


MANIFEST_FIELDS = list(Manifest.__dataclass_fields__)


@FUZZ
@given(data=st.data())
def test_read_manifest_damaged(tmp_path: Path, dataset: Path, data) -> None:
    root = copy_dataset(dataset, tmp_path / "ds")
    good = json.loads((dataset / MANIFEST).read_text())
    how = data.draw(st.sampled_from(["bytes", "damaged", "fields", "document"]))
    if how == "bytes":
        payload = data.draw(st.binary(max_size=200))
    elif how == "damaged":
        payload = data.draw(damaged((dataset / MANIFEST).read_bytes()))
    elif how == "fields":  # the real manifest with some fields set to random JSON values
        changes = data.draw(st.dictionaries(st.sampled_from(MANIFEST_FIELDS), json_values))
        payload = json.dumps({**good, **changes}).encode()
    else:
        payload = json.dumps(data.draw(json_values)).encode()
    (root / MANIFEST).write_bytes(payload)
    manifest = expect_ok_or(DataError, read_manifest, root)
    if manifest is not None:  # whatever loads is usable by the trainer
        assert isinstance(manifest.image_size, int) and isinstance(manifest.splits, dict)
        assert all(isinstance(v, int) for v in manifest.splits.values())
        assert all(isinstance(c, str) for c in [*manifest.classes, *manifest.domains])
        assert isinstance(manifest.files, dict)
        expect_ok_or(DataError, load_split, root, "train")


@FUZZ
@given(data=st.data())
def test_load_split_damaged(tmp_path: Path, dataset: Path, data) -> None:
    root = copy_dataset(dataset, tmp_path / "ds")
    target = root / "train.safetensors"
    target.write_bytes(data.draw(damaged(target.read_bytes())))
    split = expect_ok_or(DataError, load_split, root, "train")
    if split is not None:
        n = len(split["label"])
        assert split["source"].shape[0] == split["target"].shape[0] == n


@FUZZ
@given(
    tensors=st.dictionaries(
        st.sampled_from(["source", "target", "label", "domain", "other"]),
        st.tuples(
            st.sampled_from([torch.uint8, torch.int64, torch.float32, torch.bool]),
            st.lists(st.integers(0, 3), max_size=4),
        ),
        max_size=5,
    )
)
def test_load_split_wrong_tensors(tmp_path: Path, dataset: Path, tensors: dict) -> None:
    """Well-formed safetensors files holding the wrong things: wrong keys, dtypes, ranks."""
    from safetensors.torch import save_file

    root = copy_dataset(dataset, tmp_path / "ds")
    save_file(
        {k: torch.zeros(shape, dtype=dtype) for k, (dtype, shape) in tensors.items()},
        str(root / "train.safetensors"),
    )
    split = expect_ok_or(DataError, load_split, root, "train")
    if split is not None:
        assert split["source"].dtype == torch.uint8 and split["source"].ndim == 4


# --- checkpoints ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint_run(tmp_path_factory: pytest.TempPathFactory, dataset: Path) -> Path:
    """A real two-checkpoint run of a tiny full model, written by the trainer's own save()."""
    from m3dgan.config import config_from_dict
    from m3dgan.core.state import RunState
    from m3dgan.run_record import RunRecord
    from m3dgan.run_state import save
    from m3dgan.train import build_model

    run = tmp_path_factory.mktemp("fuzzrun")
    data = Config().to_dict()
    data["model"] = vars(tiny_model_config())
    cfg = config_from_dict(data)
    manifest = read_manifest(dataset)
    model = build_model(cfg, manifest)
    state = RunState.create(model, cfg, torch.device("cpu"))
    record = RunRecord.for_dataset(cfg, model.source_spec, model.target_spec, manifest, {})
    for step in (1, 2):
        state.step = step
        save(run, state, record)
    return run


@FUZZ
@given(data=st.data(), which=st.sampled_from(["safetensors", "json"]))
def test_damaged_checkpoint(tmp_path: Path, checkpoint_run: Path, data, which: str) -> None:
    """Damage the newest checkpoint: loading falls back to step 1 or says why, and a Translator
    built from the run works; loading the damaged file alone works or raises CheckpointError."""
    from m3dgan.infer import Translator

    run = copy_dataset(checkpoint_run / "checkpoints", tmp_path / "run" / "checkpoints").parent
    newest = run / "checkpoints" / f"step_00000002.{which}"
    original = newest.read_bytes()
    payload = data.draw(damaged(original))
    newest.write_bytes(payload)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alone = expect_ok_or(CheckpointError, ckpt.load_checkpoint, newest)
        latest = ckpt.load_latest(run)
        Translator.from_checkpoint(run, device="cpu")
    if alone is None:
        assert latest.step == 1  # the previous good checkpoint
    else:
        assert latest.step == 2


@FUZZ
@given(raw=st.binary(max_size=300), name=st.sampled_from(["model.pt", "x.safetensors", "x.json"]))
def test_random_bytes_as_checkpoint(tmp_path: Path, raw: bytes, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(raw)
    with pytest.raises(CheckpointError):
        ckpt.load_latest(path)
