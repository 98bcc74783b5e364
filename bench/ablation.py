"""Reproduce the paper's ablation (Table 3) on the built-in data: every objective, one budget.

Each (task, objective) trains in its own process (so peak memory is per run) with the same
steps, batch size and seed, then ``m3dgan evaluate`` scores it. Writes ``results.json`` and
``results.md`` (a markdown table) into ``--out`` and prints the table.

    python bench/ablation.py --out bench/results/ablation                 # defaults below
    # two lanes on a 2-core machine, one thread each, sharing one --out:
    OMP_NUM_THREADS=1 python bench/ablation.py --tasks edges2emoji &
    OMP_NUM_THREADS=1 python bench/ablation.py --tasks digits
    python bench/ablation.py --report-only
    # a lane killed mid-run: the same command again resumes that run from its last checkpoint
    python bench/ablation.py --tasks digits --objectives pix2pix,full --steps 200   # a quick look
    python bench/ablation.py --tasks digits --objectives full --variant resize:model.upsample=resize
        # a technique switch: its row beside the same objective without it (same steps and seed)

Columns: realism = digit-classifier accuracy on translated test digits (paper Table 2a/3);
real = the same classifier on held-out real MNIST; div(z) / div(r) = diversity with random z /
random references (BicycleGAN protocol: 100 inputs × 20 samples); ref acc = vendor-classifier
accuracy on edges2emoji outputs made with references of each vendor (swap = reference vendor
differs from the source's own); identity / copies = the emoji judge names the source's emoji /
the reference's emoji on those outputs (the reference must set the vendor, not the content);
L1 (R=T) = L1 to the ground truth with the ground truth as reference (pixels in [0, 1]);
min = training minutes; img/s = training images per second; peak MB = peak RSS.

``--minutes`` gives every run a wall-clock budget (``train.max_minutes``) instead of a step
count: rows are then compared at equal wall-clock, and ``steps`` is how far each one got.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import harness

from m3dgan.checkpoint import latest_step
from m3dgan.config import load_yaml

ALL = ["pix2pix", "cvae-gan", "bicycle", "vae", "vae+lat", "full", "full-noatt"]
DEFAULT = {"digits": ALL, "edges2emoji": ["pix2pix", "bicycle", "full"]}
COLUMNS = [
    ("steps", "steps", "{}"),
    ("batch_size", "batch", "{}"),
    ("realism", "realism", "{:.1%}"),
    ("realism_real", "real", "{:.1%}"),
    ("diversity_z", "div(z)", "{:.4f}"),
    ("diversity_ref", "div(r)", "{:.4f}"),
    ("diversity_real", "div(real)", "{:.4f}"),
    ("reference_accuracy", "ref acc", "{:.1%}"),
    ("reference_accuracy_swap", "ref acc (swap)", "{:.1%}"),
    ("reference_identity", "identity", "{:.1%}"),
    ("reference_copies", "copies", "{:.1%}"),
    ("reconstruction_l1", "L1 (R=T)", "{:.4f}"),
    ("minutes", "min", "{:.1f}"),
    ("images_per_s", "img/s", "{:.1f}"),
    ("peak_rss_mb", "peak MB", "{:.0f}"),
]


def run(cmd: list[str], log: Path) -> None:
    with open(log, "a") as handle:
        handle.write("$ " + " ".join(cmd) + "\n")
        handle.flush()
        proc = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise SystemExit(f"command failed ({proc.returncode}), see {log}: {' '.join(cmd)}")


def bench_one(task: str, objective: str, args, variant: str = "", sets: tuple = ()) -> dict:
    """Train (unless done) and evaluate one row; ``variant`` names extra ``--set`` items."""
    row = f"{task}-{objective}" + (f"+{variant}" if variant else "")
    run_dir = args.out / "runs" / row
    log = args.out / "logs" / f"{row}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    m3dgan = [sys.executable, "-m", "m3dgan"]
    if _claimed_by_other_lane(run_dir):
        print(f"{row}: another lane is running it; skipping", flush=True)
        return {}
    resume = not harness.training_done(run_dir) and latest_step(run_dir) is not None
    if resume:
        # a run cut short (lane killed, session over): go on from its last checkpoint; under
        # --minutes the budget counts only the training time the checkpoint holds
        (run_dir / ".lane").write_text(str(os.getpid()))
        (run_dir / "metrics.json").unlink(missing_ok=True)
        run(m3dgan + ["train", "--resume", "--out", str(run_dir), "--no-progress"], log)
    elif not harness.training_done(run_dir):
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        (run_dir / ".lane").write_text(str(os.getpid()))
        row_info = {"task": task, "objective": objective, "variant": variant, "sets": list(sets)}
        (run_dir / "row.json").write_text(json.dumps(row_info))
        steps = args.steps[task]
        budget = args.minutes.get(task) if args.minutes else None
        if budget:
            steps = 1_000_000  # the budget stops the run
            sets = (f"train.max_minutes={budget}", *sets)
        run(
            m3dgan
            + [
                "train",
                "--task",
                task,
                "--objective",
                objective,
                "--out",
                str(run_dir),
                "--steps",
                str(steps),
                "--batch-size",
                str(args.batch_size[task]),
                "--no-progress",
                "--set",
                f"train.seed={args.seed}",
                "--set",
                f"train.checkpoint_every={steps if not budget else 500}",
                "--set",
                f"train.sample_every={max(steps // 4, 1) if not budget else 500}",
                *(arg for item in sets for arg in ("--set", item)),
            ],
            log,
        )
    if not harness.training_done(run_dir):  # stopped by a signal again: keep it, do not score
        raise SystemExit(f"{row} stopped before its end; the same command resumes it ({log})")
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        run(
            m3dgan
            + [
                "evaluate",
                "--checkpoint",
                str(run_dir),
                "--out",
                str(metrics_path),
                "--inputs",
                str(args.inputs),
                "--samples",
                str(args.samples),
            ],
            log,
        )
    return json.loads(metrics_path.read_text())


def _claimed_by_other_lane(run_dir: Path) -> bool:
    """True while another live bench process trains this run (lanes share one --out)."""
    lock = run_dir / ".lane"
    if not lock.is_file() or (run_dir / "metrics.json").is_file():
        return False
    pid = int(lock.read_text() or 0)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def table(results: list[dict]) -> str:
    head = ["task", "objective"] + [c[1] for c in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r["task"], r["objective"] + (f" + {r['variant']}" if r.get("variant") else "")]
        for key, _, fmt in COLUMNS:
            value = r.get(key)
            cell = "–" if value is None else fmt.format(value)
            if key.startswith("diversity") and r.get(key + "_se") is not None and value is not None:
                cell += f" ±{r[key + '_se']:.4f}"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_per_task(text: str, cast=int) -> dict[str, int]:
    """``800`` (all tasks) or ``digits=800,edges2emoji=600``."""
    if "=" not in text:
        return {t: cast(text) for t in DEFAULT}
    return {k: cast(v) for k, v in (item.split("=") for item in text.split(","))}


def collect(out: Path) -> list[dict]:
    """Every finished run under ``out/runs`` (so several lanes can share one ``--out``)."""
    results = []
    rows = {}
    for run_dir in sorted((out / "runs").glob("*")) if (out / "runs").is_dir() else []:
        info = run_dir / "row.json"  # runs written before variants: "<task>-<objective>"
        rows[run_dir.name] = (
            json.loads(info.read_text()) if info.is_file() else {"variant": "", "sets": []}
        )
    order = [f"{t}-{o}" for t in DEFAULT for o in ALL]
    names = sorted(
        rows, key=lambda n: (order.index(n.split("+")[0]) if n.split("+")[0] in order else 99, n)
    )
    for name in names:
        run_dir = out / "runs" / name
        if not (run_dir / "metrics.json").is_file() or not (run_dir / "train_stats.json").is_file():
            continue
        result = json.loads((run_dir / "metrics.json").read_text())
        result["variant"] = rows[name].get("variant", "")
        result["sets"] = rows[name].get("sets", [])
        stats = json.loads((run_dir / "train_stats.json").read_text())
        result.update(stats)
        train_cfg = load_yaml((run_dir / "config.yaml").read_text())["train"]
        result["batch_size"] = train_cfg["batch_size"]
        result["steps"] = result.get("step") or train_cfg["steps"]  # how far it got
        result["minutes"] = stats["seconds"] / 60 if stats.get("seconds") else None
        results.append(result)
    return results


def write_report(out: Path) -> str:
    results = collect(out)
    if not results:
        return "no finished runs"
    md = table(results)
    distances = "; ".join(sorted({f"{r['task']}: {r.get('distance', '–')}" for r in results}))
    meta = (
        f"{len(results)} runs. Diversity distance — {distances}. "
        f"Intra-op threads per run: {sorted({r.get('threads') for r in results})}."
    )
    return harness.save_report(out, results, md, meta)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=Path("bench/results/ablation"))
    p.add_argument("--tasks", default="digits,edges2emoji")
    p.add_argument(
        "--objectives", default=None, help="comma list; default: all on digits, 3 on edges2emoji"
    )
    p.add_argument("--steps", default="digits=700,edges2emoji=500", type=parse_per_task)
    p.add_argument("--batch-size", default="digits=16,edges2emoji=8", type=parse_per_task)
    p.add_argument(
        "--minutes",
        default=None,
        type=lambda t: parse_per_task(t, float),
        help="wall-clock budget per run instead of --steps, e.g. 30 or digits=30,edges2emoji=15",
    )
    p.add_argument("--inputs", type=int, default=100)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE[;KEY=VALUE]",
        help="also run each objective with these --set items, as a row named NAME "
        "(e.g. resize:model.upsample=resize); repeatable",
    )
    p.add_argument("--no-base", action="store_true", help="only the --variant rows")
    p.add_argument(
        "--report-only", action="store_true", help="only rebuild the table from finished runs"
    )
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    if not args.report_only:
        for task in args.tasks.split(","):
            objectives = args.objectives.split(",") if args.objectives else DEFAULT[task]
            variants = [] if args.no_base else [("", ())]
            for spec in args.variant:
                name, _, items = spec.partition(":")
                variants.append((name, tuple(i for i in items.split(";") if i)))
            for objective in objectives:
                for name, sets in variants:
                    t0 = time.time()
                    if not bench_one(task, objective, args, name, sets):
                        continue  # another lane has it
                    label = f"{task}/{objective}" + (f"+{name}" if name else "")
                    print(
                        f"[{time.time() - started:6.0f}s] {label} done in {time.time() - t0:.0f}s",
                        flush=True,
                    )
    print(write_report(args.out))
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")


if __name__ == "__main__":
    main()
