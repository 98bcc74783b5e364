"""Training throughput of the real model on image→image, 3 channels in and out (like edges2shoes).

    .venv/bin/python bench/throughput.py                  # main table + variants, < 10 min on 2 cores
    .venv/bin/python bench/throughput.py --quick          # two rows and no variants, about a minute
    .venv/bin/python bench/throughput.py --compile        # also time torch.compile (minutes to compile)

Every row trains ``M3DGAN`` with ``TrainStep`` — the trainer's own model, optimizers (fused Adam),
input path (``batch_to_model``) and batch order (``batch_indices``) — on cached uint8 tensors held
in memory, with the default ``ModelConfig``. A row runs in its own process, so its peak memory is
its own, and reports:

- images/s: batch / median wall time of a step, after warm-up steps (oneDNN builds its kernels
  on the first steps; the JSON also has the mean over all timed steps);
- GFLOP/img: FLOPs of one training step (both updates, forward and backward) per image, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions, as usual);
- GFLOP/s: achieved, GFLOP/img × images/s;
- % fp32 mm / % bf16 mm: achieved GFLOP/s as a fraction of this machine's own dense matmul
  throughput in that precision: the best GFLOP/s of square matmuls measured by this script with
  the same thread count, at the start and after every row (a shared VM's speed drifts by tens
  of percent over minutes; the table's last column shows each row's probe);
- peak MB: peak RSS of the row's process (CUDA: peak allocated GPU memory).

Recipes: ``fp32`` = the trainer's defaults (fp32, channels_last); ``bf16`` = ``--set
train.amp=true`` on top (bf16 autocast; the same settings on CUDA). The reference
point is the official BicycleGAN at 128×128 measured on this kind of machine (2 cores): 2.0 img/s
at batch 2, 3.9 img/s at batch 8, 31.5 GFLOP per image per step, about 67 % of the machine's fp32
matmul throughput; it cannot run at 64×64. Results: ``--out``/results.json and results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from m3dgan.config import Config, apply_overrides
from m3dgan.core.model import M3DGAN
from m3dgan.core.objectives import get_objective
from m3dgan.core.state import RunState, make_optimizers
from m3dgan.core.step import TrainStep
from m3dgan.data.tensors import batch_to_model
from m3dgan.modalities import ModalitySpec
from m3dgan.modalities.image.nets import FiLM
from m3dgan.train import batch_indices

REFERENCE = {  # official BicycleGAN, 128×128, this kind of machine (2 cores), from the issue
    "name": "BicycleGAN (official)",
    "images_per_s": {2: 2.0, 8: 3.9},
    "gflop_per_image": 31.5,
    "fraction_fp32_matmul": {8: 0.67},
}
RECIPES = {"fp32": {"amp": False}, "bf16": {"amp": True}}
# (objective, size, batch, recipe)
MAIN_ROWS = [
    *[("full", 64, b, "bf16") for b in (2, 4, 8, 16)],
    ("full", 64, 8, "fp32"),
    *[("full", 128, b, r) for r in ("bf16", "fp32") for b in (2, 8)],
    ("bicycle", 64, 8, "bf16"),
    *[("bicycle", 128, b, r) for r in ("bf16", "fp32") for b in (2, 8)],
]
QUICK_ROWS = [("full", 128, 8, "bf16"), ("full", 128, 8, "fp32")]
# what each change gains, at full / 128×128 / batch 8: (label, row options); cumulative
VARIANTS = [
    (
        "before: fp32, NCHW, for-each Adam, FiLM as instance norm + 2 affine steps",
        {"channels_last": False, "fused": False, "legacy_film": True},
    ),
    ("+ fused Adam", {"channels_last": False, "legacy_film": True}),
    ("+ FiLM as one fused kernel", {"channels_last": False}),
    ("+ channels_last (= fp32 defaults now)", {}),
    ("+ bf16 autocast (train.amp=true)", {"amp": True}),
    ("bf16 autocast, NCHW", {"amp": True, "channels_last": False}),
    ("bf16 autocast, old FiLM", {"amp": True, "legacy_film": True}),
    ("bf16 autocast, 1 thread", {"amp": True, "threads": 1}),
]
COMPILE_VARIANT = (
    "bf16 autocast + torch.compile (train.compile=true)",
    {"amp": True, "compile": True},
)


# --- one row, in its own process ------------------------------------------------------------------


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _legacy_film_forward(self: FiLM, x: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
    """FiLM as it was before the fused kernel (for the variants table): instance norm, the
    learned affine, then z's scale and shift, each a pass over the activation."""
    h = F.instance_norm(x, eps=self.eps) * self.weight + self.bias
    if self.to_scale_shift is not None and z is not None:
        scale, shift = self.to_scale_shift(z)[:, :, None, None].chunk(2, dim=1)
        h = h * (1 + scale) + shift
    return h


