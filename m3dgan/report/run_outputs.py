"""What a training run writes besides checkpoints: log.jsonl, TensorBoard and the sample files.

Only rank 0 of a multi-process run writes them (``RunOutputs`` is a no-op elsewhere). log.jsonl
and the samples are the run's record: a failed write stops the run with an OutputError. The
TensorBoard copy of the same numbers is a viewer's convenience: when it cannot be written it
warns once and is off for the rest of the session (``TensorBoardWriter``).
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from m3dgan.atomic import append_text, output_error
from m3dgan.core.model import M3DGAN
from m3dgan.modalities import Modality
from m3dgan.report.samples import write_samples


class RunOutputs:
    """log.jsonl, TensorBoard and sample grids: written by rank 0 only, so processes of one run
    never write the same file. Every method is a no-op elsewhere.

    When a write fails (a full disk): log.jsonl and the samples are the run's record, so the run
    stops with :class:`~m3dgan.errors.OutputError` (exit 2; the checkpoints stay as they were);
    a log line is appended whole or not at all (``m3dgan.atomic.append_text``). TensorBoard is a
    viewer's copy of the same numbers and images, so it warns once and is off for the rest of
    the session (:class:`TensorBoardWriter`)."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.run_dir, self.enabled = run_dir, enabled
        self.writer = TensorBoardWriter(run_dir / "tb") if enabled else None

    def record(self, row: dict[str, Any]) -> None:
        if self.enabled:
            append_text(self.run_dir / "log.jsonl", json.dumps(row) + "\n")

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"train/{key}", value, step)
        self.record({"step": step, **values})

    def samples(
        self, step: int, model: M3DGAN, fixed: dict, source: Modality, target: Modality
    ) -> None:
        if self.enabled:
            write_samples(model, fixed, self.run_dir, step, source, target, self.writer)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class TensorBoardWriter:
    """TensorBoard's SummaryWriter, off with one warning once writing its event file fails.

    A failure to write RUN_DIR/tb (a full disk) must not end a run that can still checkpoint
    (space may come back), nor print a traceback: TensorBoard writes from a thread of its own,
    which stores the error for the next call and prints it as a traceback, so that thread's
    OSErrors are taken here too (``threading.excepthook``, restored on close). The event file
    keeps every record written before: TensorBoard reads an event file up to its last whole
    record, and an empty one left by a failed start is removed."""

    def __init__(self, folder: Path) -> None:
        # imported when a run starts writing: tensorboard is heavy and only training needs it
        from torch.utils.tensorboard import SummaryWriter

        self.folder, self.writer = folder, None
        self._warned, self._thread_error = False, None
        self._hook_before = threading.excepthook
        threading.excepthook = self._thread_failed
        try:
            self.writer = SummaryWriter(str(folder))
        except OSError as exc:
            self._off(exc)

    def add_scalar(self, *args, **kwargs) -> None:
        self._call("add_scalar", *args, **kwargs)

    def add_image(self, *args, **kwargs) -> None:
        self._call("add_image", *args, **kwargs)

    def add_text(self, *args, **kwargs) -> None:
        self._call("add_text", *args, **kwargs)

    def add_audio(self, *args, **kwargs) -> None:
        self._call("add_audio", *args, **kwargs)

    def close(self) -> None:
        self._call("close")
        self.writer = None
        if threading.excepthook == self._thread_failed:
            threading.excepthook = self._hook_before

    def _call(self, name: str, *args, **kwargs) -> None:
        if self.writer is None:
            return
        try:
            getattr(self.writer, name)(*args, **kwargs)
        except OSError as exc:
            self._off(exc)
        if self._thread_error is not None:  # a close() that flushed without raising it
            self._off(self._thread_error)

    def _thread_failed(self, args: threading.ExceptHookArgs) -> None:
        """TensorBoard's writer thread failed: no traceback; this thread turns it off at its
        next call (the writer also raises the error again there)."""
        if type(args.thread).__module__.startswith("tensorboard.") and isinstance(
            args.exc_value, OSError
        ):
            self._thread_error = args.exc_value
        else:
            self._hook_before(args)

    def _off(self, exc: OSError) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            with contextlib.suppress(OSError):
                writer.close()
        for empty in self.folder.glob("events.out.tfevents.*") if self.folder.is_dir() else ():
            with contextlib.suppress(OSError):
                if empty.stat().st_size == 0:
                    empty.unlink()
        if not self._warned:
            self._warned = True
            tqdm.write(
                f"warning: TensorBoard is off for the rest of this session: "
                f"{output_error(self.folder, exc)}; log.jsonl and samples/ are still written",
                file=sys.stderr,
            )
