"""Which training rows make up one example: the source, the target and the reference.

The paper trains with the reference equal to the target (R = T, the cVAE-GAN branch of
BicycleGAN). The encoder then sees the very picture G must draw, so it can learn to pass on
its *content* (colours, shape) instead of its *domain*, and at test time a reference of another
item hands over its colours rather than its style. Two switches change what a training example is
made of, where the data set has the labels for it:

- ``train.domain_reference = q``: with probability q, R is another training row of T's domain
  showing other content (another emoji by the same vendor; another sentence in the same speaking
  style). The only thing R and T then share is the domain, so that is all the encoder can
  usefully carry from it. At q = 1 the encoder never sees T; at 0 < q < 1 it still learns to
  reconstruct from T itself some of the time (lower L1 when the reference *is* the ground
  truth). A data set without any domain labels is one domain (R: another training row); one
  with labels on some rows only is refused.
- ``train.cross_domain = p``: with probability p, S is replaced by the source of the same content
  (same label) in another domain: the edge map of the *Twitter* drawing of an emoji paired with its
  *Google* artwork. Without it, S already tells the domain (edge maps of the two vendors differ),
  G learns the domain from S, and the reference has nothing left to decide. Needs content labels
  shared across domains; rows without such a partner keep their own source.

Draws are a pure function of (seed, step), like the batches (``m3dgan.train.batch_indices``), so a
resumed run makes the same examples as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from m3dgan.errors import ConfigError

_CANDIDATES = 8  # draws per row to find a reference with other content (rejection sampling)


@dataclass
class Example:
    """Row indices of one batch: ``source`` (S), ``target`` (T), ``reference`` (R; equal to
    ``target`` under the paper's R = T)."""

    source: torch.Tensor
    target: torch.Tensor
    reference: torch.Tensor

    @property
    def reference_is_target(self) -> bool:
        return bool(torch.equal(self.reference, self.target))

    def share(self, rank: int, world: int) -> Example:
        """This process's rows of a global batch (strided like ``train.batch_indices``)."""
        return Example(
            self.source[rank::world], self.target[rank::world], self.reference[rank::world]
        )


class TrainingPairs:
    """Chooses S and R for the T rows of a batch (see the module docstring).

    ``labels``, ``domains``: int64 [N] of the training split (``-1``: none); ``domain_reference``,
    ``cross_domain``: probabilities in [0, 1] (module docstring). Raises ConfigError
    (naming the data set) when a switch needs labels the data set does not have (domain labels
    on some rows only; content shared across domains). ``one_domain``: the data set has no
    domain labels, so references come from the whole training split."""

    def __init__(
        self,
        labels: torch.Tensor,
        domains: torch.Tensor,
        domain_reference: float = 0.0,
        cross_domain: float = 0.0,
        dataset: str = "the data set",
    ) -> None:
        self.labels, self.domains = labels.long().cpu(), domains.long().cpu()
        self.domain_reference, self.cross_domain = float(domain_reference), float(cross_domain)
        # a data set with no domain labels at all is one domain for the reference draw: R is
        # another training row (text: another sentence), which still keeps T out of the code
        self.one_domain = bool(len(self.domains)) and bool((self.domains < 0).all())
        self._ref_domains = torch.zeros_like(self.domains) if self.one_domain else self.domains
        n_domains = int(self._ref_domains.max().item()) + 1 if len(self.domains) else 0
        if self.domain_reference > 0 and (n_domains < 1 or bool((self._ref_domains < 0).any())):
            raise ConfigError(
                f"train.domain_reference={domain_reference:g} needs a domain label on every "
                f"training row, and {dataset} has some rows without one; use "
                f"train.domain_reference=0"
            )
        # rows of each domain, for drawing references
        self._by_domain = [
            torch.nonzero(self._ref_domains == d).flatten() for d in range(n_domains)
        ]
        self._partners = self._cross_domain_partners() if self.cross_domain > 0 else None
        if self._partners is not None and not bool((self._partners >= 0).any()):
            raise ConfigError(
                f"train.cross_domain={cross_domain}: no content of {dataset} appears in more than "
                "one domain (rows need the same label in another domain); use train.cross_domain=0"
            )

    def _cross_domain_partners(self) -> torch.Tensor:
        """[N] index of a row with the same label in another domain (the next one in domain
        order, wrapping), or -1 where there is none."""
        partners = torch.full_like(self.labels, -1)
        valid = (self.labels >= 0) & (self.domains >= 0)
        groups: dict[int, list[int]] = {}
        for row in torch.nonzero(valid).flatten().tolist():
            groups.setdefault(int(self.labels[row]), []).append(row)
        for rows in groups.values():
            rows.sort(key=lambda r: int(self.domains[r]))
            for i, row in enumerate(rows):
                for other in rows[i + 1 :] + rows[:i]:
                    if int(self.domains[other]) != int(self.domains[row]):
                        partners[row] = other
                        break
        return partners

    @property
    def paper_setting(self) -> bool:
        """R = T and S as given: nothing to draw (the batch is exactly the paper's)."""
        return self.domain_reference == 0 and self.cross_domain == 0

    def draw(self, target: torch.Tensor, seed: int, step: int) -> Example:
        """S and R for the target rows ``target`` (int64 [B]) of step ``step``."""
        if self.paper_setting:
            return Example(target, target, target)
        rng = torch.Generator().manual_seed((seed * 1_000_003 + step) & 0x7FFF_FFFF_FFFF_FFFF)
        source = target
        if self._partners is not None:
            partner = self._partners[target]
            swap = (torch.rand(len(target), generator=rng) < self.cross_domain) & (partner >= 0)
            source = torch.where(swap, partner, target)
        reference = target
        if self.domain_reference > 0:
            other = self._same_domain_other_content(target, rng)
            use = torch.rand(len(target), generator=rng) < self.domain_reference
            reference = torch.where(use, other, target)
        return Example(source, target, reference)

    def _same_domain_other_content(self, target: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """For each row, a random row of its domain with another label, or any other row of its
        domain where the row has no label (another row where the domain has nothing else)."""
        out = target.clone()
        for d, pool in enumerate(self._by_domain):
            rows = torch.nonzero(self._ref_domains[target] == d).flatten()
            if not len(rows) or not len(pool):
                continue
            draws = pool[torch.randint(len(pool), (len(rows), _CANDIDATES), generator=rng)]
            mine = target[rows]
            # content labels tell other content; a row without one (-1: en2fr's sentences) is
            # its own content, so any other row of the domain will do
            unlabelled = (self.labels[mine] < 0).unsqueeze(1)
            other = (self.labels[draws] != self.labels[mine].unsqueeze(1)) | unlabelled
            other &= draws != mine.unsqueeze(1)
            # the first draw with other content; a row whose draws all share its label keeps the
            # first draw (a domain with one content only: any other row of it)
            first = torch.where(other.any(1), other.float().argmax(1), torch.zeros_like(rows))
            out[rows] = draws[torch.arange(len(rows)), first]
        return out
