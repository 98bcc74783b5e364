"""Time per training step of ``full`` relative to ``mle`` on the sequence tasks (issue 13's goal:
at most 2×), with and without ``train.stack_branches`` and ``train.random_share``.

Each row is a real ``m3dgan train`` run of the task's default config on the built-in data (its own
process, nothing else running), timed by the trainer's own log over ``--steps`` steps after
``--warmup`` steps that are not counted (the first steps build kernels and fill caches); the
warm-up must be a divisor of ``--steps`` (log points). Rows: ``mle``, ``full``, ``full`` with
``train.stack_branches=true`` (one generator pass for both branches), the same with
``train.random_share=0.5`` (the random branch on half the rows), plus ``--variant
NAME:OBJECTIVE:KEY=VALUE[;KEY=VALUE]`` rows.

    python bench/step_time.py                               # tts, asr, en2fr; ~15 min on 2 cores
    python bench/step_time.py --tasks tts --steps 20
    python bench/step_time.py --tasks tts --only "mle;full, stacked, random share 0.5"
    python bench/step_time.py --report-only

Writes ``results.json`` / ``results.md`` into ``--out`` (default ``bench/results/step_time``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness

ROWS = [
    ("mle", "mle", []),
    ("full", "full", []),
    ("full, stacked branches", "full", ["train.stack_branches=true"]),
    (
        "full, stacked, random share 0.5",
        "full",
        ["train.stack_branches=true", "train.random_share=0.5"],
    ),
]
COLUMNS = [
    ("task", "task", "{}"),
    ("variant", "variant", "{}"),
    ("batch_size", "batch", "{}"),
    ("steps", "timed steps", "{}"),
    ("seconds_per_step", "s/step", "{:.2f}"),
    ("vs_mle", "× mle", "{:.2f}"),
    ("threads", "threads", "{}"),
]


def time_steps(task: str, objective: str, sets: list[str], steps: int, warmup: int) -> dict:
    """Seconds per step over ``steps`` steps after ``warmup`` untimed ones, in one trainer
    process: from its log, whose ``samples_per_s`` at step k is k·batch over the loop's time so
    far, so the time at step k is k·batch / samples_per_s."""
    with tempfile.TemporaryDirectory(prefix="m3dgan-step-time-") as tmp:
        run = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "m3dgan", "train", "--no-progress", "--task", task]
        cmd += ["--objective", objective, "--out", str(run), "--steps", str(warmup + steps)]
        sets = [f"train.log_every={warmup}", "train.checkpoint_every=100000", *sets]
        cmd += [a for s in sets for a in ("--set", s)]
        subprocess.run(cmd, check=True, capture_output=True)
        logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        stats = json.loads((run / "train_stats.json").read_text())
    batch = stats["images"] // (warmup + steps)
    # the key was images_per_s before 2026-12-02 (logs of older runs still have it)
    rate = {r["step"]: r.get("samples_per_s", r.get("images_per_s")) for r in logged}
    at = {step: step * batch / v for step, v in rate.items() if v}
    return {
        "seconds_per_step": (at[warmup + steps] - at[warmup]) / steps,
        "steps": steps,
        "warmup": warmup,
        "threads": stats.get("threads"),
        "batch_size": batch,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=Path("bench/results/step_time"))
    p.add_argument("--tasks", default="tts,asr,en2fr")
    p.add_argument("--steps", type=int, default=20, help="timed steps per row")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:OBJECTIVE:SETS")
    p.add_argument(
        "--only",
        default="",
        help="row names to (re)time, separated by ';' (names hold commas), e.g. "
        "'mle;full, stacked, random share 0.5'; the other rows of rows.json are kept",
    )
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    only = {n.strip() for n in args.only.split(";") if n.strip()}
    args.out.mkdir(parents=True, exist_ok=True)
    rows_path = args.out / "rows.json"
    rows = json.loads(rows_path.read_text()) if rows_path.is_file() else []
    extra = []
    for spec in args.variant:
        name, objective, sets = (spec.split(":", 2) + [""])[:3]
        extra.append((name, objective, [s for s in sets.split(";") if s]))
    if not args.report_only:
        for task in args.tasks.split(","):
            for name, objective, sets in ROWS + extra:
                if only and name not in only:
                    continue
                t0 = time.time()
                row = {"task": task, "variant": name, "objective": objective, "sets": sets}
                row.update(time_steps(task, objective, sets, args.steps, args.warmup))
                rows = [r for r in rows if (r["task"], r["variant"]) != (task, name)] + [row]
                rows_path.write_text(json.dumps(rows, indent=1))
                print(f"{task}/{name}: {row['seconds_per_step']:.2f} s/step "
                      f"({time.time() - t0:.0f} s)", flush=True)  # fmt: skip
    # against the plain ``mle`` row (a ``--variant`` row may train ``mle`` with switches)
    mle = {r["task"]: r["seconds_per_step"] for r in rows if r["variant"] == "mle"}
    for r in rows:
        r["vs_mle"] = r["seconds_per_step"] / mle[r["task"]] if r["task"] in mle else None
    md = harness.markdown_table(rows, COLUMNS)
    warmups = sorted({r.get("warmup", args.warmup) for r in rows})  # rows keep their own
    untimed = " or ".join(str(w) for w in warmups)
    meta = f"task defaults; {untimed} untimed steps first; one process per row"
    print(harness.save_report(args.out, rows, md, meta))


if __name__ == "__main__":
    main()
