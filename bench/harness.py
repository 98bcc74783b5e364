"""What the task benchmarks share: running a step as a logged subprocess, collecting finished
runs, and the Markdown/JSON report. ``bench/text_tasks.py`` and ``bench/speech_tasks.py`` each
define their variants and columns and call these.

A run lives in ``<out>/runs/<task>-<variant slug>/`` (``config.yaml``, ``train_stats.json``,
``metrics.json``); its log in ``<out>/logs/``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from m3dgan.checkpoint import latest_step
from m3dgan.config import load_yaml

Variants = dict[str, list[tuple[str, str, list[str]]]]  # task -> (name, objective, --set items)
Columns = list[tuple[str, str, str]]  # (metrics key, header, format)
BEAM_KEYS = ("bleu1", "bleu4", "chrf")  # read from metrics_beam.json as <key>_beam


def slug(name: str) -> str:
    return name.replace(", ", "-").replace(" ", "-").replace("(", "").replace(")", "")


def run_dir(out: Path, task: str, name: str) -> Path:
    return out / "runs" / f"{task}-{slug(name)}"


def training_done(run: Path) -> bool:
    """Whether the run in ``run`` has finished training: its last session wrote
    ``train_stats.json`` and did not end by a signal (``"ended": "stopped"``: a killed lane, the
    end of a session; such a run resumes from its checkpoint)."""
    path = run / "train_stats.json"
    return path.is_file() and json.loads(path.read_text()).get("ended") != "stopped"


def run(cmd: list[str], log: Path, env: dict | None = None) -> None:
    """Run ``cmd`` with its output appended to ``log``; stop the benchmark if it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle:
        handle.write("$ " + " ".join(cmd) + "\n")
        handle.flush()
        proc = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env)
    if proc.returncode:
        raise SystemExit(f"command failed ({proc.returncode}), see {log}: {' '.join(cmd)}")


def train(
    folder: Path,
    task: str,
    objective: str,
    sets: list[str],
    *,
    steps: int,
    batch_size: int,
    minutes: float | None,
    log: Path,
    env: dict | None = None,
) -> None:
    """Train the run in ``folder`` unless it has finished (:func:`training_done`).

    A fresh run trains ``objective`` on ``task`` with the ``--set`` items ``sets`` (seed,
    checkpoint and sample intervals, widths: the caller's) for ``steps`` steps or, with
    ``minutes``, until that wall-clock budget stops it (``train.max_minutes``). A budget run
    cut short (a killed lane, the end of a session) resumes from its last checkpoint; a step
    run cut short resumes towards ``steps``."""
    if training_done(folder):
        return
    (folder / "metrics.json").unlink(missing_ok=True)  # of a run stopped mid-way
    if minutes:
        sets, steps = [f"train.max_minutes={minutes}", *sets], 1_000_000
    if latest_step(folder) is not None and minutes:
        cmd = ["train", "--out", str(folder), "--resume"]
    elif (folder / "config.yaml").is_file():
        cmd = ["train", "--out", str(folder), "--resume", "--steps", str(steps)]
    else:
        cmd = ["train", "--task", task, "--objective", objective, "--out", str(folder)]
        cmd += ["--steps", str(steps), "--batch-size", str(batch_size)]
        cmd += [a for s in sets for a in ("--set", s)]
    run([sys.executable, "-m", "m3dgan", *cmd, "--no-progress"], log, env)


def parse_variant(spec: str) -> tuple[str, str, list[str]]:
    """``NAME:OBJECTIVE:KEY=VALUE;KEY=VALUE`` → (name, objective, --set items)."""
    name, objective, items = (spec.split(":", 2) + ["", ""])[:3]
    if not name or not objective:
        raise argparse.ArgumentTypeError(f"--variant {spec!r}: expected NAME:OBJECTIVE[:SETS]")
    return name, objective, [i for i in items.split(";") if i]


