"""Issue 14's goals table: the text tasks at equal wall-clock against their baselines and an
outside toolkit.

Every run trains for a wall-clock budget with the task's default config (the recipe a user gets
from ``m3dgan train --task T``; ``bench/text_tasks.py --full-width``), then ``m3dgan evaluate``
scores it (greedy, and beam 5 for text outputs). The runs:

- en2fr, ``full`` and ``mle``, 30 and 90 minutes each; OpenNMT-py (``bench/nmt_anchor.py``) for
  the same 30 and 90 minutes on the same data, scored by the same functions;
- emoji2text, ``full`` and ``mle`` (the CNN-RNN baseline, attending over the image), 30 minutes,
  and the plain CNN-RNN (``mle`` with one image embedding, no attention) beside the 30-minute
  anchor;
- text2emoji (zero-shot split) and text2emoji-seen (held-out captions of seen emoji), ``full`` and
  ``cvae-gan``, 30 minutes.

That is 540 minutes of training. ``--lanes 2`` runs two jobs at once with one thread each, each
``full`` run beside the baseline it is compared with (the machine's speed changes between hours;
about 5 hours on 2 cores, as the two anchors' budgets differ); ``--lanes 1`` runs them one after
another with the machine's threads. Finished runs are kept, and a run cut short resumes from its
last checkpoint (the anchor's training restarts), so the same command goes on where it stopped.

    python bench/text_goals.py --lanes 2            # everything, then the table
    python bench/text_goals.py --report-only        # the table from finished runs
    python bench/text_goals.py --jobs en2fr-30-full,en2fr-30-mle   # one pair (a wrong name lists them)

Writes ``goals.md`` / ``goals.json`` into ``--out`` (default ``bench/results/text_goals``); each
job's own table is in its folder (``30min/results.md``, ``anchor-30min/results.md``, ...).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import harness  # noqa: E402  (the bench folder's own modules)
import text_tasks  # noqa: E402

BUDGETS = (30, 90)  # en2fr's two budgets (minutes); the other tasks use the first
PERCENT = {"named_accuracy_top5", "code_dependence"}
NO_ATTENTION = "mle (CNN-RNN without attention)"  # bench/text_tasks.py's plain captioner row


def jobs(out: Path, threads: int) -> dict[str, tuple[list[str], int]]:
    """Job name → (command, planned minutes), in the order they run: the runs a goal compares
    come in pairs (``full`` and its baseline), which ``--lanes 2`` runs side by side
    (``harness.run_lanes``); the shorter budget first, so its rows land first."""
    py, text = sys.executable, [str(BENCH / "text_tasks.py"), "--full-width"]
    short, long = BUDGETS

    def tasks(task: str, variant: str, minutes: int) -> tuple[list[str], int]:
        cmd = [py, *text, "--tasks", task, "--variants", variant, "--minutes", str(minutes)]
        return cmd + ["--out", str(out / f"{minutes}min")], minutes

    def anchor(minutes: int) -> tuple[list[str], int]:
        cmd = [py, str(BENCH / "nmt_anchor.py"), "--minutes", str(minutes)]
        return cmd + ["--threads", str(threads), "--out", str(out / f"anchor-{minutes}min")], minutes

    pairs = [("en2fr", "full", "mle", short), ("en2fr", "full", "mle", long)]
    pairs += [("emoji2text", "full", "mle (CNN-RNN)", short)]
    pairs += [(t, "full", "cvae-gan", short) for t in ("text2emoji", "text2emoji-seen")]
    table: dict[str, tuple[list[str], int]] = {}
    for task, ours, baseline, minutes in pairs:
        where = f"{task}-{minutes}" if task == "en2fr" else task
        for variant in (ours, baseline):
            table[f"{where}-{variant.split()[0]}"] = tasks(task, variant, minutes)
    # an odd job out: beside the 30-minute anchor (both 30 minutes), the 90-minute one alone
    table["emoji2text-no-attention"] = tasks("emoji2text", NO_ATTENTION, short)
    table[f"anchor-{short}"], table[f"anchor-{long}"] = anchor(short), anchor(long)
    return table


def _rows(folder: Path) -> dict[tuple[str, str], dict]:
    """(task, variant) → the row of every finished ``text_tasks`` run in ``folder`` (its report
    rebuilt here: jobs of two lanes share the folder)."""
    if not (folder / "runs").is_dir() and not (folder / "results.json").is_file():
        return {}
    text_tasks.write_report(folder)
    path = folder / "results.json"  # none yet while its first runs are still training
    rows = json.loads(path.read_text()) if path.is_file() else []
    return {(r["task"], r["variant"]): r for r in rows}


def _anchor(folder: Path) -> dict:
    """The anchor's greedy row (our benchmark decodes greedily; beam rows sit beside it)."""
    path = folder / "results.json"
    rows = json.loads(path.read_text()) if path.is_file() else []
    return {r["decoding"]: r for r in rows}


def _fmt(key: str, value) -> str:
    if value is None:
        return "–"
    if key in PERCENT:
        return f"{value:.1%}"
    if key == "missing_modes":
        return str(value)
    return f"{value:.2f}" if key in {"inception_score", "posterior_kl"} else f"{value:.1f}"


