"""The text tasks against their baselines at one equal budget (paper Table 2b–c, Table 4).

Every variant trains in its own process with the same steps, batch size and seed for its task,
then ``m3dgan evaluate`` scores it on the test split. Writes ``results.json`` and ``results.md``
into ``--out`` and prints the table.

    python bench/text_tasks.py --out bench/results/text_tasks
    python bench/text_tasks.py --tasks en2fr --steps en2fr=300        # a quick look
    python bench/text_tasks.py --report-only
    python bench/text_tasks.py --tasks en2fr --minutes 30 --out bench/results/text-30min  # equal time
    python bench/text_tasks.py --tasks en2fr --minutes 10 --variants mle,warm \
        --variant "warm:full:train.adversarial_warmup=0.7;train.domain_reference=1"  # a switch row

Variants per task:

- en2fr: ``full`` (M3D-GAN, generator attends over the source), ``mle`` (the plain attention GRU
  encoder-decoder with cross-entropy: the baseline), and both again with
  ``model.source_attention=false`` (the paper's single global source embedding) — the gap
  measures what attending over the source buys;
- emoji2text: ``full`` vs ``mle`` (CNN encoder + GRU decoder attending over the image's
  feature map, cross-entropy only) and the plain CNN-RNN captioner (the same with
  ``model.source_attention=false``: one image embedding, as the paper's CNN-RNN row);
- text2emoji: ``full`` vs ``cvae-gan``.

Columns: min = training minutes; BLEU-1 / BLEU-4 / chrF (sacreBLEU, all references of each
source, greedy decoding; "beam" columns: the same checkpoint decoded with ``--beam``, default 5);
KL = mean KL(q(e | T) ‖ N(0, I)) of the test targets, dep. on e = share of outputs that change
when e is encoded from the target instead of e = 0, and BLEU-4 / chrF (enc e) = the scores with
that encoded e (training's conditions; far above the e = 0 scores means the decoder leans on the
code it does not get at test time); named acc = emoji-judge top-1 accuracy on generated images
for the caption's emoji (top-5 too); IS = Inception-style score with the emoji judge; missing =
missing modes; BP = BLEU's brevity penalty of the greedy outputs (below 1: shorter than the
references); test NLL / end NLL = the teacher-forced cross-entropy in nats per target token and
per end mark, e = 0 (``m3dgan evaluate``'s ``test_nll`` / ``end_nll``); the ``real`` columns
are the same measures on real test artwork; steps/s and peak MB from the training run.

``--minutes`` trains every run for a wall-clock budget (``train.max_minutes``) instead of a step
count, so rows compare at equal wall-clock; ``steps`` is then how far each got, and a run cut
short resumes from its last checkpoint when the command is run again.

text2emoji is the zero-shot split (every test emoji unseen in training); text2emoji-seen has
every emoji in training and held-out captions for test (``m3dgan data build text2emoji-seen``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import harness

VARIANTS: dict[str, list[tuple[str, str, list[str]]]] = {
    "en2fr": [
        ("full", "full", []),
        ("mle", "mle", []),
        ("full, global source", "full", ["model.source_attention=false"]),
        # Luong's attentional layer before the vocabulary (OpenNMT-py's; built 2026-12-02, not
        # measured yet): the vocabulary layer reads 256 units instead of [state, context]
        ("mle, attentional 256", "mle", ["model.attentional_hidden=256"]),
        ("full, attentional 256", "full", ["model.attentional_hidden=256"]),
    ],
    "emoji2text": [
        ("full", "full", []),
        ("mle (CNN-RNN)", "mle", []),
        # the plain CNN-RNN captioner: one image embedding, no attention (the paper's baseline
        # row is "CNN-RNN-coco"; the row above attends over the image's feature map)
        ("mle (CNN-RNN without attention)", "mle", ["model.source_attention=false"]),
    ],
    "text2emoji": [("full", "full", []), ("cvae-gan", "cvae-gan", [])],
    "text2emoji-seen": [("full", "full", []), ("cvae-gan", "cvae-gan", [])],
}
TEXT_TARGETS = ("en2fr", "emoji2text")  # decoded greedy, then again with --beam
# The paper's text layout at half width (CBHG bank 8 × 64, GRUs 64/128), the same for every
# variant: at full width one en2fr step takes ~5 s on one core here, too slow for a benchmark.
BENCH_SCALE = [
    "model.text_embed=64",
    "model.text_prenet=[128,64]",
    "model.cbhg_bank=8",
    "model.cbhg_channels=64",
    "model.text_gru=64",
    "model.decoder_attention_rnn=128",
    "model.decoder_rnn=128",
]
COLUMNS = [
    ("steps", "steps", "{}"),
    ("batch_size", "batch", "{}"),
    ("minutes", "min", "{:.1f}"),
    ("bleu1", "BLEU-1", "{:.1f}"),
    ("bleu4", "BLEU-4", "{:.1f}"),
    ("chrf", "chrF", "{:.1f}"),
    ("bleu4_beam", "BLEU-4 beam", "{:.1f}"),
    ("chrf_beam", "chrF beam", "{:.1f}"),
    ("exact_match", "exact", "{:.1%}"),
    ("bleu_brevity_penalty", "BP", "{:.2f}"),
    ("test_nll", "test NLL", "{:.2f}"),
    ("end_nll", "end NLL", "{:.2f}"),
    ("posterior_kl", "KL (nats)", "{:.2f}"),
    ("code_dependence", "dep. on e", "{:.0%}"),
    ("bleu4_encoded", "BLEU-4 (enc e)", "{:.1f}"),
    ("chrf_encoded", "chrF (enc e)", "{:.1f}"),
    ("named_accuracy", "named acc", "{:.1%}"),
    ("named_accuracy_top5", "named top-5", "{:.1%}"),
    ("inception_score", "IS", "{:.2f}"),
    ("inception_score_real", "IS real", "{:.2f}"),
    ("missing_modes", "missing", "{}"),
    ("missing_modes_real", "missing real", "{}"),
    ("diversity_z", "div(z)", "{:.3f}"),
    ("steps_per_s", "steps/s", "{:.2f}"),
    ("peak_rss_mb", "peak MB", "{:.0f}"),
]


def bench_one(task: str, name: str, objective: str, overrides: list[str], args) -> None:
    run_dir = harness.run_dir(args.out, task, name)
    log = args.out / "logs" / f"{run_dir.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    m3dgan = [sys.executable, "-m", "m3dgan"]
    steps = args.steps[task]
    budget = args.minutes.get(task) if args.minutes else None
    every = 250 if budget else steps
    sets = [f"train.seed={args.seed}", f"train.checkpoint_every={every}"]
    sets += [f"train.sample_every={every if budget else max(steps // 4, 1)}"]
    sets += ([] if args.full_width else BENCH_SCALE) + overrides
    harness.train(
        run_dir, task, objective, sets,
        steps=steps, batch_size=args.batch_size[task], minutes=budget, log=log,
    )  # fmt: skip
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        cmd = ["evaluate", "--checkpoint", str(run_dir), "--out", str(metrics_path)]
        cmd += ["--samples", str(args.samples)]
        harness.run(m3dgan + cmd, log)
    beam_path = run_dir / "metrics_beam.json"
    if task in TEXT_TARGETS and args.beam > 1 and not beam_path.is_file():
        cmd = ["evaluate", "--checkpoint", str(run_dir), "--out", str(beam_path)]
        cmd += ["--beam", str(args.beam)]
        harness.run(m3dgan + cmd, log)
    meta = {"task": task, "variant": name, "objective": objective, "overrides": overrides}
    (run_dir / "variant.json").write_text(json.dumps(meta))


def write_report(out: Path) -> str:
    return harness.write_report(
        out,
        harness.with_extra_variants(out, VARIANTS),
        COLUMNS,
        "greedy decoding, and beam search where a column says beam",
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=Path("bench/results/text_tasks"))
    p.add_argument("--tasks", default="en2fr,emoji2text,text2emoji,text2emoji-seen")
    p.add_argument("--variants", default=None, help="comma list of variant names (default all)")
    p.add_argument(
        "--steps",
        default="en2fr=400,emoji2text=400,text2emoji=300,text2emoji-seen=300",
        type=lambda t: harness.parse_per_task(t, VARIANTS),
    )
    p.add_argument(
        "--batch-size",
        default="en2fr=32,emoji2text=32,text2emoji=16,text2emoji-seen=16",
        type=lambda t: harness.parse_per_task(t, VARIANTS),
    )
    harness.add_run_arguments(
        p, VARIANTS, "30 or en2fr=30,emoji2text=30", "full+warmup:full:train.adversarial_warmup=0.7"
    )
    p.add_argument(
        "--beam", type=int, default=5, help="text outputs: also decode with this beam (1: skip)"
    )
    p.add_argument("--samples", type=int, default=4, help="text2emoji: images per caption")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report-only", action="store_true")
    p.add_argument(
        "--full-width",
        action="store_true",
        help="the task's default widths, as a user trains (no BENCH_SCALE; today the paper's, "
        "slow on CPU)",
    )
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    if not args.report_only:
        known = {name for task in args.tasks.split(",") for name, _, _ in VARIANTS[task]}
        known |= {name for name, _, _ in args.variant}
        wanted = harness.chosen_variants(args.variants, known)
        if wanted and wanted - known:
            # a silently skipped lane leaves its side-by-side pair without a baseline
            p.error(
                f"--variants {', '.join(sorted(wanted - known))}: no such variant for "
                f"--tasks {args.tasks}; known: {', '.join(sorted(known))} (names hold spaces: "
                f"quote them)"
            )
        for task in args.tasks.split(","):
            for name, objective, overrides in [*VARIANTS[task], *args.variant]:
                if wanted and name not in wanted:
                    continue
                t0 = time.time()
                bench_one(task, name, objective, overrides, args)
                print(
                    f"[{time.time() - started:6.0f}s] {task}/{name} done in {time.time() - t0:.0f}s",
                    flush=True,
                )
    print(write_report(args.out))
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")


if __name__ == "__main__":
    main()
