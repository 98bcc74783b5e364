"""Issue 12's goals table: the default image recipe against the recipe it replaced, 30 min each.

For each task (edges2emoji, digits) two runs train on 2 CPU cores with nothing else running:

- ``before``: the defaults as they were when the issue was filed (the paper's R = T, sources as
  given, one-output D_enc, no EMA, fp32, batch 16) for the whole budget (``train.max_minutes``);
- ``recipe``: today's default config as a new user gets it (``m3dgan train --task T``), with the
  budget only as a guard (on a slower machine it stops the run at the budget).

Then ``m3dgan evaluate`` scores both (100 test inputs × 20 samples) and the table lists each goal
of the issue with the value before, the value now, the goal and whether it is met. Writes
``results.json`` / ``results.md`` / ``goals.md`` into ``--out``.

    python bench/image_goals.py                        # both tasks, 4 runs of 30 min (~2.3 h)
    python bench/image_goals.py --tasks edges2emoji    # one task
    python bench/image_goals.py --report-only          # the table from finished runs
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ablation  # noqa: E402  (the bench folder's own module)

from m3dgan.config import layered_config  # noqa: E402

TASKS = ("edges2emoji", "digits")
# the settings that were the defaults when issue 12 was filed; the paper's own where it says
BEFORE = (
    "train.domain_reference=0",
    "train.cross_domain=0",
    "train.ema_decay=0",
    "train.amp=false",
    "model.domain_discriminator=false",
    "model.disc_norm=instance",
    "loss.diffaugment=",
)
# (task, metric key, measure, goal, higher is better, value when the issue was filed)
GOALS = [
    ("edges2emoji", "reference_accuracy", "vendor accuracy, reference of another emoji of each vendor", 0.90, True, "≈ 50 % (500 steps)"),
    ("edges2emoji", "diversity_ratio", "diversity of 20 codes / real-pair distance", 0.50, True, "0.40 (500 steps)"),
    ("edges2emoji", "reconstruction_l1", "L1 to the ground truth, ground truth as reference", 0.08, False, "–"),
    ("edges2emoji", "reference_identity", "outputs the emoji judge names as the source's emoji", None, True, "–"),
    ("edges2emoji", "reference_copies", "outputs named as the reference's emoji (content copied)", None, False, "–"),
    ("digits", "realism", "realism (MNIST judge, unseen fonts, random z)", 0.90, True, "68.9 % (2,000 steps)"),
    ("digits", "diversity_ratio", "diversity of 20 codes / real-pair distance", None, True, "0.64 (2,000 steps)"),
]  # fmt: skip
PERCENT = {"reference_accuracy", "reference_identity", "reference_copies", "realism"}


def _fmt(key: str, value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.1%}" if key in PERCENT else f"{value:.3f}"


def _runs(out: Path) -> dict[tuple[str, str], dict]:
    """(task, "before" | "recipe") → metrics + stats of the finished runs."""
    found = {}
    for result in ablation.collect(out):
        which = result.get("variant") or "recipe"
        real = result.get("diversity_real")
        if real and result.get("diversity_z") is not None:
            result["diversity_ratio"] = result["diversity_z"] / real
        found[(result["task"], which)] = result
    return found


def goals_table(out: Path) -> str:
    runs = _runs(out)
    lines = [
        "| task | measure | when filed | before (30 min) | recipe | goal | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, key, measure, goal, higher, filed in GOALS:
        before = runs.get((task, "before"), {}).get(key)
        now = runs.get((task, "recipe"), {}).get(key)
        target = "–" if goal is None else ("≥ " if higher else "≤ ") + _fmt(key, goal)
        met = "–"
        if goal is not None and now is not None:
            met = "yes" if (now >= goal if higher else now <= goal) else "**no**"
        cells = [task, measure, filed, _fmt(key, before), _fmt(key, now), target, met]
        lines.append("| " + " | ".join(cells) + " |")
    for task in TASKS:
        b, r = runs.get((task, "before"), {}), runs.get((task, "recipe"), {})
        if b.get("images_per_s") and r.get("images_per_s"):
            ratio = r["images_per_s"] / b["images_per_s"]
            lines.append(
                f"| {task} | train images/s | – | {b['images_per_s']:.1f} | "
                f"{r['images_per_s']:.1f} ({ratio:.2f}×) | no regression beyond 10 % at the same "
                f"settings | see note |"
            )
        for which, row in (("before", b), ("recipe", r)):
            if row:
                lines.append(
                    f"| {task} | {which}: steps × batch in minutes | – | | "
                    f"{row['steps']} × {row['batch_size']} in {row.get('minutes') or 0:.1f} min | "
                    "≤ 30 min | |"
                )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=Path("bench/results/image_goals"))
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--minutes", type=float, default=30.0, help="budget of every run")
    p.add_argument("--skip-before", action="store_true", help="only the recipe rows")
    p.add_argument("--inputs", type=int, default=100)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    if not args.report_only:
        for task in args.tasks.split(","):
            recipe = layered_config(task=task)
            opts = argparse.Namespace(
                out=args.out,
                steps={task: recipe.train.steps},
                batch_size={task: recipe.train.batch_size},
                minutes=None,
                inputs=args.inputs,
                samples=args.samples,
                seed=recipe.train.seed,
            )
            guard = (f"train.max_minutes={args.minutes}",)
            ablation.bench_one(task, recipe.objective, opts, "", guard)
            print(f"[{time.time() - started:6.0f}s] {task} recipe done", flush=True)
            if not args.skip_before:
                opts.minutes, opts.batch_size = {task: args.minutes}, {task: 16}
                ablation.bench_one(task, recipe.objective, opts, "before", BEFORE)
                print(f"[{time.time() - started:6.0f}s] {task} before done", flush=True)
    detail = ablation.write_report(args.out)
    goals = goals_table(args.out)
    (args.out / "goals.md").write_text(goals + "\n")
    (args.out / "goals.json").write_text(
        json.dumps({f"{t}/{w}": r for (t, w), r in _runs(args.out).items()}, indent=1)
    )
    print(detail + "\n\n" + goals)
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")


if __name__ == "__main__":
    main()
