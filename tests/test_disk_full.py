"""A full disk: every write is all or nothing, and the CLI says so in one ``error:`` line.

Issue 10, section 2, case 6: ``translate`` onto a full disk printed a traceback and left a 0-byte
PNG; ``train`` printed a traceback. Every file m3dgan writes goes through ``m3dgan.atomic``,
which turns the failure into an OutputError naming the path and "no space left on device"
(the CLI exits with 2) and leaves neither a partial file nor a temporary one.

The disk is a real one where this process may mount it: a small tmpfs per test (root on Linux;
the test id says ``[tmpfs]``), filled to the last byte with a filler file. Elsewhere the tests
run ``[injected]``: writes under the folder fail with ENOSPC when the atomic writer flushes them
(as on NFS, where a full disk shows only then) and appends fail when they open the file. A few
tests need the real file system (a write cut short half-way) and skip in that mode;
``M3DGAN_TEST_FULL_DISK=injected`` picks that mode on a machine that could mount.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import conftest
import pytest
import torch
from conftest import set_args, train_tiny_run
from http_server import serve
from PIL import Image

from m3dgan import atomic
from m3dgan import checkpoint as ckpt
from m3dgan.cli import main
from m3dgan.errors import OutputError

pytestmark = pytest.mark.usefixtures("isolated_env")

DISK_SIZE = "4m"  # room for a tiny run's config, log, TensorBoard file and two checkpoints


def _can_mount_tmpfs() -> bool:
    if sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("mount"):
        return False
    with tempfile.TemporaryDirectory() as folder:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", folder], capture_output=True
        )
        if mounted.returncode:
            return False
        subprocess.run(["umount", folder], capture_output=True)
        return True


# M3DGAN_TEST_FULL_DISK=injected runs the fallback on a machine that could mount
MODE = os.environ.get("M3DGAN_TEST_FULL_DISK") or ("tmpfs" if _can_mount_tmpfs() else "injected")


class FullDisk:
    """A folder on a file system that is full once :meth:`fill` is called."""

    def __init__(self, root: Path, mode: str) -> None:
        self.root, self.mode, self.full = root, mode, False
        self.filler = root / ".filler"

    def fill(self, leave: int = 0) -> None:
        """Fill the disk to the last byte, then free ``leave`` bytes (tmpfs only)."""
        self.full = True
        if self.mode != "tmpfs":
            return
        with open(self.filler, "ab", buffering=0) as handle:
            chunk = b"\0" * (1 << 16)
            while chunk:
                try:
                    handle.write(chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    chunk = chunk[: len(chunk) // 2]
        if leave:
            os.truncate(self.filler, self.filler.stat().st_size - leave)

    def free(self) -> None:
        self.full = False
        self.filler.unlink(missing_ok=True)

    def injected(self, path: Path | str) -> bool:
        return self.full and Path(path).resolve().is_relative_to(self.root.resolve())


@pytest.fixture(params=[MODE])
def disk(request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record_property):
    root = tmp_path / "disk"
    root.mkdir()
    mode = request.param
    if mode == "tmpfs":
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(root)],
            capture_output=True,
            text=True,
        )
        assert mounted.returncode == 0, mounted.stderr
    full = FullDisk(root, mode)
    record_property("full_disk", mode)
    if mode == "injected":
        fsync, real_open = atomic._fsync, open

        def failing_fsync(path: Path) -> None:
            if full.injected(path):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            fsync(path)

        def failing_open(path, mode="r", *args, **kwargs):
            if any(c in mode for c in "wax+") and full.injected(path):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            return real_open(path, mode, *args, **kwargs)

        monkeypatch.setattr(atomic, "_fsync", failing_fsync)
        monkeypatch.setattr(atomic, "open", failing_open, raising=False)
    yield full
    busy = mode == "tmpfs" and subprocess.run(["umount", str(root)], capture_output=True).returncode
    if busy:  # a file still open on it (a test that failed half-way): detach it anyway
        subprocess.run(["umount", "-l", str(root)], check=True)


def leftovers(folder: Path) -> list[str]:
    """Every file under ``folder`` but the filler."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name != ".filler")


def temp_files(folder: Path) -> list[str]:
    return [name for name in leftovers(folder) if ".tmp" in name or name.endswith(".part")]


def assert_disk_full_error(code: int, capsys: pytest.CaptureFixture, path: Path) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: "), err
    assert str(path) in last and "no space left on device" in last, err
    return last


