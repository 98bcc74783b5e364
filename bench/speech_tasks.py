"""The speech tasks against the paper's baselines at one equal budget (paper Table 2d–e).

Every variant trains in its own process (one thread each, ``--jobs`` at a time) with the same
steps, batch size and seed, then ``m3dgan evaluate`` scores it on the test split of the built-in
espeak-ng corpus. Writes ``results.json`` and ``results.md`` into ``--out`` and prints the table.

    python bench/speech_tasks.py --out bench/results/speech_tasks
    python bench/speech_tasks.py --tasks tts --steps tts=200        # a quick look
    python bench/speech_tasks.py --report-only
    python bench/speech_tasks.py --tasks tts --minutes 30 --full-width \
        --variant full+phonemes:full:model.text_frontend=phonemes    # equal wall-clock rows

``--minutes`` trains every row for a wall-clock budget (``train.max_minutes``) instead of
``--steps``, so rows compare at equal wall-clock; a run cut short (a killed lane, the end of a
session) resumes from its last checkpoint with the same command. ``--variant`` adds a row with
its own objective and ``--set`` items; ``--full-width`` trains the task's default widths.

Variants:

- tts: ``full`` (M3D-GAN), ``gst`` (the GST-like row: reference encoder + token layer trained by
  reconstruction only) and ``mle`` (the Tacotron-like row: no reference, no adversarial loss);
  then one ablation row per switch of ``full``'s frame stack (``model.frame_dilation=2``,
  ``model.frame_style_norm=true``), a postnet (``model.speech_postnet=256``) and bf16 autocast (``train.amp=true``; AMX makes it fast,
  elsewhere it falls back to fp32), e.g. ``--variants "full,full, bf16"``;
- asr: ``full`` vs ``mle`` (the attention encoder-decoder trained by cross-entropy only).

TTS columns: WER of the judge recognizer (trained only on real espeak audio) on TTS output with
a reference of another sentence in each style, and with random z; the same judge on real test
audio and on real audio through mel + Griffin-Lim (the ceiling); style accuracy of the style
classifier on TTS output with references of each style, and on real audio. ASR columns: WER and
CER on the test split, and pocketsphinx on the same audio as an outside reference point.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import harness
import text_tasks

VARIANTS: dict[str, list[tuple[str, str, list[str]]]] = {
    "tts": [
        ("full", "full", []),
        ("gst (GST-like)", "gst", []),
        ("mle (Tacotron-like)", "mle", []),
        # ablation rows of tts `full`'s switches (built 2026-12-02, not measured yet)
        ("full, dilated frames", "full", ["model.frame_dilation=2"]),
        ("full, style-adaptive norm", "full", ["model.frame_style_norm=true"]),
        ("full, postnet 256", "full", ["model.speech_postnet=256"]),
        ("full, bf16", "full", ["train.amp=true"]),
    ],
    "asr": [("full", "full", []), ("mle (attention RNN)", "mle", [])],
}
# Half the paper's text and decoder widths for every variant, as in bench/text_tasks.py: at full
# width a tts step takes ~2.3 s on one core here.
BENCH_SCALE = [*text_tasks.BENCH_SCALE, "model.frame_prenet=[128,64]"]
COLUMNS = [
    ("steps", "steps", "{}"),
    ("batch_size", "batch", "{}"),
    ("wer_tts_ref", "WER (TTS, ref)", "{:.1%}"),
    ("wer_tts_z", "WER (TTS, z)", "{:.1%}"),
    ("wer_vocoded", "WER (real→GL, ceiling)", "{:.1%}"),
    ("wer_real", "WER (real)", "{:.1%}"),
    ("style_accuracy_tts", "style acc (TTS, ref)", "{:.1%}"),
    ("style_accuracy_real", "style acc (real)", "{:.1%}"),
    ("length_ratio", "length ratio", "{:.2f}"),
    ("wer", "WER", "{:.1%}"),
    ("cer", "CER", "{:.1%}"),
    ("pocketsphinx_wer", "pocketsphinx WER", "{:.1%}"),
    ("steps_per_s", "steps/s", "{:.2f}"),
]


def train_one(task: str, name: str, objective: str, overrides: list[str], args) -> Path:
    run_dir = harness.run_dir(args.out, task, name)
    log = args.out / "logs" / f"{run_dir.name}.log"
    steps = args.steps[task]
    budget = args.minutes.get(task) if args.minutes else None
    every = 250 if budget else min(steps, 250)
    sets = [f"train.seed={args.seed}", f"train.checkpoint_every={every}"]
    sets += [f"train.sample_every={every if budget else max(steps // 2, 1)}"]
    sets += ([] if args.full_width else BENCH_SCALE) + overrides
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    harness.train(
        run_dir, task, objective, sets,
        steps=steps, batch_size=args.batch_size[task], minutes=budget, log=log, env=env,
    )  # fmt: skip
    meta = {"task": task, "variant": name, "objective": objective, "overrides": overrides}
    (run_dir / "variant.json").write_text(json.dumps(meta))
    return run_dir


def evaluate_one(run_dir: Path, task: str, args) -> None:
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        cmd = ["evaluate", "--checkpoint", str(run_dir), "--out", str(metrics_path)]
        cmd += ["--inputs", str(args.inputs)]
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        harness.run(
            [sys.executable, "-m", "m3dgan", *cmd], run_dir.parent.parent / "logs" / "eval.log", env
        )


def write_report(out: Path) -> str:
    return harness.write_report(
        out,
        harness.with_extra_variants(out, VARIANTS),
        COLUMNS,
        "greedy decoding (joint CTC/attention where the asr model has a CTC head).",
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=Path("bench/results/speech_tasks"))
    p.add_argument("--tasks", default="tts,asr")
    p.add_argument("--variants", default=None, help="comma list of variant names (default all)")
    p.add_argument(
        "--steps", default="tts=600,asr=600", type=lambda t: harness.parse_per_task(t, VARIANTS)
    )
    p.add_argument(
        "--batch-size", default="tts=16,asr=16", type=lambda t: harness.parse_per_task(t, VARIANTS)
    )
    harness.add_run_arguments(
        p, VARIANTS, "120 or tts=120,asr=60", "full+phonemes:full:model.text_frontend=phonemes"
    )
    p.add_argument("--inputs", type=int, default=50, help="test sentences to synthesize/recognise")
    p.add_argument("--jobs", type=int, default=2, help="variants trained at once (1 thread each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report-only", action="store_true")
    p.add_argument(
        "--full-width",
        action="store_true",
        help="the task's default widths, as a user trains (no BENCH_SCALE; slow on CPU)",
    )
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    if not args.report_only:
        known = {name for task in args.tasks.split(",") for name, _, _ in VARIANTS[task]}
        wanted = harness.chosen_variants(args.variants, known | {v[0] for v in args.variant})
        jobs = [
            (task, name, objective, overrides)
            for task in args.tasks.split(",")
            for name, objective, overrides in [*VARIANTS[task], *args.variant]
            if not wanted or name in wanted
        ]

        def train(job):
            t0 = time.time()
            run_dir = train_one(*job, args)
            print(
                f"[{time.time() - started:6.0f}s] trained {job[0]}/{job[1]} in "
                f"{time.time() - t0:.0f}s",
                flush=True,
            )
            return run_dir, job[0]

        with ThreadPoolExecutor(args.jobs) as pool:
            trained = list(pool.map(train, jobs))
        # evaluation trains the judges once (cached), so evaluate one run at a time
        for run_dir, task in trained:
            t0 = time.time()
            evaluate_one(run_dir, task, args)
            print(
                f"[{time.time() - started:6.0f}s] evaluated {run_dir.name} in "
                f"{time.time() - t0:.0f}s",
                flush=True,
            )
    print(write_report(args.out))


if __name__ == "__main__":
    main()
