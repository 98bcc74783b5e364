"""How ``m3dgan evaluate`` makes a model's outputs on test data: one :class:`Outputs` per
evaluation, used by every metric family (image, text, speech).

- Test-split rows become model inputs in batches, as training reads them
  (:func:`m3dgan.data.tensors.batch_to_model`: images to [-1, 1], mels to float32, ids cut to
  the longest row of the batch), on the CPU, then moved to the model's device.
- The domain code comes from a random code e ~ N(0, I) (:meth:`Outputs.translate`), from
  references (their encoding's posterior mean, also :meth:`Outputs.translate`), or is the
  prior's mean e = 0 for text decoding, greedy or beam search (:meth:`Outputs.texts`; the paper
  uses no reference at test time there). A model without a domain code (pix2pix, mle) ignores
  codes and references.
- The randomness is the evaluation's own, all from ``seed``: random codes come from
  :attr:`Outputs.codes` (a generator on the model's device), random picks of test items (which
  reference) from :attr:`Outputs.picks` (a CPU generator), and the model code that draws from
  torch's global RNG because it takes no generator (the speech decoder's prenet dropout, on at
  inference) runs on the evaluation's own stream of it: seeded with ``seed`` on first use,
  continued from one call to the next, and the caller's global RNG state put back after each
  call. The same seed gives the same numbers, whatever ran before, and evaluating leaves the
  global RNG as it found it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from m3dgan.data.tensors import batch_to_model
from m3dgan.infer import Translator

CPU = torch.device("cpu")


class Outputs:
    """A translator's outputs for one evaluation: ``seed`` seeds every random draw, ``beam`` is
    the beam size of text decoding (1: greedy)."""

    def __init__(self, tr: Translator, *, seed: int = 0, beam: int = 1) -> None:
        tr.check_beam_size(beam)  # the CLI's and Translator's check: ≥ 1, > 1 for text only
        self.tr, self.model, self.device = tr, tr.model, tr.device
        self.seed, self.beam = seed, beam
        self.codes = torch.Generator(device=tr.device).manual_seed(seed)
        self.picks = torch.Generator().manual_seed(seed)
        self._stream: list[torch.Tensor] | None = None  # the own global-RNG stream, once used

    def pick(self, n: int, k: int) -> torch.Tensor:
        """``k`` random indices in [0, n) (int64, CPU), drawn from :attr:`picks`."""
        return torch.randint(0, n, (k,), generator=self.picks)

    def batches(
        self, column, size: int, rows: Sequence[int] | None = None
    ) -> Iterator[torch.Tensor]:
        """Model inputs on the model's device: the ``rows`` of a test-split ``column`` (all
        rows, in order, when None), ``size`` at a time. Rows are taken batch by batch, so ragged
        mels (:class:`~m3dgan.data.frames.SpeechFrames`) are padded to their batch's longest."""
        n = len(column) if rows is None else len(rows)
        for start in range(0, n, size):
            stop = min(start + size, n)
            index = torch.arange(start, stop) if rows is None else torch.tensor(rows[start:stop])
            yield batch_to_model(column[index], CPU).to(self.device)

    @torch.no_grad()
    def translate(
        self, source: torch.Tensor, reference: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Outputs for a batch of model inputs, on the model's device: in the domain of
        ``reference`` (one reference per source) when given, else from random codes."""
        source = source.to(self.device)
        with self._own_global_rng():
            if reference is not None:
                return self.model.translate(source, reference=reference.to(self.device))
            return self.model.translate(source, generator=self.codes)

    @torch.no_grad()
    def texts(self, column, rows: Sequence[int], size: int, references=None) -> list[str]:
        """The decoded text outputs of the ``rows`` of a test-split ``column``, ``size`` at a
        time, greedy or beam search. The domain code is the prior's mean (e = 0), or, with a
        test-split ``references`` column, the posterior mean of each row's own reference (the
        code the model was trained with: R = T)."""
        model, hyps = self.model, []
        refs = self.batches(references, size, rows) if references is not None else None
        for source in self.batches(column, size, rows):
            e = None
            if model.attention is not None:
                e = torch.zeros(len(source), model.cfg.nz, device=self.device)
                if refs is not None:
                    e = model.encode(next(refs)).mu
            with self._own_global_rng():
                ids = model.translate(source, e=e, beam_size=self.beam)
            hyps.extend(self.tr.decode(ids))
        return hyps

    @torch.no_grad()
    def posterior_kl(self, column, rows: Sequence[int], size: int) -> torch.Tensor:
        """KL(q(e | R) ‖ N(0, I)) in nats, float64 [len(rows)], of each of the ``rows`` of a
        test-split ``column`` as the reference (eq. 3's term, per sample): how much of the
        reference the domain code carries."""
        out = []
        for reference in self.batches(column, size, rows):
            q = self.model.encode(reference)
            kl = -0.5 * (1 + q.logvar - q.mu.pow(2) - q.logvar.exp()).sum(dim=1)
            out.append(kl.double().cpu())
        return torch.cat(out)

    def _rng_states(self) -> list[torch.Tensor]:
        states = [torch.get_rng_state()]
        if self.device.type == "cuda":
            states.append(torch.cuda.get_rng_state(self.device))
        return states

    def _set_rng_states(self, states: list[torch.Tensor]) -> None:
        torch.set_rng_state(states[0])
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(states[1], self.device)

    @contextmanager
    def _own_global_rng(self) -> Iterator[None]:
        """Run the block on this evaluation's stream of the global RNG (CPU and the model's
        device), seeded with ``seed`` the first time, and put the caller's state back after."""
        caller = self._rng_states()
        if self._stream is None:
            torch.default_generator.manual_seed(self.seed)
            if self.device.type == "cuda":
                with torch.cuda.device(self.device):
                    torch.cuda.manual_seed(self.seed)
        else:
            self._set_rng_states(self._stream)
        try:
            yield
        finally:
            self._stream = self._rng_states()
            self._set_rng_states(caller)