def train_args(data: Path, out: Path, steps: int, *overrides: str) -> list[str]:
    return conftest.train_args(data, out, steps, *set_args(list(overrides)))

# --- the atomic writer ------------------------------------------------------------------------------


def test_write_onto_a_full_disk_keeps_the_old_file_and_leaves_no_temp(disk: FullDisk) -> None:
    dest = disk.root / "out" / "result.json"
    atomic.write_text(dest, '{"old": true}')
    disk.fill()
    with pytest.raises(OutputError) as caught:
        atomic.write_bytes(dest, b"x" * 100_000)
    assert str(caught.value) == f"{dest}: cannot write (no space left on device)"
    assert dest.read_text() == '{"old": true}'
    assert leftovers(disk.root / "out") == ["result.json"]
    with pytest.raises(OutputError, match="no space left"):  # a new file: none at all
        atomic.write_text(disk.root / "out" / "new.txt", "y" * 100_000)
    assert leftovers(disk.root / "out") == ["result.json"]
    disk.free()
    atomic.write_text(dest, "new")
    assert dest.read_text() == "new" and leftovers(disk.root / "out") == ["result.json"]


def test_other_exceptions_propagate_unchanged_and_the_temp_goes(tmp_path: Path) -> None:
    dest = tmp_path / "image.png"
    dest.write_bytes(b"old")
    for error in (ValueError("a bug in the caller"), KeyboardInterrupt()):
        with pytest.raises(type(error)) as caught, atomic.atomic_path(dest) as tmp:
            assert tmp.parent == dest.parent and tmp.suffix == ".png"  # Pillow picks by suffix
            assert atomic.is_temp_name(tmp.name) and not atomic.is_temp_name(dest.name)
            tmp.write_bytes(b"half")
            raise error
        assert caught.value is error
        assert dest.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["image.png"]


def test_temp_names_differ_per_call(tmp_path: Path) -> None:
    with (
        atomic.atomic_path(tmp_path / "a.txt") as one,
        atomic.atomic_path(tmp_path / "a.txt") as two,
    ):
        assert one != two
        one.write_text("1")
        two.write_text("2")
    assert (tmp_path / "a.txt").read_text() == "1"  # the outer block finished last
    assert os.listdir(tmp_path) == ["a.txt"]


def test_a_group_is_replaced_only_once_every_file_is_written(disk: FullDisk) -> None:
    first, second = disk.root / "pair.safetensors", disk.root / "pair.json"
    atomic.write_safetensors(first, {"w": torch.zeros(4)})
    atomic.write_text(second, "old")
    old = first.read_bytes()
    disk.fill(leave=8192)  # room for the first file, not for the second
    failing = second if MODE == "tmpfs" else first  # injected: the first fsync fails
    with (
        pytest.raises(OutputError, match=f"{failing}: cannot write .no space left"),
        atomic.atomic_paths(first, second) as (tmp_first, tmp_second),
    ):
        tmp_first.write_bytes(b"new tensors")
        tmp_second.write_text("z" * 100_000)
    assert first.read_bytes() == old and second.read_text() == "old"
    assert leftovers(disk.root) == ["pair.json", "pair.safetensors"]


def test_safetensors_and_wav_writers_name_the_path(disk: FullDisk) -> None:
    from m3dgan.audio.io import save_wav

    disk.fill()
    weights = disk.root / "w.safetensors"
    with pytest.raises(OutputError) as caught:  # safetensors' own error carries "os error 28"
        atomic.write_safetensors(weights, {"w": torch.zeros(50_000)})
    assert str(caught.value) == f"{weights}: cannot write (no space left on device)"
    wav = disk.root / "a.wav"
    with pytest.raises(OutputError) as caught:  # libsndfile would only say "System error"
        save_wav(wav, torch.zeros(50_000))
    assert str(caught.value) == f"{wav}: cannot write (no space left on device)"
    assert leftovers(disk.root) == []


