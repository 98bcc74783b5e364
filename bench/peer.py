"""What the outside peers' bench scripts share (``nmt_anchor.py``: OpenNMT-py; ``tts_peer.py``:
Coqui TTS): a toolkit venv outside the repo with the CPU torch pinned, and training a toolkit's
own trainer for a wall-clock budget by stopping it and keeping its last intact checkpoint.

The toolkits never become dependencies of m3dgan: each lives in
``$M3DGAN_HOME/bench-venvs/<name>`` and runs as a subprocess; the scripts score its outputs in
our venv with our functions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import harness

from m3dgan import paths

TORCH = "2.13.0+cpu"  # the CPU wheel (pip's find-links); anything else (a CUDA build) is refused


@dataclass(frozen=True)
class ToolkitVenv:
    """A toolkit's venv: ``name`` is its folder under ``bench-venvs``; ``env_extra`` goes into
    the environment of every toolkit process."""

    name: str
    env_extra: dict = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return paths.home() / "bench-venvs" / self.name

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def complete(self) -> bool:
        return (self.path / ".complete").is_file()

    def env(self, threads: int) -> dict:
        """The toolkit's environment: ``threads`` intra-op threads, none of our PYTHONPATH."""
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        env.update(self.env_extra)
        env.pop("PYTHONPATH", None)
        return env

    def torch_version(self) -> str:
        probe = "import torch; print(torch.__version__)"
        proc = subprocess.run([str(self.python), "-c", probe], capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    def check_torch(self) -> None:
        """SystemExit unless the venv's torch is the CPU wheel."""
        found = self.torch_version()
        if found != TORCH:
            raise SystemExit(
                f"{self.path}: torch is {found or 'missing'}, not {TORCH}; the peers only run on "
                "the CPU wheel (pip's find-links). Remove the venv and run --setup again."
            )

    def create(self, log: Path) -> list[str]:
        """The venv with the CPU torch installed; returns the ``pip install`` command prefix
        that keeps torch pinned (a constraints file) for every later install."""
        print(f"creating the {self.name} venv in {self.path} (log: {log})", flush=True)
        if not self.python.is_file():
            harness.run([sys.executable, "-m", "venv", str(self.path)], log)
        pin = self.path / "constraints.txt"
        pin.write_text(f"torch=={TORCH}\n")
        pip = [str(self.python), "-m", "pip", "install", "-c", str(pin)]
        print(f"  pip install torch=={TORCH}", flush=True)
        harness.run(pip + [f"torch=={TORCH}"], log)
        self.check_torch()
        return pip

    def finish(self, note: str) -> None:
        """Check torch once more and mark the venv complete (``note`` says what it holds)."""
        self.check_torch()
        (self.path / ".complete").write_text(note + "\n")
        print(f"{self.name} venv ready: {self.path} (torch {self.torch_version()})", flush=True)


def train_for(cmd: list[str], seconds: float, env: dict, log: Path) -> tuple[float, float, int]:
    """Run a toolkit's trainer for ``seconds`` of wall-clock, then stop its process group
    (SIGTERM, SIGKILL a minute later). Returns (start, stop) times and its exit code; a trainer
    that ends before the budget is a SystemExit (it crashed or ran out of steps)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle:
        handle.write("$ " + " ".join(cmd) + "\n")
        handle.flush()
        start = time.time()
        proc = subprocess.Popen(
            cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        stopped = time.time()
    if stopped - start < seconds:
        raise SystemExit(f"{Path(cmd[0]).name} stopped early ({proc.returncode}), see {log}")
    return start, stopped, proc.returncode


def checkpoints(run: Path, pattern: str) -> list[tuple[int, Path]]:
    """(step, path) of the files matching ``pattern`` under ``run`` whose name ends in
    ``_<step>``, oldest first."""
    found = []
    for path in run.glob(pattern):
        try:
            found.append((int(path.stem.rsplit("_", 1)[1]), path))
        except ValueError:
            continue
    return sorted(found)


def intact(path: Path) -> bool:
    """torch.save writes a zip; one cut short by the stop has no central directory."""
    try:
        with zipfile.ZipFile(path) as archive:
            return len(archive.namelist()) > 0
    except (zipfile.BadZipFile, OSError):
        return False


def last_intact(run: Path, pattern: str) -> tuple[int, Path] | None:
    """The newest intact checkpoint, or None."""
    kept = [(step, path) for step, path in checkpoints(run, pattern) if intact(path)]
    return kept[-1] if kept else None


def trained_before(run: Path, stats_path: Path, minutes: float, threads: int) -> dict | None:
    """The stats of a finished training in ``run`` (None after clearing ``run`` for a new one:
    an interrupted training starts again, so that its budget is one session). SystemExit when
    ``run`` was trained with another budget or thread count."""
    if stats_path.is_file():
        stats = json.loads(stats_path.read_text())
        if (stats["budget_minutes"], stats["threads"]) != (minutes, threads):
            raise SystemExit(
                f"{run} was trained for {stats['budget_minutes']} min with {stats['threads']} "
                f"threads, not {minutes} / {threads}: use another --out or remove {run}"
            )
        return stats
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    return None


def add_budget_arguments(p: argparse.ArgumentParser, out: str, save_every: int, inputs: str) -> None:
    """The options every peer script has: where, how long, how many threads, how often it
    saves, how many test inputs (``inputs`` is the help text), set-up and report only."""
    p.add_argument("--out", type=Path, default=Path(out))
    p.add_argument("--minutes", type=float, default=30.0, help="training wall-clock budget")
    p.add_argument("--threads", type=int, default=2, help="OMP/MKL threads of the toolkit")
    p.add_argument("--save-every", type=int, default=save_every, help="checkpoint every N steps")
    p.add_argument("--inputs", type=int, default=None, help=inputs)
    p.add_argument("--setup", action="store_true", help="only make the toolkit venv")
    p.add_argument("--report-only", action="store_true")
