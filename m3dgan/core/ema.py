"""An exponential moving average (EMA) of the generator side's weights (``train.ema_decay``).

Source: StarGAN v2 (Choi et al. 2020) samples and evaluates with an EMA of its generator,
mapping network and style encoder (decay 0.999); Karras et al. (ProGAN, 2018) did the same. The
average is smoother than the weights the optimizer leaves after any one GAN step, which swing
with the discriminator.

What is averaged: every entry of ``model.state_dict()`` outside the discriminators
(``disc_enc.``, ``disc_rand.``), i.e. the prenets, E_att (reference encoder and token layer) and
G, buffers included. Floating-point entries are averaged; integer ones (BatchNorm's
``num_batches_tracked``) are copied from the live model at each update.

Warm-up (TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``): update number k
(1-based) applies the decay ``min(ema_decay, (1 + k) / (10 + k))`` — 0.18 at the first update,
0.5 at the 8th, 0.9 at the 80th, 0.99 at the 890th — so a short run's average is not dominated
by its initial weights, and a long one's settles at ``ema_decay``. Each update is

    shadow ← d · shadow + (1 − d) · live      (d: the decay of this update)

The average lives on the model's device, in each tensor's own dtype and memory layout.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

# state-dict prefixes of the discriminators, which the average leaves out
DISCRIMINATOR_PREFIXES = ("disc_enc.", "disc_rand.")


def generator_side_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` without the discriminators' entries: the tensors themselves
    (they share memory with the model's parameters and buffers), not copies."""
    return {
        name: tensor
        for name, tensor in model.state_dict().items()
        if not name.startswith(DISCRIMINATOR_PREFIXES)
    }


def warmup_decay(decay: float, k: int) -> float:
    """The decay applied at update ``k`` (1-based): ``min(decay, (1 + k) / (10 + k))``."""
    return min(decay, (1.0 + k) / (10.0 + k))


@torch.no_grad()
def put_weights(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy ``tensors`` (generator-side names → tensors, any device and layout) into ``model``
    in place; each keeps its parameter's device, dtype and memory layout.

    Raises:
        ValueError: the names are not exactly the model's generator side, or a shape differs.
    """
    live = generator_side_state(model)
    missing, unexpected = sorted(set(live) - set(tensors)), sorted(set(tensors) - set(live))
    if missing or unexpected:
        raise ValueError(
            f"EMA weights do not match the model (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]})"
        )
    wrong = [n for n, t in tensors.items() if t.shape != live[n].shape]
    if wrong:
        raise ValueError(
            f"EMA weights do not fit the model ({wrong[0]}: {tuple(tensors[wrong[0]].shape)} vs "
            f"{tuple(live[wrong[0]].shape)})"
        )
    for name, tensor in tensors.items():
        live[name].copy_(tensor)


class GeneratorEMA:
    """The shadow copy of a model's generator side and its update count.

    ``decay``: ``train.ema_decay``, in (0, 1); ``shadow``: generator-side state-dict names →
    averaged tensors on the model's device; ``updates``: the updates so far (k of the warm-up,
    see the module docstring).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.shadow: dict[str, torch.Tensor] = {}
        self.reset(model)

    def reset(self, model: nn.Module) -> None:
        """Start the average over from ``model``'s current weights (update count 0)."""
        self.shadow = {n: t.detach().clone() for n, t in generator_side_state(model).items()}
        self.updates = 0

    @property
    def _averaged(self) -> list[str]:
        return [n for n, t in self.shadow.items() if t.is_floating_point()]

    def current_decay(self) -> float:
        """The decay the next update will apply."""
        return warmup_decay(self.decay, self.updates + 1)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold ``model``'s current generator-side weights into the average (after each
        generator step): floating-point entries by one lerp per tensor list, integer ones
        copied."""
        live = generator_side_state(model)
        d = self.current_decay()
        averaged = self._averaged
        torch._foreach_lerp_(
            [self.shadow[n] for n in averaged], [live[n] for n in averaged], 1.0 - d
        )
        for name, tensor in self.shadow.items():
            if not tensor.is_floating_point():
                tensor.copy_(live[name])
        self.updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The shadow tensors (names → tensors: the average itself, not a copy)."""
        return self.shadow

    @torch.no_grad()
    def load_state_dict(self, tensors: dict[str, torch.Tensor], updates: int) -> None:
        """Set the average to ``tensors`` (copied into the shadow, keeping its device and
        layout) and the update count to ``updates``.

        Raises:
            ValueError: other names or shapes than the shadow's, or a negative count.
        """
        if updates < 0:
            raise ValueError(f"EMA update count must be >= 0, got {updates}")
        missing = sorted(set(self.shadow) - set(tensors))
        unexpected = sorted(set(tensors) - set(self.shadow))
        if missing or unexpected:
            raise ValueError(
                f"EMA tensors do not match the model (missing {missing[:3]}, unexpected "
                f"{unexpected[:3]})"
            )
        for name, tensor in tensors.items():
            if tensor.shape != self.shadow[name].shape:
                raise ValueError(
                    f"EMA tensor {name} has shape {tuple(tensor.shape)}, the model's "
                    f"{tuple(self.shadow[name].shape)}"
                )
        for name, tensor in tensors.items():
            self.shadow[name].copy_(tensor)
        self.updates = int(updates)

    @contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[nn.Module]:
        """Inside the block ``model`` carries the averaged weights; the live ones come back
        bit for bit on leaving it, also when the block raises. Gradients are not affected
        (the weights are copied in place, outside autograd)."""
        with torch.no_grad():
            live = {n: t.clone() for n, t in generator_side_state(model).items()}
        put_weights(model, self.shadow)
        try:
            yield model
        finally:
            put_weights(model, live)
