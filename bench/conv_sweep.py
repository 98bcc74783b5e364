"""Sweep the CPU convolution kernels for crashes, hangs and wrong gradients (issue "First contact").

For each setting — oneDNN instruction-set cap (``ONEDNN_MAX_CPU_ISA``: the machine's own,
``AVX512_CORE`` = an AVX-512 CPU without AMX/bf16, ``AVX2`` = an AVX2-only CPU such as the
2-core AMD EPYC where the crash was first seen), intra-op threads (1, 2), memory format
(contiguous, channels_last) and dtype (fp32, bf16 autocast) — it runs every case forward +
backward in child processes (``m3dgan.kernel_check``) and compares output and gradients with
float64. A crash is a result naming the case, not the end of the sweep.

Cases:
- ``project``: every convolution one training step of each task's model runs, at the test
  suite's tiny widths and at the default widths (``m3dgan.kernel_check.project_cases``), and
  those of the metric judges (``judge_cases``);
- ``grid``: a grid around them (conv2d and transposed conv2d; kernels 1, 3, 4; strides 1, 2;
  input channels 1–32; output channels 1–32; 16 and 33 px, and 64 px for 1×1), fp32 only.

``--raw`` runs plain ``torch.nn`` layers (what the bug looks like); the default runs the
project's own layers (``m3dgan.core.safe_conv``), which must come out clean.

    python bench/conv_sweep.py --out bench/results/conv_sweep            # ≈ 15 min on 2 cores
    python bench/conv_sweep.py --raw --out bench/results/conv_sweep-raw
    python bench/conv_sweep.py --quick ...                               # project cases, fp32

Prints a table of the failing cases per setting and writes results.json + results.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from m3dgan.kernel_check import ConvCase, judge_cases, project_cases, run_cases


def cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                keep = ("avx", "amx", "fma", "sse4")
                return sorted(f for f in flags if f.startswith(keep))
    except OSError:
        pass
    return []


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def grid_cases() -> list[ConvCase]:
    cases = []
    channels_in = (1, 2, 3, 4, 8, 12, 16, 32)
    channels_out = (1, 4, 8, 16, 32)
    for op, k, s, cin, cout, size in itertools.product(
        ("conv2d", "conv_transpose2d"), (1, 3, 4), (1, 2), channels_in, channels_out, (16, 33, 64)
    ):
        if size == 64 and k != 1:
            continue  # 64 px only for 1×1 kernels (the AMX path shows #6035 only at that size)
        pad = {1: 0, 3: 1, 4: 1}[k]
        if op == "conv_transpose2d" and k == 1 and s == 2:
            continue  # not a layer anyone builds (leaves holes)
        cases.append(
            ConvCase(
                op=op,
                in_channels=cin,
                out_channels=cout,
                kernel_size=(k, k),
                stride=(s, s),
                padding=(pad, pad),
                dilation=(1, 1),
                groups=1,
                bias=True,
                input_shape=(4, cin, size, size),
                output_padding=(0, 0) if op == "conv_transpose2d" else (),
                where="grid",
            )
        )
    return cases


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=Path("bench/results/conv_sweep"))
    ap.add_argument("--raw", action="store_true", help="plain torch.nn layers (no project routing)")
    ap.add_argument("--quick", action="store_true", help="project cases only, fp32 only")
    ap.add_argument("--isa", nargs="+", default=["native", "AVX512_CORE", "AVX2"])
    ap.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="child processes at a time (1 thread each "
        "for the 1-thread settings; keep jobs × threads ≤ cores)",
    )
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument(
        "--report-only", action="store_true", help="rewrite results.md from results.json"
    )
    args = ap.parse_args()
    if args.report_only:
        data = json.loads((args.out / "results.json").read_text())
        text = report(data["meta"], data["rows"], data["failures"])
        (args.out / "results.md").write_text(text)
        print(text)
        return 0

    project = project_cases() + judge_cases()
    grid = [] if args.quick else grid_cases()
    settings = []
    for isa, threads, cl, dtype in itertools.product(
        args.isa, (1, 2), (False, True), ("fp32",) if args.quick else ("fp32", "bf16")
    ):
        settings.append(("project", project, isa, threads, cl, dtype))
        if grid and dtype == "fp32":
            settings.append(("grid", grid, isa, threads, cl, dtype))
    print(
        f"{len(project)} project cases, {len(grid)} grid cases, {len(settings)} settings; "
        f"CPU {cpu_model()}; flags {' '.join(cpu_flags())}; torch {torch.__version__}",
        flush=True,
    )

    def one(item):
        name, cases, isa, threads, cl, dtype = item
        if cl:  # 3-D (conv1d) cases have no channels-last form: they run in the other pass
            cases = [c for c in cases if len(c.input_shape) == 4]
        t0 = time.perf_counter()
        results = run_cases(
            cases,
            threads=threads,
            channels_last=cl,
            dtype=dtype,
            isa=None if isa == "native" else isa,
            rounds=args.rounds,
            raw=args.raw,
            timeout=60,  # per case: a case takes well under a second; more is a hang
        )
        seconds = time.perf_counter() - t0
        counts = Counter(r.status for r in results)
        fmt = "channels_last" if cl else "contiguous"
        print(
            f"{name:8s} isa={isa:12s} threads={threads} {fmt:13s} {dtype}: "
            f"{dict(counts)} ({seconds:.0f} s)",
            flush=True,
        )
        return name, isa, threads, fmt, dtype, results, seconds

    # 2-thread settings run alone; 1-thread settings two at a time
    singles = [s for s in settings if s[3] == 1]
    doubles = [s for s in settings if s[3] != 1]
    outcomes = []
    with ThreadPoolExecutor(max(args.jobs, 1)) as pool:
        outcomes += list(pool.map(one, singles))
    outcomes += [one(s) for s in doubles]

    rows, failures = [], []
    for name, isa, threads, fmt, dtype, results, seconds in outcomes:
        counts = Counter(r.status for r in results)
        rows.append(
            {
                "cases": name,
                "isa": isa,
                "threads": threads,
                "format": fmt,
                "dtype": dtype,
                "n": len(results),
                **{
                    k: counts.get(k, 0)
                    for k in ("ok", "wrong", "crash", "crash-in-sequence", "hang", "error")
                },
                "seconds": round(seconds, 1),
            }
        )
        failures += [r.to_dict() for r in results if r.status != "ok"]

    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "torch": torch.__version__,
        "onednn": torch.backends.mkldnn.version()
        if hasattr(torch.backends.mkldnn, "version")
        else None,
        "raw": args.raw,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(sys.argv),
    }
    (args.out / "results.json").write_text(
        json.dumps({"meta": meta, "rows": rows, "failures": failures}, indent=1)
    )
    text = report(meta, rows, failures)
    (args.out / "results.md").write_text(text)
    print(text)
    return 0


def report(meta: dict, rows: list[dict], failures: list[dict]) -> str:
    """results.md: the per-setting table, the failing kinds, then every failing case."""
    lines = [
        f"# Convolution kernel sweep ({'plain torch.nn' if meta['raw'] else 'project layers'})",
        "",
        f"{meta['date']}; CPU {meta['cpu']}; torch {meta['torch']}; flags: {' '.join(meta['cpu_flags'])}",
        f"`{meta['command']}`",
        "",
        "| cases | ISA cap | threads | format | dtype | n | ok | wrong | crash | hang | error |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        crash = r["crash"] + r["crash-in-sequence"]
        lines.append(
            f"| {r['cases']} | {r['isa']} | {r['threads']} | {r['format']} | {r['dtype']} | {r['n']} "
            f"| {r['ok']} | {r['wrong']} | {crash} | {r['hang']} | {r['error']} |"
        )
    lines += ["", "## Failing kinds (op, kernel, stride, format, dtype) by ISA cap", ""]
    kinds: dict[tuple, dict[str, set]] = {}
    for f in failures:
        c, st = f["case"], f["settings"]
        fmt = "channels_last" if st["channels_last"] else "contiguous"
        key = (c["op"], tuple(c["kernel_size"]), tuple(c["stride"]), fmt, st["dtype"])
        entry = kinds.setdefault(key, {})
        entry.setdefault(st["isa"], set()).add(c["in_channels"])
    if not kinds:
        lines.append("None: every case ran clean in every setting.")
    for (op, k, stride, fmt, dtype), by_isa in sorted(kinds.items()):
        where = "; ".join(
            f"{isa}: input channels {sorted(ch)}" for isa, ch in sorted(by_isa.items())
        )
        lines.append(
            f"- {op} {'x'.join(map(str, k))} stride {'x'.join(map(str, stride))}, {fmt}, {dtype} — {where}"
        )
    lines += ["", "## Failing cases", ""]
    bad = Counter((f["label"], f["status"]) for f in failures)
    for (label, status), n in sorted(bad.items()):
        lines.append(f"- {status}: `{label}` ({n} settings)")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
