"""Does this torch build still have oneDNN #6035? (See m3dgan/core/safe_conv.py.)

Standalone (needs only torch), so it runs in any virtual environment with another torch build:

    /path/to/other-venv/bin/python bench/onednn_6035.py

Runs the failing kind — the weight gradient of a 1×1, stride-2 convolution over channels-last
input with 4 input channels — in child processes with oneDNN at the machine's own instruction set
and capped at AVX512_CORE and AVX2, on 1 and 2 threads, and compares the weight gradient with a
float64 computation. Prints one line per setting (ok / WRONG / CRASH / HANG) and exits 1 if any
setting fails. A build that passes everywhere is a candidate for pinning, with the route in
safe_conv kept for older builds behind a version check.
"""

from __future__ import annotations

import os
import subprocess
import sys

CHILD = r"""
import sys, torch
from torch import nn
torch.set_num_threads(int(sys.argv[1]))
torch.manual_seed(0)
conv = nn.Conv2d(4, 4, kernel_size=1, stride=2)
ref = nn.Conv2d(4, 4, kernel_size=1, stride=2).double()
ref.load_state_dict(conv.state_dict())
worst = 0.0
for size in (16, 64):
    for _ in range(30):
        x = torch.randn(4, 4, size, size)
        conv.zero_grad(); ref.zero_grad()
        conv(x.contiguous(memory_format=torch.channels_last)).square().mean().backward()
        ref(x.double()).square().mean().backward()
        err = (conv.weight.grad.double() - ref.weight.grad).abs().max() / ref.weight.grad.abs().max()
        worst = max(worst, float(err))
print("WRONG" if worst > 1e-3 else "ok", f"{worst:.2g}")
"""


def main() -> int:
    import torch

    print(f"torch {torch.__version__}")
    failed = False
    for isa in (None, "AVX512_CORE", "AVX2"):
        for threads in (1, 2):
            env = dict(os.environ, MALLOC_CHECK_="3", OMP_NUM_THREADS=str(threads))
            env.pop("ONEDNN_MAX_CPU_ISA", None)
            if isa:
                env["ONEDNN_MAX_CPU_ISA"] = isa
            try:
                proc = subprocess.run(
                    [sys.executable, "-c", CHILD, str(threads)],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                out = (
                    proc.stdout.strip()
                    if proc.returncode == 0
                    else f"CRASH (exit {proc.returncode})"
                )
            except subprocess.TimeoutExpired:
                out = "HANG (60 s)"
            failed |= not out.startswith("ok")
            print(f"  ISA {isa or 'native':12s} threads {threads}: {out}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
