"""Check the CPU convolution kernels the project's models use, one layer at a time, safely.

Why this exists: oneDNN (PyTorch's CPU convolution library) picks a kernel by the CPU's
instruction set, so a layer that trains fine on an AVX-512 machine can run a different,
buggy kernel on an AVX2-only one. One such bug (oneDNN issue #6035, open; torch 2.13.0 ships
oneDNN 3.12) corrupts the heap in the backward pass of a 1×1, stride > 1 convolution over
channels-last input with fewer input channels than the kernel's channel block (8 on AVX2,
16 on AVX-512), and gives wrong weight gradients or hangs with 2+ threads. See
:mod:`m3dgan.core.safe_conv` for how the project routes around the bad configurations.

This module finds such problems without ending the caller:

- :func:`collect_cases` records every convolution a model runs in one training step (a
  forward pre-hook on each ``nn.Conv1d/2d`` and ``nn.ConvTranspose1d/2d``): its type,
  hyper-parameters, input shape and memory format. :class:`ConvCase` is one such layer.
- :func:`run_cases` runs cases in a child process (``python -m m3dgan.kernel_check``), each
  forward + backward for a few rounds in the requested memory format, thread count, dtype
  (fp32, or bf16 autocast) and oneDNN instruction-set cap (``ONEDNN_MAX_CPU_ISA``, e.g.
  ``AVX2`` to run an AVX-512 machine's convolutions the way an AVX2-only CPU runs them), and
  compares output, input gradient and weight gradient with a float64 computation of the same
  layer (which does not use oneDNN). A crash (heap corruption abort, segfault), a hang
  (timeout) or a wrong gradient is a result naming the case, not the end of the run.

The project's test ``tests/test_kernel_safety.py`` and the sweep ``bench/conv_sweep.py`` use it.

The model, config and judge modules are imported inside the functions that record cases, so
the child processes, which only run layers, start with torch alone.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d)


@dataclass(frozen=True)
class ConvCase:
    """One convolution layer as the model runs it: enough to rebuild and rerun it alone.

    ``op``: ``conv1d | conv2d | conv_transpose1d | conv_transpose2d``; ``input_shape``: the
    input's shape [N, C, (H,) W]; ``layer``: the class that ran it (informational, e.g.
    ``m3dgan.core.safe_conv.Conv2d``); ``where``: a model path that uses it (informational).
    """

    op: str
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    bias: bool
    input_shape: tuple[int, ...]
    output_padding: tuple[int, ...] = ()
    layer: str = field(default="", compare=False)
    where: str = field(default="", compare=False)

    def label(self) -> str:
        k = "x".join(map(str, self.kernel_size))
        s = "x".join(map(str, self.stride))
        shape = "x".join(map(str, self.input_shape))
        return f"{self.op} {self.in_channels}->{self.out_channels} k{k} s{s} in[{shape}]"

    @classmethod
    def from_dict(cls, data: dict) -> ConvCase:
        data = dict(data)
        for key in (
            "kernel_size",
            "stride",
            "padding",
            "dilation",
            "input_shape",
            "output_padding",
        ):
            data[key] = tuple(data.get(key, ()))
        return cls(**data)


def _op_name(module: nn.Module) -> str:
    for base, name in (
        (nn.ConvTranspose2d, "conv_transpose2d"),
        (nn.ConvTranspose1d, "conv_transpose1d"),
        (nn.Conv2d, "conv2d"),
        (nn.Conv1d, "conv1d"),
    ):
        if isinstance(module, base):
            return name
    raise TypeError(f"not a convolution: {type(module).__name__}")


def case_of(module: nn.Module, input_shape: Iterable[int], where: str = "") -> ConvCase:
    """The :class:`ConvCase` of ``module`` run on an input of ``input_shape``."""
    padding = module.padding
    if isinstance(padding, str):  # "same"/"valid": keep as the layer resolves it
        raise ValueError(f"{where}: string padding {padding!r} is not supported by the checker")
    return ConvCase(
        op=_op_name(module),
        in_channels=module.in_channels,
        out_channels=module.out_channels,
        kernel_size=tuple(module.kernel_size),
        stride=tuple(module.stride),
        padding=tuple(padding),
        dilation=tuple(module.dilation),
        groups=module.groups,
        bias=module.bias is not None,
        input_shape=tuple(int(s) for s in input_shape),
        output_padding=tuple(getattr(module, "output_padding", ()))
        if "transpose" in _op_name(module)
        else (),
        layer=f"{type(module).__module__}.{type(module).__qualname__}",
        where=where,
    )


def collect_cases(model: nn.Module, run: Callable[[], object]) -> list[ConvCase]:
    """Every distinct convolution ``model`` runs while ``run()`` executes (hooks removed after)."""
    found: dict[ConvCase, None] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, CONV_TYPES):

            def hook(mod, args, name=name):
                found.setdefault(case_of(mod, args[0].shape, name), None)

            handles.append(module.register_forward_pre_hook(hook))
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return list(found)


# -- the project's own layers ---------------------------------------------------------------------

# Each task's sides as the built-in data sets give them (image sizes; text vocabulary and length;
# mel bins and frames): the layers the user trains, not toy shapes.
TASK_SIDES = {
    "digits": (("image", 3, 32), ("image", 1, 32)),
    "edges2emoji": (("image", 1, 64), ("image", 3, 64)),
    "text2emoji": (("text", 60, 24), ("image", 3, 64)),
    "emoji2text": (("image", 3, 64), ("text", 40, 40)),
    "en2fr": (("text", 500, 16), ("text", 500, 20)),
    "tts": (("text", 40, 60), ("speech", 80, 160)),
    "asr": (("speech", 80, 160), ("text", 40, 60)),
}


def tiny_model_config():
    """The test suite's tiny widths (``tests/conftest.py``): channel counts of 4 and 8."""
    from m3dgan.config import ModelConfig

    return ModelConfig(
        nz=4,
        num_tokens=4,
        token_heads=2,
        domain_dim=8,
        ref_channels=[4, 4, 8, 8],
        ref_gru=8,
        prenet_channels=[4, 4],
        gen_blocks=2,
        gen_channels=4,
        gen_max_channels=8,
        disc_channels=4,
        disc_layers=2,
    )


