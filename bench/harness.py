"""What the task benchmarks share: running a step as a logged subprocess, collecting finished
runs, and the Markdown/JSON report. ``bench/text_tasks.py`` and ``bench/speech_tasks.py`` each
define their variants and columns and call these.

A run lives in ``<out>/runs/<task>-<variant slug>/`` (``config.yaml``, ``train_stats.json``,
``metrics.json``); its log in ``<out>/logs/``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

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


def collect(out: Path, variants: Variants) -> list[dict]:
    """Metrics + training stats + budget of every finished run, in the variants' order."""
    results = []
    for task, entries in variants.items():
        for name, _, _ in entries:
            folder = run_dir(out, task, name)
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