def test_a_checkpoint_written_again_onto_a_full_disk_keeps_the_old_one(disk: FullDisk) -> None:
    """A rollback writes the restored step's checkpoint again. When the new tensors fit on the
    disk and the sidecar does not, the old pair must stay a valid checkpoint (not new tensors
    under the old sidecar, which would be a damaged checkpoint)."""
    model = torch.nn.Linear(300, 100)
    tensors = ckpt.save_checkpoint(disk.root, 2, model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    disk.fill(leave=-(-tensors.stat().st_size // 4096) * 4096)  # the tensors' pages, no more
    failing = "json" if MODE == "tmpfs" else "safetensors"  # injected: both fail, first named
    with pytest.raises(OutputError, match=rf"step_00000002\.{failing}: cannot write .no space"):
        ckpt.save_checkpoint(disk.root, 2, model)
    loaded = ckpt.load_latest(disk.root)
    assert loaded.step == 2 and torch.equal(loaded.model_state()["weight"], before["weight"])
    names = ["step_00000002.json", "step_00000002.safetensors"]
    assert leftovers(disk.root / "checkpoints") == names


@pytest.mark.skipif(MODE != "tmpfs", reason="TensorBoard writes outside the atomic writer")
def test_tensorboard_on_a_full_disk_warns_once_and_goes_off(
    disk: FullDisk, capsys: pytest.CaptureFixture
) -> None:
    import threading

    from m3dgan.report.run_outputs import TensorBoardWriter

    hook = threading.excepthook
    board = TensorBoardWriter(disk.root / "tb")
    assert board.writer is not None
    disk.fill()
    for step in range(100):
        board.add_scalar("train/loss", 1.0, step)
        board.add_image("samples", torch.rand(3, 64, 64), step)
        if board.writer is None:
            break
    board.close()
    assert board.writer is None and threading.excepthook is hook
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Exception in thread" not in err, err
    assert err.count("warning: TensorBoard is off") == 1, err
    assert f"{disk.root / 'tb'}: cannot write (no space left on device)" in err
    with pytest.MonkeyPatch.context() as mp:  # already full when a run starts: off from there
        mp.setattr(threading, "excepthook", hook)
        late = TensorBoardWriter(disk.root / "tb2")
        assert late.writer is None and leftovers(disk.root / "tb2") == []
        late.close()
    assert "warning: TensorBoard is off" in capsys.readouterr().err


@pytest.mark.skipif(MODE != "tmpfs", reason="needs a real file system to cut a write short")
def test_an_append_is_whole_or_nothing(disk: FullDisk) -> None:
    log = disk.root / "log.jsonl"
    atomic.append_text(log, '{"step": 1}\n')
    disk.fill(leave=8192)  # room for part of the next record only
    with pytest.raises(OutputError, match=f"{log}: cannot write .no space left"):
        atomic.append_text(log, '{"step": 2, "pad": "' + "x" * 50_000 + '"}\n')
    assert log.read_text() == '{"step": 1}\n'
    with pytest.raises(OutputError):  # a log this call would create is not left behind empty
        atomic.append_text(disk.root / "new.jsonl", "y" * 50_000)
    assert leftovers(disk.root) == ["log.jsonl"]


# --- downloads and archives ---------------------------------------------------------------------


@pytest.mark.skipif(MODE != "tmpfs", reason="needs a real file system to cut a download short")
def test_a_download_onto_a_full_disk_is_an_error_and_resumes(disk: FullDisk) -> None:
    from m3dgan.data.formats import fetch

    body = os.urandom(300_000)
    archive = disk.root / "a.tar.gz"
    disk.fill(leave=100_000)
    with serve({"/a.tar.gz": body}) as server:
        with pytest.raises(OutputError) as caught:
            fetch.download(server.base_url + "/a.tar.gz", archive, progress=False)
        part = archive.with_name("a.tar.gz.part")
        message = str(caught.value)
        assert message.startswith(f"{part}: cannot write (no space left on device)"), message
        assert "resume" in message
        kept = part.stat().st_size
        assert 0 < kept < len(body) and part.read_bytes() == body[:kept]  # a whole prefix
        disk.free()
        fetch.download(server.base_url + "/a.tar.gz", archive, progress=False)
        assert server.ranges[-1] == f"bytes={kept}-"
    assert archive.read_bytes() == body and leftovers(disk.root) == ["a.tar.gz"]


def test_extracting_onto_a_full_disk_says_so(disk: FullDisk, tmp_path: Path) -> None:
    from m3dgan.data.formats import fetch

    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(200_000))
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(source, arcname="big.bin")
    disk.fill()
    if MODE != "tmpfs":  # extraction writes through tarfile, not the atomic writer
        pytest.skip("needs a real file system")
    dest = disk.root / "a.extracted"
    with pytest.raises(OutputError, match=f"{dest}: cannot write .no space left on device"):
        fetch.safe_extract(archive, dest)


# --- the command line -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_run(tiny_data, tmp_path_factory, 2)


@pytest.fixture
def seven(tmp_path: Path) -> Path:
    image = Image.new("RGB", (16, 16), (0, 0, 0))
    image.paste((200, 200, 200), (4, 4, 12, 12))
    image.save(tmp_path / "seven.png")
    return tmp_path / "seven.png"


def translate(run: Path, out: Path, source: Path, *args: str) -> int:
    argv = ["translate", "--checkpoint", str(run), "--out", str(out), "--device", "cpu"]
    return main([*argv, "--input", str(source), *args])


def test_translate_onto_a_full_disk(
    disk: FullDisk, trained_run: Path, seven: Path, capsys: pytest.CaptureFixture
) -> None:
    out = disk.root / "out"
    disk.fill()
    code = translate(trained_run, out, seven, "--samples", "3")
    assert_disk_full_error(code, capsys, out)
    assert leftovers(out) == []  # no 0-byte PNG, no temporary file


def test_translate_onto_a_full_disk_keeps_earlier_outputs(
    disk: FullDisk, trained_run: Path, seven: Path, capsys: pytest.CaptureFixture
) -> None:
    out = disk.root / "out"
    assert translate(trained_run, out, seven, "--samples", "2", "--seed", "1") == 0
    before = {name: (out / name).read_bytes() for name in leftovers(out)}
    assert sorted(before) == ["index.html", "overview.png", "seven_z0.png", "seven_z1.png"]
    disk.fill()
    code = translate(trained_run, out, seven, "--samples", "2", "--seed", "2")
    assert_disk_full_error(code, capsys, out)
    assert {name: (out / name).read_bytes() for name in leftovers(out)} == before


def test_train_onto_a_full_disk_stops_before_writing(
    disk: FullDisk, tiny_data: Path, capsys: pytest.CaptureFixture
) -> None:
    run = disk.root / "run"
    disk.fill()
    code = main(train_args(tiny_data, run, 2))
    assert_disk_full_error(code, capsys, run / "config.yaml")
    assert leftovers(run) == []


def test_train_whose_checkpoint_hits_a_full_disk(
    disk: FullDisk, tiny_data: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    """The disk fills up after the step-2 checkpoint; the step-4 one fails: exit 2, and the
    step-2 checkpoint is still there and loads (nothing pruned, nothing half-written)."""
    import m3dgan.train

    saves = []

    def save_then_fill(*args, **kwargs):
        path = save(*args, **kwargs)
        saves.append(path)
        if len(saves) == 1:
            disk.fill()
        return path

    save = m3dgan.train.save
    monkeypatch.setattr(m3dgan.train, "save", save_then_fill)
    run = disk.root / "run"
    overrides = ("train.checkpoint_every=2", "train.keep_checkpoints=1", "train.log_every=1000")
    code = main(train_args(tiny_data, run, 5, *overrides))
    folder = ckpt.checkpoint_dir(run)
    assert_disk_full_error(code, capsys, folder / "step_00000004.safetensors")
    assert [p.name for p in saves] == ["step_00000002.safetensors"]
    assert [p.name for p in ckpt.list_checkpoints(folder)] == ["step_00000002.json"]
    assert ckpt.load_latest(run).step == 2
    assert temp_files(run) == [] and not list(folder.glob("step_00000004*"))
    # with space again, --resume goes on from step 2 to the end
    disk.free()
    monkeypatch.setattr(m3dgan.train, "save", save)
    resume = ["train", "--resume", "--out", str(run), "--data", str(tiny_data), "--no-progress"]
    assert main(resume) == 0
    assert ckpt.load_latest(run).step == 5 and temp_files(run) == []


def test_the_cli_names_a_full_disk_that_a_folder_or_library_hit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Creating a folder or a library's own file cannot go through the atomic writer: the CLI
    still prints one ``error:`` line for a full disk or quota, and lets other OSErrors (bugs)
    through with their traceback."""
    import m3dgan.cli

    def full(args) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/runs/x/tb")

    monkeypatch.setattr(m3dgan.cli, "cmd_tasks", full)
    assert main(["tasks"]) == 2
    err = capsys.readouterr().err
    assert err == "error: /runs/x/tb: cannot write (no space left on device)\n"

    def missing(args) -> int:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/nowhere")

    monkeypatch.setattr(m3dgan.cli, "cmd_tasks", missing)
    with pytest.raises(FileNotFoundError):
        main(["tasks"])