def _sample(kind: str, channels: int, size: int, batch: int) -> torch.Tensor:
    if kind == "image":
        return torch.rand(batch, channels, size, size) * 2 - 1
    if kind == "text":
        ids = torch.randint(4, channels, (batch, size))
        ids[:, -2:] = 0  # padding, as in real batches
        return ids
    return torch.rand(batch, size, channels) * 2 - 1


def project_cases(
    tasks: Iterable[str] | None = None,
    configs: dict | None = None,
    objective: str = "full",
    batch: int = 4,
    channels_last: bool = False,
) -> list[ConvCase]:
    """The convolutions of one ``objective`` training step of each task's model, for each
    model config (default: the test suite's tiny widths and the defaults), in first-seen order.

    The step runs in this process, so by default in the contiguous format: the layer shapes
    are the same in both formats, and a buggy channels-last kernel would end the caller here
    instead of being found by :func:`run_cases`.
    """
    from m3dgan.config import LossConfig, ModelConfig
    from m3dgan.core.model import M3DGAN
    from m3dgan.core.objectives import get_objective
    from m3dgan.core.state import RunState
    from m3dgan.core.step import TrainStep
    from m3dgan.modalities import ModalitySpec

    configs = configs or {"tiny": tiny_model_config(), "default": ModelConfig()}
    found: dict[ConvCase, None] = {}
    for task in tasks or TASK_SIDES:
        (sk, sc, ss), (tk, tc, ts) = TASK_SIDES[task]
        for width, cfg in configs.items():
            torch.manual_seed(0)
            model = M3DGAN(
                ModalitySpec(sk, sc, ss), ModalitySpec(tk, tc, ts), get_objective(objective), cfg
            )
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            opt_g = torch.optim.Adam(model.generator_parameters(), lr=1e-4)
            opt_d = torch.optim.Adam(model.discriminator_parameters() or [torch.zeros(1)], lr=1e-4)
            step = TrainStep(RunState(model, opt_g, opt_d, torch.Generator()), LossConfig())
            source, target = _sample(sk, sc, ss, batch), _sample(tk, tc, ts, batch)
            if channels_last and source.dim() == 4:
                source = source.contiguous(memory_format=torch.channels_last)
            if channels_last and target.dim() == 4:
                target = target.contiguous(memory_format=torch.channels_last)
            for case in collect_cases(model, lambda s=step, a=source, b=target: s(a, b)):
                named = ConvCase(**{**asdict(case), "where": f"{task}/{width}:{case.where}"})
                found.setdefault(named, None)
    return list(found)