def with_extra_variants(out: Path, variants: Variants) -> Variants:
    """``variants`` plus the ``--variant`` rows trained into ``out`` (read from their
    ``variant.json``), each after its task's own rows."""
    merged = {task: list(rows) for task, rows in variants.items()}
    for path in sorted((out / "runs").glob("*/variant.json")):
        meta = json.loads(path.read_text())
        rows = merged.setdefault(meta["task"], [])
        if meta["variant"] not in [name for name, _, _ in rows]:
            rows.append((meta["variant"], meta["objective"], meta["overrides"]))
    return merged


def collect(out: Path, variants: Variants) -> list[dict]:
    """Metrics + training stats + budget of every finished run, in the variants' order.

    A run whose folder is absent (run folders are not committed: a fresh checkout has none) keeps
    its row from the ``results.json`` already in ``out``, so adding runs to a committed results
    folder does not drop the rows measured before."""
    path = out / "results.json"
    before = json.loads(path.read_text()) if path.is_file() else []
    kept = {(r.get("task"), r.get("variant")): r for r in before}
    results = []
    for task, entries in variants.items():
        for name, _, _ in entries:
            folder = run_dir(out, task, name)
            if not folder.exists() and (task, name) in kept:
                results.append(kept[(task, name)])
                continue
            if not (folder / "metrics.json").is_file():
                continue
            result = json.loads((folder / "metrics.json").read_text())
            stats = json.loads((folder / "train_stats.json").read_text())
            result.update(stats)
            train_cfg = load_yaml((folder / "config.yaml").read_text())["train"]
            # how far it got: the evaluated checkpoint's step (a wall-clock budget stops early)
            result["steps"] = result.get("step") or train_cfg["steps"]
            result["batch_size"] = train_cfg["batch_size"]
            result["minutes"] = stats["seconds"] / 60 if stats.get("seconds") else None
            beam = folder / "metrics_beam.json"  # the same checkpoint with beam search
            if beam.is_file():
                scores = json.loads(beam.read_text())
                result.update({f"{k}_beam": scores.get(k) for k in BEAM_KEYS})
                result["beam"] = scores.get("beam")
            if stats.get("seconds"):  # this training session only (a resumed run: its last leg)
                result["steps_per_s"] = stats["images"] / result["batch_size"] / stats["seconds"]
            result["variant"] = name
            result.pop("examples", None)
            results.append(result)
    return results


