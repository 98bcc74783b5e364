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
"""

from __future__ import annotations

import contextlib
import errno
import os
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


def describe_os_error(exc: OSError) -> str:
    """A short lowercase reason for ``exc`` ("no space left on device", ...)."""
    if exc.errno in _REASONS:
        return _REASONS[exc.errno]
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


def output_error(path: Path | str, exc: OSError) -> OutputError:
    """The OutputError for failing to write ``path`` because of ``exc``."""
    return OutputError(f"{path}: cannot write ({describe_os_error(exc)})")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces ``path``.

    Parent folders are created. The temporary file sits beside ``path`` as
    ``.<name>.<pid>.tmp`` and keeps ``path``'s suffix at the end of its stem
    (``.<stem>.<pid>.tmp<suffix>``) so that writers which pick a format from the suffix
    (Pillow, soundfile) still see it.

    Raises:
        OutputError: writing failed with an ``OSError`` (disk full, permission, ...). Any other
            exception from the caller's block propagates unchanged. Either way no temporary file
            is left and ``path`` is as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise output_error(path, exc) from exc
    except BaseException:
        _remove_quietly(tmp)
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`); returns ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())  # a full disk may only say so when the data is flushed
    return Path(path)


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`); returns ``path``."""
    return write_bytes(path, text.encode(encoding))


def _remove_quietly(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)