def judge_cases(batch: int = 8) -> list[ConvCase]:
    """The convolutions of the metric judges the project trains (``m3dgan.metrics``): the image
    class/vendor judge at the data sets' sizes and the widths the defaults and the tests use,
    and the judge ASR at its default and the tests' widths."""
    from m3dgan.metrics.judge import DEFAULT_WIDTHS, JudgeNet
    from m3dgan.metrics.judge_asr import JudgeASR

    found: dict[ConvCase, None] = {}

    def add(name: str, model: nn.Module, run: Callable[[], torch.Tensor]) -> None:
        for case in collect_cases(model, lambda: run().float().square().mean().backward()):
            found.setdefault(ConvCase(**{**asdict(case), "where": f"{name}:{case.where}"}), None)

    for channels, size in ((1, 32), (3, 64), (3, 16), (1, 16)):
        for widths in (DEFAULT_WIDTHS, (16, 32, 64), (8, 16, 32), (8, 8, 8)):
            torch.manual_seed(0)
            judge = JudgeNet(channels, 10, size, widths)
            x = torch.rand(batch, channels, size, size) * 2 - 1
            add(f"judge{channels}x{size}/{list(widths)}", judge, lambda j=judge, x=x: j(x))
    for conv_channels in (256, 32, 16):
        torch.manual_seed(0)
        asr = JudgeASR(list(" abc"), conv_channels=conv_channels, hidden=16, layers=1)
        mels = torch.rand(batch, 120, 80) * 2 - 1
        lengths = torch.full((batch,), 120)
        add(f"judge_asr/{conv_channels}", asr, lambda a=asr, m=mels, n=lengths: a(m, n)[0])
    return list(found)


# -- running one case (inside the child process) -------------------------------------------------


def _project_class(op: str) -> type[nn.Module]:
    """The class the project builds for ``op`` (where no recorded layer says otherwise)."""
    from m3dgan.core import safe_conv

    return {
        "conv2d": safe_conv.Conv2d,
        "conv_transpose2d": safe_conv.ConvTranspose2d,
        "conv1d": nn.Conv1d,
        "conv_transpose1d": nn.ConvTranspose1d,
    }[op]


def _import_class(path: str) -> type[nn.Module]:
    module_name, _, name = path.rpartition(".")
    module = importlib.import_module(module_name)
    for part in name.split("."):
        module = getattr(module, part)
    return module


def build_layer(case: ConvCase) -> nn.Module:
    """A layer with ``case``'s hyper-parameters, of the class the model ran (``case.layer``),
    or of the project's class for that op."""
    cls = _import_class(case.layer) if case.layer else _project_class(case.op)
    return _instantiate(cls, case)


def _instantiate(cls: type[nn.Module], case: ConvCase) -> nn.Module:
    kw = dict(
        stride=case.stride,
        padding=case.padding,
        dilation=case.dilation,
        groups=case.groups,
        bias=case.bias,
    )
    if "transpose" in case.op:
        kw["output_padding"] = case.output_padding
    return cls(case.in_channels, case.out_channels, case.kernel_size, **kw)


def raw_layer(case: ConvCase) -> nn.Module:
    """The plain ``torch.nn`` layer (no project routing) with ``case``'s hyper-parameters."""
    cls = {
        "conv2d": nn.Conv2d,
        "conv_transpose2d": nn.ConvTranspose2d,
        "conv1d": nn.Conv1d,
        "conv_transpose1d": nn.ConvTranspose1d,
    }[case.op]
    return _instantiate(cls, case)


