"""The model's own convolutions never corrupt memory or compute wrong gradients, on any CPU class.

Every 2-D/1-D convolution that one training step of each task's model runs — at the test
suite's tiny widths and at the default widths — is rerun alone, forward + backward, in child
processes (``m3dgan.kernel_check``) on 1 and 2 threads, contiguous and channels-last, with
oneDNN on this machine's own instruction set and capped at AVX2 (so that an AVX-512 machine
runs the kernels an AVX2-only CPU runs, where oneDNN #6035 first showed; see
``m3dgan.core.safe_conv``). Output and gradients are compared with float64. A crash, hang or
wrong gradient fails the test with the layer, the setting and the signal, instead of killing
the test run.

A second test shows the checker can fail: the plain ``torch.nn`` strided 1×1 convolution that
the project routes around still crashes or computes garbage in a child process.
"""

from __future__ import annotations

import pytest
import torch

from m3dgan.core.safe_conv import Conv2d
from m3dgan.kernel_check import ConvCase, judge_cases, project_cases, run_cases

ISAS = [None, "AVX2"]  # None: the machine's own (AVX-512/AMX here); AVX2: an AVX2-only CPU


@pytest.fixture(scope="module")
def cases() -> list[ConvCase]:
    return project_cases() + judge_cases()


def _report(results) -> str:
    lines = [
        f"{r.status}: {r.case.label()} (model layer {r.case.where}; {r.case.layer}) — {r.detail}"
        for r in results
        if r.status != "ok"
    ]
    return "\n".join(lines)


@pytest.mark.parametrize("isa", ISAS, ids=["native-isa", "avx2"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_model_convolutions_are_safe(cases, isa, threads, channels_last):
    chosen = [c for c in cases if not channels_last or len(c.input_shape) == 4]
    results = run_cases(
        chosen, threads=threads, channels_last=channels_last, isa=isa, rounds=2, timeout=120
    )
    assert len(results) == len(chosen)
    bad = _report(results)
    assert not bad, f"convolution kernels failed ({len(bad.splitlines())} layers):\n{bad}"


def test_every_project_conv2d_is_routed(cases):
    """The sweep above only proves something if the model builds the routed class."""
    conv2d = [c for c in cases if c.op == "conv2d"]  # the models' and the metric judges'
    assert conv2d and all(c.layer == "m3dgan.core.safe_conv.Conv2d" for c in conv2d)
    # the layer oneDNN #6035 hits is among them: the image generator's strided 1×1 skip
    assert any(c.kernel_size == (1, 1) and c.stride == (2, 2) and c.in_channels < 8 for c in conv2d)


def test_checker_catches_the_unrouted_kernel():
    """The plain nn.Conv2d of the image generator's tiny skip, on the AVX2 path, in a child:
    it must come back as a failure (crash or wrong gradient), not kill this process."""
    case = ConvCase(
        op="conv2d",
        in_channels=4,
        out_channels=4,
        kernel_size=(1, 1),
        stride=(2, 2),
        padding=(0, 0),
        dilation=(1, 1),
        groups=1,
        bias=True,
        input_shape=(4, 4, 64, 64),
    )
    raw = run_cases([case], threads=1, channels_last=True, isa="AVX2", raw=True, rounds=8)
    routed = run_cases([case], threads=1, channels_last=True, isa="AVX2", rounds=8)
    assert raw[0].status in ("crash", "wrong", "hang"), raw[0]
    assert routed[0].status == "ok", routed[0]


@pytest.mark.parametrize("stride", [(2, 2), (2, 1), (3, 2)])
@pytest.mark.parametrize("size", [(16, 16), (15, 17)])
@pytest.mark.parametrize("padding", [0, (1, 2)])
def test_routed_strided_pointwise_equals_torch(stride, size, padding):
    """Subsampling + unit-stride 1×1 is the same function as nn.Conv2d's strided 1×1 (float64,
    contiguous: the reference path, which has no bug), with the same parameters."""
    torch.manual_seed(0)
    routed = Conv2d(3, 5, 1, stride=stride, padding=padding).double()
    plain = torch.nn.Conv2d(3, 5, 1, stride=stride, padding=padding).double()
    plain.load_state_dict(routed.state_dict())
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    torch.testing.assert_close(routed(x), plain(x), rtol=0, atol=1e-12)
    assert [n for n, _ in routed.named_parameters()] == ["weight", "bias"]
