"""What the oneDNN #6035 route costs: strided 1×1 convolutions, routed vs plain ``torch.nn``.

``m3dgan.core.safe_conv.Conv2d`` runs a stride-s 1×1 convolution as subsampling + a unit-stride
1×1 convolution (see its docstring). This times both forms, forward + backward, on the strided
1×1 layers the default image generators build (the skips of ``ResidualDown``, found by running
one training step of each image task), in both memory formats, on 1 and 2 threads, and the
whole generator step of each task with the route on and off. Plain ``torch.nn`` is only timed
where it does not hit the bug (at least 16 input channels, or contiguous input).

    python bench/safe_conv_speed.py --out bench/results/safe_conv_speed   # ≈ 2 min, quiet machine

Prints a table and writes results.json + results.md. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils import benchmark

from m3dgan.config import ModelConfig
from m3dgan.core import safe_conv
from m3dgan.kernel_check import TASK_SIDES, ConvCase, project_cases, raw_layer

IMAGE_TASKS = ("digits", "edges2emoji", "text2emoji")


def _time(fn, threads: int, min_run_time: float) -> float:
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def layer_step(layer: nn.Module, shape: tuple[int, ...], channels_last: bool):
    x = torch.randn(shape)
    if channels_last:
        layer = layer.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()

    def step() -> None:
        layer.zero_grad(set_to_none=True)
        layer(x).square().mean().backward()

    return step


def safe_for_plain(case: ConvCase, channels_last: bool) -> bool:
    """Plain nn.Conv2d is timed only where #6035 cannot hit (see safe_conv)."""
    return not channels_last or case.in_channels >= 16


def generator_step(task: str, routed: bool, channels_last: bool):
    """One generator forward + backward of the default-width model of ``task``."""
    from m3dgan.core.model import M3DGAN
    from m3dgan.core.objectives import get_objective
    from m3dgan.modalities import ModalitySpec

    (sk, sc, ss), (tk, tc, ts) = TASK_SIDES[task]
    torch.manual_seed(0)
    model = M3DGAN(
        ModalitySpec(sk, sc, ss), ModalitySpec(tk, tc, ts), get_objective("full"), ModelConfig()
    )
    if not routed:  # the plain torch.nn forward for every strided 1×1 conv
        for module in model.modules():
            if isinstance(module, safe_conv.Conv2d) and safe_conv.is_strided_pointwise(module):
                if module.in_channels < 16 and channels_last:
                    return None  # would hit the bug
                module._conv_forward = nn.Conv2d._conv_forward.__get__(module)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    batch = 8
    source = (
        torch.rand(batch, sc, ss, ss) * 2 - 1
        if sk == "image"
        else torch.randint(4, sc, (batch, ss))
    )
    if channels_last and source.dim() == 4:
        source = source.contiguous(memory_format=torch.channels_last)
    z = torch.randn(batch, model.z_dim)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model.generate(source, z).square().mean().backward()

    return step


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=Path("bench/results/safe_conv_speed"))
    ap.add_argument("--min-run-time", type=float, default=0.5, help="seconds per measurement")
    args = ap.parse_args()

    cases = [
        c
        for c in project_cases(IMAGE_TASKS, configs={"default": ModelConfig()})
        if c.op == "conv2d" and c.kernel_size == (1, 1) and max(c.stride) > 1
    ]
    rows = []
    for case in cases:
        for channels_last in (False, True):
            for threads in (1, 2):
                routed = _time(
                    layer_step(
                        safe_conv.Conv2d(
                            case.in_channels, case.out_channels, 1, stride=case.stride
                        ),
                        case.input_shape,
                        channels_last,
                    ),
                    threads,
                    args.min_run_time,
                )
                plain = (
                    _time(
                        layer_step(raw_layer(case), case.input_shape, channels_last),
                        threads,
                        args.min_run_time,
                    )
                    if safe_for_plain(case, channels_last)
                    else None
                )
                rows.append(
                    {
                        "what": case.label(),
                        "where": case.where,
                        "channels_last": channels_last,
                        "threads": threads,
                        "routed_ms": routed,
                        "plain_ms": plain,
                    }
                )
                print(rows[-1], flush=True)
    for task in IMAGE_TASKS:
        for channels_last in (False, True):
            for threads in (1, 2):
                plain_fn = generator_step(task, False, channels_last)
                routed = _time(
                    generator_step(task, True, channels_last), threads, args.min_run_time
                )
                plain = _time(plain_fn, threads, args.min_run_time) if plain_fn else None
                rows.append(
                    {
                        "what": f"{task} generator fwd+bwd (default widths, batch 8)",
                        "where": task,
                        "channels_last": channels_last,
                        "threads": threads,
                        "routed_ms": routed,
                        "plain_ms": plain,
                    }
                )
                print(rows[-1], flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(sys.argv),
    }
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [
        "# Strided 1×1 convolutions: routed (subsample + unit stride) vs plain torch.nn",
        "",
        f"{meta['date']}, torch {meta['torch']}; median ms per forward + backward",
        "",
        "| layer | format | threads | routed ms | plain ms | routed / plain |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        fmt = "channels_last" if r["channels_last"] else "contiguous"
        plain = f"{r['plain_ms']:.3f}" if r["plain_ms"] is not None else "(hits the bug)"
        ratio = f"{r['routed_ms'] / r['plain_ms']:.2f}" if r["plain_ms"] else "–"
        lines.append(
            f"| {r['what']} | {fmt} | {r['threads']} | {r['routed_ms']:.3f} | {plain} | {ratio} |"
        )
    text = "\n".join(lines) + "\n"
    (args.out / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