def check_case(
    case: ConvCase,
    *,
    channels_last: bool,
    dtype: str = "fp32",
    rounds: int = 8,
    raw: bool = False,
    seed: int = 0,
) -> dict:
    """Run ``case`` forward + backward ``rounds`` times; compare with float64.

    Returns ``{"err_out", "err_grad_input", "err_grad_weight"}``: the largest absolute error
    of each, over the largest magnitude of the float64 result (so 1e-6 is float32 rounding and
    1e-2 is bf16 rounding; 1 means garbage).
    """
    torch.manual_seed(seed)
    layer = raw_layer(case) if raw else build_layer(case)
    ref = raw_layer(case).double()
    ref.load_state_dict(layer.state_dict())
    x = torch.randn(case.input_shape)
    four_d = x.dim() == 4
    if channels_last and four_d:
        layer = layer.to(memory_format=torch.channels_last)
    xr = x.double().requires_grad_()
    out_r = ref(xr)
    grad_out = torch.randn(out_r.shape, dtype=torch.float64)
    out_r.backward(grad_out)
    worst = {"err_out": 0.0, "err_grad_input": 0.0, "err_grad_weight": 0.0}
    for _ in range(rounds):
        layer.zero_grad(set_to_none=True)
        xi = x.clone()
        if channels_last and four_d:
            xi = xi.contiguous(memory_format=torch.channels_last)
        xi.requires_grad_()
        if dtype == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = layer(xi)
        else:
            out = layer(xi)
        go = grad_out.to(out.dtype)
        if channels_last and four_d:
            go = go.contiguous(memory_format=torch.channels_last)
        out.backward(go)
        for key, got, want in (
            ("err_out", out, out_r),
            ("err_grad_input", xi.grad, xr.grad),
            ("err_grad_weight", layer.weight.grad, ref.weight.grad),
        ):
            got, want = got.detach().double(), want.detach()
            scale = float(want.abs().max()) or 1.0
            err = float((got - want).abs().max()) / scale
            if err != err:  # NaN
                err = float("inf")
            worst[key] = max(worst[key], err)
    return worst


TOLERANCE = {"fp32": 1e-3, "bf16": 0.1}  # relative to the float64 result's largest magnitude


def _worker() -> int:
    """Child process: read ``{"settings": ..., "cases": [...]}`` JSON from stdin; print one
    ``start`` line before and one ``done`` line after each case (flushed), so a parent can
    name the case a crash happened in."""
    job = json.loads(sys.stdin.read())
    settings = job["settings"]
    torch.set_num_threads(int(settings["threads"]))
    for index, data in enumerate(job["cases"]):
        case = ConvCase.from_dict(data)
        print(json.dumps({"event": "start", "index": index}), flush=True)
        t0 = time.perf_counter()
        errors = check_case(
            case,
            channels_last=settings["channels_last"],
            dtype=settings["dtype"],
            rounds=int(settings.get("rounds", 8)),
            raw=bool(settings.get("raw", False)),
        )
        print(
            json.dumps(
                {"event": "done", "index": index, "seconds": time.perf_counter() - t0, **errors}
            ),
            flush=True,
        )
    return 0


# -- running cases from the parent -----------------------------------------------------------------


