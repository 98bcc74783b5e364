"""The one way m3dgan writes a file: atomically, and with a clear error when writing fails.

Every file the project writes (checkpoints, configs, data sets, images, audio, text, pages,
metrics) goes through :func:`atomic_path` or one of the helpers built on it:

- the content goes to a hidden temporary file in the destination's own folder (same file
  system, so the final ``os.replace`` is atomic: a reader sees the old file or the new one,
  never half of one);
- on any failure the temporary file is removed, so no partial file is ever left behind, and
  the destination (if it existed) is untouched;
- an ``OSError`` (disk full, read-only file system, permission denied, quota exceeded) becomes
  :class:`~m3dgan.errors.OutputError` naming the destination path and the cause, e.g.
  ``runs/x/out.png: cannot write (no space left on device)``; the CLI prints it as one
  ``error:`` line and exits with status 2.

Temporary names start with ``.`` and contain ``.tmp`` (``.<stem>.<pid>-<n>.tmp<suffix>``), so
:func:`is_temp_name` recognises one left behind by a process that was killed mid-write.

Two kinds of file cannot be replaced whole and have their own rule here: an append-only log
(:func:`append_text`: a record is appended whole or not at all) and a streamed download (the
caller's ``.part`` file, kept on purpose so that the download can resume).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
from collections.abc import Iterator
from pathlib import Path

from m3dgan.errors import OutputError

_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EFBIG: "file too large for this file system or limit",
}
# errors that only a write can cause (a full disk or quota): the CLI's net for writes that
# cannot go through here (creating folders, extracting archives) turns them into ``error:``
FULL_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_COUNTER = itertools.count()  # with the pid: no two writers (threads included) share a temp name
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")
_TEMP_NAME = re.compile(r"^\..+\.\d+-\d+\.tmp(\.[^.]*)?$")


def describe_os_error(exc: OSError) -> str:
    """A short lowercase reason for ``exc`` ("no space left on device", ...)."""
    if exc.errno in _REASONS:
        return _REASONS[exc.errno]
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


def make_folder(path: str | Path) -> Path:
    """Create the folder ``path`` and its parents where missing; returns it.

    Raises:
        OutputError: it cannot be created, naming why: a part of the path that is a file (not a
            folder), permission, a full disk...
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise OutputError(
                f"{path}: cannot create this folder: {blocker} is a file, not a folder"
            ) from exc
        raise OutputError(f"{path}: cannot create this folder ({describe_os_error(exc)})") from exc
    return path


def output_error(path: Path | str, exc: OSError) -> OutputError:
    """The OutputError for failing to write ``path`` because of ``exc``."""
    return OutputError(f"{path}: cannot write ({describe_os_error(exc)})")


@contextlib.contextmanager
def atomic_path(path: str | Path, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces ``path``.

    Parent folders are created. The temporary file sits beside ``path`` (same file system, so
    the rename is atomic) as ``.<stem>.<pid>-<n>.tmp<suffix>``: it keeps ``path``'s suffix last
    so that writers which pick a format from the suffix (Pillow) still see it, and the pid and
    a per-process counter keep concurrent writers (processes or threads) apart.

    After the block the temporary file is fsynced (``durable``, the default) before the rename:
    a power cut then leaves the old file or the whole new one, and a file system that reports a
    full disk only when the data is flushed (NFS, some FUSE mounts) reports it here, before
    ``path`` is touched.

    Raises:
        OutputError: writing failed with an ``OSError`` (disk full, permission, ...), in the
            caller's block or here; a safetensors error that carries an OS error (its Rust
            ``(os error 28)``) counts as one. Any other exception from the caller's block (a
            bug, a KeyboardInterrupt) propagates unchanged. Either way no temporary file is
            left and ``path`` is as it was.
    """
    with atomic_paths(path, durable=durable) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_paths(*paths: str | Path, durable: bool = True) -> Iterator[tuple[Path, ...]]:
    """:func:`atomic_path` for files that belong together (a checkpoint's tensors and sidecar).

    Yields one temporary path per destination. Only once every one of them is written (and
    fsynced) are they renamed, in the order given; so a failure while writing — the only time a
    full disk can strike — leaves every destination as it was, also when the group replaces an
    older group of the same names. The error names the destination being written: the one the
    exception names (its ``filename``), else the last one whose temporary file the block had
    begun (the block writes them in order), else the first.
    """
    dests = [Path(p) for p in paths]
    temps = tuple(
        p.with_name(f".{p.stem}.{os.getpid()}-{next(_COUNTER)}.tmp{p.suffix}") for p in dests
    )
    current = None  # the destination being fsynced or renamed after the block
    try:
        for folder in dict.fromkeys(p.parent for p in dests):
            make_folder(folder)
        yield temps
        if durable:
            for tmp, dest in zip(temps, dests, strict=True):
                current = dest
                _fsync(tmp)
        for tmp, dest in zip(temps, dests, strict=True):
            current = dest
            os.replace(tmp, dest)
    except BaseException as exc:
        if current is None:  # failed in the block: the last file it had begun
            begun = [d for t, d in zip(temps, dests, strict=True) if t.exists()]
            current = begun[-1] if begun else dests[0]
        for tmp in temps:
            _remove_quietly(tmp)
        os_error = as_os_error(exc)
        if os_error is None:
            raise
        named = {str(t): d for t, d in zip(temps, dests, strict=True)}
        culprit = named.get(str(os_error.filename), current)
        raise output_error(culprit, os_error) from exc


def as_os_error(exc: BaseException) -> OSError | None:
    """``exc`` if it is an OSError; the OS error inside a safetensors error (whose Rust message
    ends ``(os error N)``); else None."""
    if isinstance(exc, OSError):
        return exc
    if type(exc).__name__ == "SafetensorError":
        match = _RUST_OS_ERROR.search(str(exc))
        if match:
            code = int(match.group(1))
            return OSError(code, os.strerror(code))
    return None


def write_safetensors(path: str | Path, tensors: dict) -> Path:
    """Write a safetensors file atomically (see :func:`atomic_path`); returns ``path``."""
    from safetensors.torch import save_file  # here: the writer of text files needs no torch

    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`); returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`); returns ``path``."""
    return write_bytes(path, text.encode(encoding))


def append_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Append ``text`` to ``path`` (created if missing) whole or not at all: an append-only log.

    A log cannot be replaced on every line, so this is the one writer that writes into the
    destination itself. When the write fails the file is cut back to its length before the
    call (a file this call created is removed), so no half record is ever left.

    Raises:
        OutputError: the append failed (disk full, permission, ...); ``path`` is as it was.
    """
    path = Path(path)
    data = text.encode(encoding)
    existed = path.exists()
    try:
        make_folder(path.parent)
        with open(path, "ab", buffering=0) as handle:
            start = handle.seek(0, os.SEEK_END)
            try:
                view = memoryview(data)
                while view:  # an unbuffered write may write less than asked (a nearly full disk)
                    view = view[handle.write(view) :]
            except BaseException:
                with contextlib.suppress(OSError):  # truncating frees space: it can succeed
                    os.ftruncate(handle.fileno(), start)
                raise
    except OSError as exc:
        if not existed:
            _remove_quietly(path)
        raise output_error(path, exc) from exc
    return path


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a temporary file name of :func:`atomic_path`."""
    return bool(_TEMP_NAME.match(name))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)
