"""Where a training step's time goes: ``torch.profiler`` over real ``m3dgan train`` steps of one
task and objective, as a table per operator and per part of the model.

A step-time goal (issue 13: ``full`` at most 2× ``mle``; issue 14: our steps against OpenNMT-py's)
is met by making the dear parts cheaper, and this says which parts are dear. The run is a normal
``m3dgan train`` (the task's defaults, ``--set`` on top) in a temporary folder; after
``--warmup`` untimed steps the next ``--steps`` steps are profiled, then the run stops. Nothing
outside the training loop is profiled (data set loading, model building).

Two tables:

- **parts**: the forward time of each part of the model (``source_prenet``,
  ``reference_prenet``, ``attention.encoder`` = Enc_r, ``attention.tokens`` = the token layer,
  ``generator``, ``disc_enc``, ``disc_rand``), labelled with ``record_function``, and the rest of the step (``backward``,
  the optimizers, the moving average, the batch) as what is left of the step's time. A part
  runs several times a step (G on both branches, D on real and fake pairs): its row sums them.
- **operators**: the top operators by self CPU time (``key_averages``), per step.

    python bench/profile_step.py --task en2fr --objective mle
    python bench/profile_step.py --task tts --steps 10 --set model.speech_postnet=256
    python bench/profile_step.py --task asr --objective full --set train.adversarial_warmup=0

Writes ``parts.md``, ``operators.txt`` and ``profile.json`` into ``--out`` (default
``bench/results/profile/<task>-<objective>``) and prints the parts table. Threads: torch's
default (``OMP_NUM_THREADS`` sets it); run alone on the machine for timings that mean anything.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile, schedule

from m3dgan import cli
from m3dgan import train as train_module
from m3dgan.core.step import TrainStep

# the model's parts by attribute path (E_att is attention.encoder, Enc_r, and attention.tokens,
# the universal token layer: M3DGAN calls E_att through encode/embed, not forward)
PARTS = (
    "source_prenet",
    "reference_prenet",
    "attention.encoder",
    "attention.tokens",
    "generator",
    "disc_enc",
    "disc_rand",
)


def _label(module: torch.nn.Module, name: str) -> None:
    """Run ``module``'s forward inside ``record_function(name)`` (on this instance only)."""
    forward = module.forward

    def labelled(*args, **kwargs):
        with record_function(name):
            return forward(*args, **kwargs)

    module.forward = labelled


def profile_run(argv: list[str], warmup: int, steps: int) -> tuple[profile, float]:
    """Train with ``argv`` (``m3dgan train`` arguments without ``--steps``) for ``warmup +
    steps`` steps, profiling the last ``steps``; returns the profiler and the mean seconds
    per profiled step (wall-clock, between the profiler's step marks)."""
    build_state, call = train_module.build_state, TrainStep.__call__
    marks: list[float] = []
    prof = profile(
        activities=[ProfilerActivity.CPU],
        schedule=schedule(wait=0, warmup=warmup, active=steps, repeat=1),
        record_shapes=False,
    )

    def build_and_label(*args, **kwargs):
        state = build_state(*args, **kwargs)
        for name in PARTS:
            part = state.model
            for attr in name.split("."):
                part = getattr(part, attr, None)
            if part is not None:
                _label(part, f"part::{name}")
        return state

    def step_and_mark(self, *args, **kwargs):
        logs = call(self, *args, **kwargs)
        prof.step()
        marks.append(time.perf_counter())
        return logs

    train_module.build_state = build_and_label
    TrainStep.__call__ = step_and_mark
    try:
        with prof:
            code = cli.main([*argv, "--steps", str(warmup + steps), "--no-progress"])
    finally:
        train_module.build_state, TrainStep.__call__ = build_state, call
    if code:
        raise SystemExit(f"m3dgan train exited with {code}")
    timed = marks[warmup:]  # the profiled steps end at these marks; the first starts at warmup
    seconds = (timed[-1] - marks[warmup - 1]) / len(timed)  # main() asks for warmup >= 1
    return prof, seconds


def parts_table(events, steps: int, seconds: float) -> tuple[str, dict]:
    """Markdown table of the parts' forward milliseconds per step (``events``: the profiler's
    ``key_averages()``), and the numbers."""
    totals = {e.key: e for e in events if e.key.startswith("part::")}
    rows, numbers = [], {}
    for name in PARTS:
        event = totals.get(f"part::{name}")
        if event is None:
            continue
        ms = event.cpu_time_total / 1000 / steps
        calls = event.count / steps
        numbers[name] = {"forward_ms_per_step": ms, "calls_per_step": calls}
        share = ms / (seconds * 1000)
        rows.append(f"| {name} (forward) | {calls:g} | {ms:.1f} | {share:.0%} |")
    forward = sum(n["forward_ms_per_step"] for n in numbers.values())
    rest = seconds * 1000 - forward
    share = rest / (seconds * 1000)
    rows.append(f"| the rest: backward, optimizers, EMA, batch | | {rest:.1f} | {share:.0%} |")
    head = ["| part | calls a step | ms a step | share of the step |", "|---|---|---|---|"]
    threads = torch.get_num_threads()
    foot = f"\n\n{seconds * 1000:.1f} ms a step over {steps} profiled steps ({threads} threads)."
    return "\n".join(head + rows) + foot, numbers


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--task", required=True)
    p.add_argument("--objective", default="full")
    p.add_argument("--steps", type=int, default=20, help="profiled steps")
    p.add_argument("--warmup", type=int, default=5, help="steps first, not profiled (>= 1)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--data", type=Path, default=None, help="a data set folder (train --data)")
    p.add_argument("--rows", type=int, default=30, help="operators in operators.txt")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.warmup < 1 or args.steps < 1:
        p.error("--warmup and --steps must be at least 1")
    out = args.out or Path("bench/results/profile") / f"{args.task}-{args.objective}"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="m3dgan-profile-") as tmp:
        argv = ["train", "--task", args.task, "--objective", args.objective, "--out", tmp]
        argv += ["--set", "train.sample_every=1000000", "--set", "train.checkpoint_every=1000000"]
        if args.data:
            argv += ["--data", str(args.data)]
        if args.batch_size:
            argv += ["--batch-size", str(args.batch_size)]
        for item in args.set:
            argv += ["--set", item]
        prof, seconds = profile_run(argv, args.warmup, args.steps)
    events = prof.key_averages()  # once: it walks every recorded event
    md, numbers = parts_table(events, args.steps, seconds)
    ops = events.table(sort_by="self_cpu_time_total", row_limit=args.rows)
    (out / "parts.md").write_text(md + "\n")
    (out / "operators.txt").write_text(ops + "\n")
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)
    record = {
        "task": args.task,
        "objective": args.objective,
        "sets": args.set,
        "steps": args.steps,
        "warmup": args.warmup,
        "threads": torch.get_num_threads(),
        "seconds_per_step": seconds,
        "parts": numbers,
        "operators": [
            {"name": e.key, "self_ms_per_step": e.self_cpu_time_total / 1000 / args.steps,
             "calls_per_step": e.count / args.steps}
            for e in top[: args.rows] if not e.key.startswith(("part::", "ProfilerStep"))
        ],  # fmt: skip
    }
    (out / "profile.json").write_text(json.dumps(record, indent=1))
    print(md)
    print(f"operators: {out / 'operators.txt'}", file=sys.stderr)


if __name__ == "__main__":
    main()