@dataclass
class CaseResult:
    case: ConvCase
    settings: dict
    status: str  # ok | wrong | crash | hang | error
    detail: str = ""
    errors: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "case": asdict(self.case),
            "label": self.case.label(),
            "settings": self.settings,
            "status": self.status,
            "detail": self.detail,
            "errors": self.errors,
        }


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def run_cases(
    cases: list[ConvCase],
    *,
    threads: int,
    channels_last: bool,
    dtype: str = "fp32",
    isa: str | None = None,
    rounds: int = 8,
    raw: bool = False,
    timeout: float = 120.0,
    isolate_crashes: bool = True,
) -> list[CaseResult]:
    """Run ``cases`` in child processes with the given settings; one :class:`CaseResult` each.

    ``isa``: value for ``ONEDNN_MAX_CPU_ISA`` (``None``: the machine's own). All cases run in
    one child; ``timeout`` bounds each case. When the child dies, the case it was running is
    rerun alone to confirm it (``isolate_crashes``; a crash that does not repeat alone is
    reported as ``crash-in-sequence``); a case that hangs is killed and reported as ``hang``.
    The remaining cases continue in a fresh child.
    """
    settings = {
        "threads": threads,
        "channels_last": channels_last,
        "dtype": dtype,
        "isa": isa or "native",
        "rounds": rounds,
        "raw": raw,
    }
    results: dict[int, CaseResult] = {}
    pending = list(range(len(cases)))
    while pending:
        outcome = _run_child([cases[i] for i in pending], settings, isa, timeout)
        done_local, dead_local, why = outcome
        for local, errors in done_local.items():
            i = pending[local]
            results[i] = _judge(cases[i], settings, errors)
        if dead_local is None:
            missing = [pending[k] for k in range(len(pending)) if k not in done_local]
            for i in missing:  # the child exited without finishing (should not happen)
                results[i] = CaseResult(cases[i], settings, "error", why)
            break
        i = pending[dead_local]
        status, detail = why
        if isolate_crashes and status == "crash" and len(pending) > 1:
            alone = _run_child([cases[i]], settings, isa, timeout)
            if alone[1] is None and 0 in alone[0]:
                status = "crash-in-sequence"
                detail += "; alone it ran clean (the damage may come from an earlier case)"
        results[i] = CaseResult(cases[i], settings, status, detail)
        pending = pending[dead_local + 1 :]
    return [results[i] for i in range(len(cases))]


def _judge(case: ConvCase, settings: dict, errors: dict) -> CaseResult:
    tol = TOLERANCE[settings["dtype"]]
    bad = {k: v for k, v in errors.items() if k.startswith("err_") and v > tol}
    if bad:
        worst = ", ".join(f"{k[4:]} {v:.3g}" for k, v in bad.items())
        return CaseResult(case, settings, "wrong", f"relative error {worst} > {tol}", errors)
    return CaseResult(case, settings, "ok", "", errors)


def _child_env(isa: str | None, threads: int) -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MALLOC_CHECK_"] = "3"  # glibc: abort on the first heap inconsistency it sees
    env["MALLOC_PERTURB_"] = "165"  # fill freed memory, so use-after-free shows as garbage
    if isa:
        env["ONEDNN_MAX_CPU_ISA"] = isa
    else:
        env.pop("ONEDNN_MAX_CPU_ISA", None)
    return env


def _run_child(
    cases: list[ConvCase], settings: dict, isa: str | None, timeout: float
) -> tuple[dict[int, dict], int | None, tuple[str, str] | str]:
    """Run ``cases`` in one child; ``timeout`` bounds each case (and the child's start).

    Returns (finished cases' errors by index, index of the case the child died or hung in or
    None, (status, detail) of the death or a note)."""
    payload = json.dumps({"settings": settings, "cases": [asdict(c) for c in cases]})
    proc = subprocess.Popen(
        [sys.executable, "-m", "m3dgan.kernel_check"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(isa, settings["threads"]),
    )
    lines: queue.Queue[str | None] = queue.Queue()
    errors: list[str] = []

    def pump_stdout() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    def pump_stderr() -> None:
        errors.extend(proc.stderr)

    readers = [threading.Thread(target=f, daemon=True) for f in (pump_stdout, pump_stderr)]
    for reader in readers:
        reader.start()
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.write(payload)
        proc.stdin.close()
    done: dict[int, dict] = {}
    started, hung = None, False
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            hung = True
            proc.kill()
            break
        if line is None:
            break
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("event") == "start":
            started = event["index"]
        elif event.get("event") == "done":
            done[event["index"]] = {k: v for k, v in event.items() if k not in ("event", "index")}
            started = None
    proc.wait()
    for reader in readers:
        reader.join(timeout=10)
    tail = " | ".join("".join(errors).strip().splitlines()[-2:])[-300:]
    where = started if started is not None else len(done)
    if hung:
        return done, where, ("hang", f"no result within {timeout:.0f} s (threads spinning)")
    if proc.returncode == 0:
        return done, None, ""
    if where >= len(cases):
        return done, None, f"exit {proc.returncode}: {tail}"
    if proc.returncode < 0:
        return done, where, ("crash", f"killed by {_signal_name(proc.returncode)}: {tail}")
    return done, where, ("error", f"exit {proc.returncode}: {tail}")


if __name__ == "__main__":
    sys.exit(_worker())
