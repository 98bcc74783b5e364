"""2-D convolutions routed around CPU kernel bugs; drop-in ``nn.Conv2d`` / ``nn.ConvTranspose2d``.

Every 2-D convolution in the project's models is one of these classes: same constructor, same
parameters (``weight``, ``bias``), same checkpoints, same results up to float rounding. They
differ from ``torch.nn`` only where a configuration is known to hit a broken CPU kernel, and
each such route says why.

The bug routed around (found by ``bench/conv_sweep.py``, results in
``bench/results/conv_sweep*``; upstream: oneDNN issue #6035, open at the time of writing):
oneDNN's 1×1 convolution computes a stride-s 1×1 convolution by first copying every s-th pixel
into a workspace ("reduce to unit stride"). In the weight-gradient pass over channels-last
input with fewer input channels than its channel block (8 on AVX2, 16 on AVX-512) it sizes
that workspace for the block but fills it by the real channel count, writing past its end:
heap corruption (``free(): invalid next size``, segfaults) on one thread, wrong weight
gradients or a hang on two. The image generator's strided skip (``ResidualDown.skip``) is
such a layer at the test suite's widths, and the first block's skip is one at any width for a
1- or 3-channel input. Seen with torch 2.13.0 and 2.14.1 (oneDNN 3.12.0) and 2.15.0 (oneDNN
3.13.3, the newest release on PyPI on 2026-11-30), on AVX2,
AVX-512 and AMX code paths.

The route: a stride-s 1×1 convolution equals a stride-1 1×1 convolution of every s-th pixel
of the (zero-padded) input (``x[..., ::s, ::s]``), so :class:`Conv2d` takes the pixels itself and runs
the unit-stride kernel, which has no workspace. Exact same function and parameters; the
layout stays channels-last, so that speed gain is kept (the slice costs one copy of a quarter
of the input). It is applied on every CPU and device, not behind an instruction-set check:
the extra copy is negligible and the project cannot know which kernel oneDNN will pick.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# torch releases checked against the bug (bench/conv_sweep.py --raw). When a release with a
# fixed oneDNN is pinned, the route can be limited to older releases here.
CHECKED_TORCH = ("2.13.0", "2.14.1", "2.15.0")


def is_strided_pointwise(module: nn.Conv2d) -> bool:
    """A 1×1 kernel with a stride above 1 (zero padding, if any): the configuration oneDNN
    #6035 hits. (Dilation does nothing to a 1×1 kernel.)"""
    return (
        tuple(module.kernel_size) == (1, 1)
        and any(s > 1 for s in module.stride)
        and not isinstance(module.padding, str)
        and module.padding_mode == "zeros"
    )


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` that computes a strided 1×1 convolution as subsampling + a unit-stride one.

    Same arguments, parameters and output shape as ``nn.Conv2d``; input [N, C_in, H, W] (any
    memory format), output [N, C_out, H_out, W_out]. See the module docstring for why.
    """

    def _conv_forward(
        self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        if is_strided_pointwise(self):
            (sh, sw), (ph, pw) = self.stride, self.padding
            if ph or pw:
                input = F.pad(input, (pw, pw, ph, ph))
            return F.conv2d(input[..., ::sh, ::sw], weight, bias, 1, 0, 1, self.groups)
        return super()._conv_forward(input, weight, bias)


class ConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d``; no transposed configuration the project builds needs a route
    (``bench/conv_sweep.py``), the class marks where one would go."""