def markdown_table(rows: list[dict], columns: Columns) -> str:
    """One Markdown row per dict, one column per (key, header, format); "–" where a value is
    missing."""
    head = [c[1] for c in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = ["–" if r.get(k) is None else fmt.format(r[k]) for k, _, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(results: list[dict], columns: Columns) -> str:
    used = [c for c in columns if any(r.get(c[0]) is not None for r in results)]
    head = ["task", "variant"] + [c[1] for c in used]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r["task"], r["variant"]]
        cells += ["–" if r.get(k) is None else fmt.format(r[k]) for k, _, fmt in used]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(out: Path, variants: Variants, columns: Columns, note: str = "") -> str:
    """``results.json`` + ``results.md`` in ``out``; returns the Markdown."""
    results = collect(out, variants)
    if not results:
        return "no finished runs"
    md = table(results, columns)
    threads = sorted({r.get("threads") for r in results}, key=str)
    meta = f"{len(results)} runs; intra-op threads per run: {threads}; {note}".rstrip("; ")
    return save_report(out, results, md, meta)


def save_report(out: Path, rows: list[dict], md: str, meta: str) -> str:
    """``results.json`` (the rows, without their ``examples``) and ``results.md`` (the table,
    then ``meta``) in ``out``; returns what results.md holds, for printing."""
    (out / "results.json").write_text(
        json.dumps([{k: v for k, v in r.items() if k != "examples"} for r in rows], indent=1)
    )
    (out / "results.md").write_text(md + "\n\n" + meta + "\n")
    return md + "\n\n" + meta


def parse_per_task(text: str, tasks, cast=int) -> dict:
    """``800`` (every task) or ``task_a=800,task_b=600``."""
    if "=" not in text:
        return {t: cast(text) for t in tasks}
    return {k: cast(v) for k, v in (item.split("=") for item in text.split(","))}


def run_lanes(names: list[str], table: dict, out: Path, lanes: int) -> None:
    """Run the named jobs (``table``: name → (command, planned minutes)) on ``lanes`` queues,
    each job's output in ``out/logs/<name>.log``; with more than one lane every job gets one
    thread (OMP/MKL), so the lanes do not oversubscribe the cores. Stops with an error naming
    the jobs that failed.

    The jobs run side by side in groups of ``lanes``, in the order given: the next group starts
    when the whole group has ended. Runs compared at equal wall-clock (``full`` beside ``mle``)
    are listed next to each other, so they share the same hours of the machine: its speed
    changes by up to a quarter between hours here, more than some of the differences measured."""
    env = dict(os.environ)
    if lanes > 1:
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    failed: list[str] = []
    (out / "logs").mkdir(parents=True, exist_ok=True)

    def run(name: str) -> None:
        cmd, _ = table[name]
        print(f"[{name}] {' '.join(cmd)}", flush=True)
        with open(out / "logs" / f"{name}.log", "a") as log:
            code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
        print(f"[{name}] exit {code}", flush=True)
        if code:
            failed.append(name)  # list.append is atomic under the GIL

    for first in range(0, len(names), lanes):
        group = [threading.Thread(target=run, args=(n,)) for n in names[first : first + lanes]]
        for t in group:
            t.start()
        for t in group:
            t.join()
        if failed:
            break
    if failed:
        raise SystemExit(f"failed: {failed}; see {out / 'logs'}")


def torch_threads() -> int | None:
    """The intra-op threads a run here would get (OMP_NUM_THREADS, else the CPU count)."""
    value = os.environ.get("OMP_NUM_THREADS")
    return int(value) if value and value.isdigit() else os.cpu_count()


def chosen_variants(spec: str | None, known: set[str]) -> set[str] | None:
    """``--variants`` → the set of names it lists (None: all). The list is comma-separated but
    some names hold a comma ("full, global source"): consecutive pieces are joined back while
    that makes a known name (the longest wins). A piece that is no known name stays as it is,
    for the caller's "no such variant" error."""
    if not spec:
        return None
    pieces, names, i = spec.split(","), set(), 0
    while i < len(pieces):
        end = next((j for j in range(len(pieces), i, -1) if ",".join(pieces[i:j]) in known), i + 1)
        names.add(",".join(pieces[i:end]))
        i = end
    return names


def add_run_arguments(p: argparse.ArgumentParser, variants: Variants, minutes: str, variant: str):
    """``--minutes`` and ``--variant``, as the task benchmarks take them (``minutes`` and
    ``variant``: examples for the help)."""
    p.add_argument(
        "--minutes",
        default=None,
        type=lambda t: parse_per_task(t, variants, float),
        help="wall-clock budget per run instead of --steps (equal wall-clock, not equal steps), "
        f"e.g. {minutes}; a run cut short resumes from its checkpoint",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        type=parse_variant,
        metavar="NAME:OBJECTIVE:KEY=VALUE[;KEY=VALUE]",
        help=f"an extra row for every task in --tasks (e.g. '{variant}'); repeatable; "
        "--variants still filters by name",
    )


def add_lane_arguments(p: argparse.ArgumentParser, out: str) -> None:
    """``--out``, ``--lanes``, ``--jobs`` and ``--report-only`` of the goals scripts."""
    p.add_argument("--out", type=Path, default=Path(out))
    p.add_argument("--lanes", type=int, default=2, help="queues run at once (1 thread each if >1)")
    p.add_argument("--jobs", default=None, help="comma list of job names (default: all)")
    p.add_argument("--report-only", action="store_true")


def chosen_jobs(jobs: str | None, table: dict) -> list[str]:
    """The job names of ``--jobs`` (all of ``table`` when None); exits naming unknown ones."""
    if not jobs:
        return list(table)
    unknown = set(jobs.split(",")) - set(table)
    if unknown:
        raise SystemExit(f"unknown jobs {sorted(unknown)}; choose from {list(table)}")
    return jobs.split(",")