def goals(out: Path) -> tuple[str, dict]:
    """The goals table (Markdown) and the numbers behind it."""
    short, long = BUDGETS
    found = {m: _rows(out / f"{m}min") for m in BUDGETS}
    anchors = {m: _anchor(out / f"anchor-{m}min") for m in BUDGETS}
    lines = [
        "| task | goal | when filed | now | met |",
        "|---|---|---|---|---|",
    ]

    def add(task: str, goal: str, filed: str, now: str, met: bool | None) -> None:
        verdict = "–" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {task} | {goal} | {filed} | {now} | {verdict} |")

    for m in BUDGETS:
        full, mle = found[m].get(("en2fr", "full"), {}), found[m].get(("en2fr", "mle"), {})
        for key, name in (("bleu4", "BLEU-4"), ("chrf", "chrF")):
            a, b = full.get(key), mle.get(key)
            filed = "1.7 vs 2.9 (1,200 steps each)" if key == "bleu4" else "–"
            now = f"{_fmt(key, a)} vs {_fmt(key, b)}"
            ok = None if a is None or b is None else a >= b
            add(f"en2fr, {m} min", f"`full` ≥ `mle` on {name}", filed, now, ok)
        anchor = anchors[m].get("greedy", {})
        a, b = full.get("bleu4"), anchor.get("bleu4")
        beam = anchors[m].get("beam 5", {}).get("bleu4")
        now = f"{_fmt('bleu4', a)} vs {_fmt('bleu4', b)} (its beam 5: {_fmt('bleu4', beam)})"
        ok = None if a is None or b is None else a >= b - 1.0
        add(f"en2fr, {m} min", "`full` within 1 BLEU-4 of OpenNMT-py, or above", "–", now, ok)
    rows = found[short]
    full = rows.get(("emoji2text", "full"), {})
    for baseline, name, filed in (
        ("mle (CNN-RNN)", "the CNN-RNN's (attending over the image)", "3.4 vs 0.2 (400 steps)"),
        (NO_ATTENTION, "the plain CNN-RNN's (one image embedding)", "–"),
    ):
        a, b = full.get("bleu4"), rows.get(("emoji2text", baseline), {}).get("bleu4")
        ok = None if a is None or b is None else a >= 2 * b
        add(
            f"emoji2text, {short} min",
            f"`full` ≥ 2× {name} BLEU-4",
            filed,
            f"{_fmt('bleu4', a)} vs {_fmt('bleu4', b)}",
            ok,
        )
    seen = rows.get(("text2emoji-seen", "full"), {}).get("named_accuracy_top5")
    add(
        f"text2emoji-seen, {short} min",
        "named top-5 accuracy ≥ 50 %",
        "– (split new)",
        _fmt("named_accuracy_top5", seen),
        None if seen is None else seen >= 0.5,
    )
    for task in ("text2emoji", "text2emoji-seen"):
        full, cvae = rows.get((task, "full"), {}), rows.get((task, "cvae-gan"), {})
        for key, goal, higher in (
            ("inception_score", "Inception-style score above `cvae-gan`'s", True),
            ("missing_modes", "fewer missing modes than `cvae-gan`", False),
        ):
            a, b = full.get(key), cvae.get(key)
            ok = None if a is None or b is None else (a > b if higher else a < b)
            add(f"{task}, {short} min", goal, "–", f"{_fmt(key, a)} vs {_fmt(key, b)}", ok)
    for m, task in ((short, "en2fr"), (long, "en2fr"), (short, "emoji2text")):
        full = found[m].get((task, "full"), {})
        kl, dep = full.get("posterior_kl"), full.get("code_dependence")
        enc, zero = full.get("chrf_encoded"), full.get("chrf")
        now = (
            f"KL {_fmt('posterior_kl', kl)} nats; {_fmt('code_dependence', dep)} of outputs "
            f"depend on e; chrF with the encoded e {_fmt('chrf', enc)} vs e = 0 {_fmt('chrf', zero)}"
        )
        ok = None if enc is None or zero is None else zero >= enc - 1.0
        add(
            f"{task}, {m} min",
            "leak fixed: chrF at e = 0 within 1 point of chrF with the encoded e",
            "≈ 10 nats of KL by step 400",
            now,
            ok,
        )
    numbers = {
        "text_tasks": {
            f"{m}min": {f"{t}/{v}": r for (t, v), r in found[m].items()} for m in BUDGETS
        },
        "anchor": {f"{m}min": anchors[m] for m in BUDGETS},
    }
    return "\n".join(lines), numbers


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    harness.add_lane_arguments(p, "bench/results/text_goals")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    threads = 1 if args.lanes > 1 else (harness.torch_threads() or 2)
    table = jobs(args.out, threads)
    names = harness.chosen_jobs(args.jobs, table)
    if not args.report_only:
        harness.run_lanes(names, table, args.out, args.lanes)
    md, numbers = goals(args.out)
    (args.out / "goals.md").write_text(md + "\n")
    (args.out / "goals.json").write_text(json.dumps(numbers, indent=1))
    print(md)


if __name__ == "__main__":
    main()