def run_row(spec: dict) -> dict:
    """Train ``spec``'s model for a few steps; return its measurements."""
    device = torch.device(spec["device"])
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    overrides = [f"train.amp={str(spec.get('amp', False)).lower()}"]
    if "channels_last" in spec:  # else the trainer's default
        overrides.append(f"train.channels_last={str(spec['channels_last']).lower()}")
    # e.g. a smaller model for a smoke test
    cfg = apply_overrides(
        Config(objective=spec["objective"]), overrides + spec.get("overrides", [])
    )
    if spec.get("legacy_film"):
        FiLM.forward = _legacy_film_forward
    size, batch = spec["size"], spec["batch"]
    torch.manual_seed(0)
    side = ModalitySpec("image", 3, size)
    model = M3DGAN(side, side, get_objective(cfg.objective), cfg.model).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if spec.get("compile"):
        for part in (model.generator, model.disc_enc, model.disc_rand):
            if part is not None:
                part.compile()  # as the trainer does with train.compile=true
    opt_g, opt_d = make_optimizers(model, cfg, device)
    if not spec.get("fused", True):
        kw = {"lr": cfg.train.lr, "betas": (cfg.train.beta1, cfg.train.beta2)}
        opt_g = torch.optim.Adam(model.generator_parameters(), foreach=True, **kw)
        opt_d = torch.optim.Adam(model.discriminator_parameters(), foreach=True, **kw)
    noise = torch.Generator(device=device).manual_seed(1)
    step = TrainStep(
        RunState(model, opt_g, opt_d, noise),
        cfg.loss,
        autocast_dtype=torch.bfloat16 if cfg.train.amp else None,
    )
    # the data set: cached uint8 pairs in memory, as the trainer holds a loaded split
    pool = 4 * batch
    gen = torch.Generator().manual_seed(0)
    source = torch.randint(0, 256, (pool, 3, size, size), generator=gen, dtype=torch.uint8)
    target = torch.randint(0, 256, (pool, 3, size, size), generator=gen, dtype=torch.uint8)

    data_times: list[float] = []

    def train_step(i: int) -> None:
        t_data = time.perf_counter()
        idx = batch_indices(pool, batch, i, seed=0)
        s = batch_to_model(source[idx], device, cfg.train.channels_last)
        t = batch_to_model(target[idx], device, cfg.train.channels_last)
        data_times.append(time.perf_counter() - t_data)
        step(s, t)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    started = time.perf_counter()
    for i in range(spec["warmup"]):
        train_step(i)
    sync()
    warmup_s = time.perf_counter() - started
    counter = FlopCounterMode(display=False)
    with counter:
        train_step(spec["warmup"])
    flops = counter.get_total_flops()
    sync()
    cpu0 = _cpu_seconds()
    timed, t0, times = 0, time.perf_counter(), []
    while timed < spec["min_steps"] or (
        time.perf_counter() - t0 < spec["min_seconds"] and timed < spec["max_steps"]
    ):
        t_step = time.perf_counter()
        train_step(spec["warmup"] + 1 + timed)  # ends in .item() calls: synchronised
        times.append(time.perf_counter() - t_step)
        timed += 1
    sync()
    seconds = time.perf_counter() - t0
    # our threads spin while they wait, so they use all their cores unless another process
    # takes turns on them: a share well below 1 means the row was measured on a busy machine
    cpu_share = (_cpu_seconds() - cpu0) / (seconds * torch.get_num_threads())
    out = {
        **spec,
        "cpu_share": round(cpu_share, 3),
        "threads": torch.get_num_threads(),
        "warmup_s": round(warmup_s, 2),
        "timed_steps": timed,
        "seconds": round(seconds, 3),
        # the median step: robust to a neighbour's process taking a core for a moment
        "images_per_s": batch / statistics.median(times),
        "images_per_s_mean": batch * timed / seconds,
        # the input pipeline's share of a step (drawing the batch, uint8 → float, layout)
        "data_ms_per_step": 1e3 * statistics.median(data_times[-timed:]),
        "gflop_per_image": flops / batch / 1e9,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    # a shared VM's speed drifts over minutes: the matmul peak right after the row (same threads)
    # shows how fast the machine was while the row ran; the run's yardstick is the best of all
    if spec.get("matmul_seconds", 0) > 0:
        out["matmul_gflops"] = matmul_peaks(device, spec["matmul_seconds"])
    return out


# --- the machine's matmul throughput --------------------------------------------------------------


def matmul_gflops(dtype: torch.dtype, device: torch.device, seconds: float = 2.0) -> float:
    """Best dense square-matmul GFLOP/s over a few sizes and repeats (the machine's own peak)."""
    sizes = (1024, 2048, 4096) if device.type == "cpu" else (4096, 8192)
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        a @ b  # warm-up
        deadline = time.perf_counter() + seconds / len(sizes)
        while True:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            a @ b
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
            if time.perf_counter() > deadline:
                break
    return best


def matmul_peaks(device: torch.device, seconds: float = 2.0) -> dict[str, float]:
    return {
        "fp32": matmul_gflops(torch.float32, device, seconds),
        "bf16": matmul_gflops(torch.bfloat16, device, seconds),
    }


# --- orchestration --------------------------------------------------------------------------------


def spawn(spec: dict) -> dict:
    """Run one row in a fresh process with the requested thread count."""
    env = dict(os.environ)
    if spec.get("threads"):
        env["OMP_NUM_THREADS"] = str(spec["threads"])
    proc = subprocess.run(
        [sys.executable, __file__, "--row", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        return {**spec, "error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
    return json.loads(lines[-1])


def add_ratios(row: dict, peaks: dict[str, float]) -> dict:
    if "error" in row:
        return row
    achieved = row["gflop_per_image"] * row["images_per_s"]
    row["gflop_per_s"] = achieved
    row["fraction_fp32_matmul"] = achieved / peaks["fp32"]
    row["fraction_bf16_matmul"] = achieved / peaks["bf16"]
    ref = REFERENCE["images_per_s"].get(row["batch"]) if row["size"] == 128 else None
    if ref:
        row["vs_reference"] = row["images_per_s"] / ref
    return row


def machine_info(device: torch.device) -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def fmt(value, pattern: str) -> str:
    return "–" if value is None else pattern.format(value)


def table(rows: list[dict], first: str = "row") -> str:
    head = [
        first,
        "img/s",
        "× ref",
        "GFLOP/img",
        "GFLOP/s",
        "% fp32 mm",
        "% bf16 mm",
        "peak MB",
        "CPU share",
        "mm fp32/bf16",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['label']} | error: {' '.join(row['error'])} |")
            continue
        memory = row.get("peak_cuda_mb", row["peak_rss_mb"])
        cells = [
            row["label"],
            fmt(row["images_per_s"], "{:.2f}"),
            fmt(row.get("vs_reference"), "{:.2f}×"),
            fmt(row["gflop_per_image"], "{:.1f}"),
            fmt(row["gflop_per_s"], "{:.0f}"),
            fmt(row["fraction_fp32_matmul"], "{:.0%}"),
            fmt(row["fraction_bf16_matmul"], "{:.0%}"),
            fmt(memory, "{:.0f}"),
            fmt(row.get("cpu_share"), "{:.0%}"),
            "{fp32:.0f}/{bf16:.0f}".format(**row["matmul_gflops"])
            if "matmul_gflops" in row
            else "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reference_table(peaks: dict[str, float]) -> str:
    """The reference point; its efficiency also against this run's fp32 matmul yardstick."""
    ref = REFERENCE
    rows = []
    for batch, ips in ref["images_per_s"].items():
        achieved = ips * ref["gflop_per_image"]
        quoted = fmt(ref["fraction_fp32_matmul"].get(batch), "{:.0%}")
        rows.append(
            f"| {ref['name']}, batch {batch} | {ips} | {ref['gflop_per_image']} | {achieved:.0f} "
            f"| {quoted} | {achieved / peaks['fp32']:.0%} |"
        )
    return "\n".join(
        [
            "| reference (128×128) | img/s | GFLOP/img | GFLOP/s | % fp32 mm (issue) "
            "| % fp32 mm (this run's yardstick) |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )


def load_now() -> dict:
    one, five, fifteen = os.getloadavg()
    return {"1min": one, "5min": five, "15min": fifteen}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/throughput"))
    parser.add_argument("--quick", action="store_true", help="two rows, no variants")
    parser.add_argument("--no-variants", action="store_true")
    parser.add_argument("--compile", action="store_true", help="add a torch.compile variant")
    parser.add_argument("--threads", type=int, default=None, help="default: torch's default")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--min-seconds", type=float, default=5.0, help="timed seconds per row")
    parser.add_argument(
        "--matmul-seconds",
        type=float,
        default=1.0,
        help="per dtype, matmul probe after each row (0: only the one at the start)",
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--variant-rounds", type=int, default=2)
    parser.add_argument("--row", help=argparse.SUPPRESS)  # internal: run one row, print JSON
    args = parser.parse_args()
    if args.row:
        print(json.dumps(run_row(json.loads(args.row))), flush=True)
        return

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    threads = torch.get_num_threads()
    started = time.time()
    load_before = load_now()
    print(f"load average before: {load_before}", flush=True)
    peaks = matmul_peaks(device, 4.0)
    print(
        f"matmul ({threads} threads): {peaks['fp32']:.0f} GFLOP/s fp32, "
        f"{peaks['bf16']:.0f} GFLOP/s bf16",
        flush=True,
    )
    common = {
        "device": args.device,
        "threads": threads,
        "warmup": args.warmup,
        "min_steps": 3,
        "min_seconds": args.min_seconds,
        "max_steps": 50,
        "matmul_seconds": args.matmul_seconds,
    }

    rows = []
    for objective, size, batch, recipe in QUICK_ROWS if args.quick else MAIN_ROWS:
        spec = {**common, "objective": objective, "size": size, "batch": batch}
        spec.update(RECIPES[recipe], label=f"{objective} {size}×{size} b{batch} {recipe}")
        rows.append(spawn(spec))
        print(table([add_ratios(dict(rows[-1]), peaks)]).splitlines()[-1], flush=True)

    variants = []
    chosen = [] if args.quick or args.no_variants else list(VARIANTS)
    if args.compile:
        chosen.append(COMPILE_VARIANT)
    # the variants differ by 5-30 %, about the drift of a shared machine over minutes: they run
    # interleaved, ``--variant-rounds`` times, and each reports its best round
    samples: dict[str, list[dict]] = {label: [] for label, _ in chosen}
    for _ in range(args.variant_rounds):
        for label, options in chosen:
            spec = {**common, "objective": "full", "size": 128, "batch": 8, "label": label}
            spec.update(options)
            if options.get("compile") and samples[label]:
                continue  # one compile is enough (minutes); its steps are stable
            samples[label].append(spawn(spec))
            print(table([add_ratios(dict(samples[label][-1]), peaks)]).splitlines()[-1], flush=True)
    for runs in samples.values():
        best = max(runs, key=lambda r: r.get("images_per_s", 0.0))
        best["images_per_s_rounds"] = [r.get("images_per_s") for r in runs]
        variants.append(best)

    # the machine's matmul throughput: the best probe of the run at the run's thread count
    for row in rows + variants:
        probe = row.get("matmul_gflops")
        if probe and row.get("threads") == threads:
            peaks = {k: max(peaks[k], probe[k]) for k in peaks}
    rows = [add_ratios(row, peaks) for row in rows]
    variants = [add_ratios(row, peaks) for row in variants]

    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "wall_s": round(time.time() - started, 1),
        "machine": machine_info(device),
        "load_average_before": load_before,
        "load_average_after": load_now(),
        "matmul_gflops": peaks,
        "reference": REFERENCE,
        "rows": rows,
        "variants": variants,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1, default=str))
    md = [
        f"Measured {result['date']} on {result['machine'].get('cpu', args.device)}, "
        f"{threads} threads, torch {torch.__version__}; load average before/after: "
        f"{load_before['1min']:.2f} / {result['load_average_after']['1min']:.2f}; "
        f"matmul: {peaks['fp32']:.0f} GFLOP/s fp32, {peaks['bf16']:.0f} GFLOP/s bf16. "
        f"Command: `{result['command']}`.",
        "",
        table(rows),
        "",
        reference_table(peaks),
    ]
    if variants:
        md += [
            "",
            f"What each change gains (full, 128×128, batch 8; best of {args.variant_rounds} "
            "interleaved rounds):",
            "",
            table(variants, "variant"),
        ]
    busy = [r["label"] for r in rows + variants if r.get("cpu_share", 1.0) < 0.9]
    if busy:
        md += ["", f"CPU share below 90 % (another process took turns on the cores): {busy}."]
    (args.out / "results.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    print(f"\nwrote {args.out / 'results.json'} and results.md in {result['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
