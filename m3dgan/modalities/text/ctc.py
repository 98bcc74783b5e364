"""Hybrid CTC/attention for text outputs (``model.ctc_weight``; Watanabe et al. 2017, "Hybrid
CTC/Attention Architecture for End-to-End Speech Recognition"; ESPnet's ``mtlalpha``).

- **Training**: a CTC head on the source memory gives per-position log-probabilities over the
  text vocabulary, with PAD (id 0, never a target symbol) as the CTC blank. The CTC targets are
  the text ids without PAD, BOS and EOS. :func:`ctc_loss` is summed over each utterance and
  divided by the number of target characters in the batch (per token, the same unit as the
  attention cross-entropy here; ESPnet divides both terms per utterance instead, by the batch
  size — either way both terms share a unit, so λ weighs them as in ESPnet).
- **Decoding**: :class:`CTCPrefixScorer` gives, for every hypothesis in a beam and every next
  token, the CTC prefix probability log p_ctc(h, …) (Watanabe et al. 2017, Algorithm 2; a
  batched port of ESPnet's ``CTCPrefixScore``), so that beam search ranks hypotheses by
  (1 − λ) · log p_att(h) + λ · log p_ctc(h, …) *during* the search (joint decoding, not an
  n-best rescoring).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from m3dgan.modalities.text.vocab import BOS, EOS, PAD

BLANK = PAD  # the CTC blank: padding is never a target symbol
LOGZERO = -1e10  # log 0 kept finite, as ESPnet does, so that sums of impossible scores stay finite


def ctc_targets(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Text ids [B, L] (PAD-padded, EOS-terminated) → CTC targets [B, S] (each row's symbols
    other than PAD, BOS and EOS, in order, padded with PAD) and their lengths int64 [B]."""
    ids = ids.long()
    keep = (ids != PAD) & (ids != BOS) & (ids != EOS)
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept symbols first
    lengths = keep.sum(1)
    targets = ids.gather(1, order)
    width = int(lengths.max()) if len(lengths) else 0
    targets = targets[:, :width]
    real = torch.arange(width, device=ids.device)[None] < lengths[:, None]
    return targets.masked_fill(~real, PAD), lengths


def min_input_length(targets: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The fewest input positions CTC needs for each target [B, S]: its length plus one blank
    between every pair of equal neighbours, int64 [B]."""
    if targets.shape[1] < 2:
        return lengths.clone()
    real = torch.arange(targets.shape[1], device=targets.device)[None] < lengths[:, None]
    repeats = (targets[:, 1:] == targets[:, :-1]) & real[:, 1:]
    return lengths + repeats.sum(1)


def ctc_loss(
    log_probs: torch.Tensor, input_mask: torch.Tensor, ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The CTC term of the text loss, in nats per target character, and how many utterances
    could not be aligned.

    ``log_probs`` [B, M, V]: the CTC head's log-softmax over the source memory's M positions;
    ``input_mask`` bool [B, M]: real positions; ``ids`` [B, L]: the target text ids. An
    utterance whose memory is shorter than :func:`min_input_length` has probability 0; its loss
    is set to 0 (``zero_infinity``) instead of infinity. Returns (loss, infeasible count), both
    0-d tensors; the loss is float32."""
    targets, target_lengths = ctc_targets(ids)
    input_lengths = input_mask.sum(1).long()
    nll = F.ctc_loss(
        log_probs.float().transpose(0, 1),  # [M, B, V]
        targets,
        input_lengths,
        target_lengths,
        blank=BLANK,
        reduction="none",
        zero_infinity=True,
    )
    infeasible = (input_lengths < min_input_length(targets, target_lengths)).sum()
    return nll.sum() / target_lengths.sum().clamp_min(1), infeasible


class CTCPrefixScorer:
    """CTC prefix scores for a batch of N hypotheses and all V next tokens at once.

    ``log_probs`` [N, T, V]: CTC log-probabilities (one row per hypothesis: an utterance's
    rows repeated beam-size times); ``lengths`` [N]: real positions per row. The state of a
    hypothesis h is r [T, 2]: log r_t^n(h), log r_t^b(h), the probability of the first t + 1
    positions giving h and ending in a non-blank / a blank. :meth:`score` returns, for every
    candidate c, log p_ctc(h·c, …), the probability that the collapsed output *starts* with h·c
    (for c = EOS: that it *is* h; for c = blank: log 0), and the states of the extended
    hypotheses. Positions past a row's length are not read. Costs O(T · N · V) per step
    (a loop over T)."""

    def __init__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> None:
        self.x = log_probs.float().transpose(0, 1).contiguous()  # [T, N, V]
        self.t, self.n, self.v = self.x.shape
        self.valid = torch.arange(self.t, device=self.x.device)[:, None] < lengths[None].to(
            self.x.device
        )  # [T, N]
        self.last = (lengths.to(self.x.device) - 1).clamp_min(0)

    def initial_state(self) -> torch.Tensor:
        """r [T, 2, N] of the empty prefix: no non-blank emitted, only blanks so far."""
        blank = self.x[:, :, BLANK].masked_fill(~self.valid, 0.0)
        r_b = torch.cumsum(blank, dim=0)
        return torch.stack([torch.full_like(r_b, LOGZERO), r_b], dim=1)

    def score(
        self, r_prev: torch.Tensor, last: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``r_prev`` [T, 2, N]: the hypotheses' states; ``last`` [N]: their last token;
        ``step``: their length (tokens after BOS; the same for all). Returns
        (log_psi [N, V], r [T, 2, N, V])."""
        x, t_max = self.x, self.t
        r_sum = torch.logaddexp(r_prev[:, 0], r_prev[:, 1])  # [T, N]
        phi = r_sum[:, :, None].expand(-1, -1, self.v)
        if step > 0:
            # c equal to h's last token: only paths ending in a blank can extend to h·c
            same = F.one_hot(last.long(), self.v).bool()[None]  # [1, N, V]
            phi = torch.where(same, r_prev[:, 1, :, None], phi)
        r = torch.full((t_max, 2, self.n, self.v), LOGZERO, device=x.device)
        if step == 0:
            r[0, 0] = x[0]
        start = max(step, 1)
        log_psi = r[start - 1, 0].clone() if start - 1 < t_max else r[-1, 0].clone()
        blank = x[:, :, BLANK]
        for t in range(start, t_max):
            valid = self.valid[t][:, None]
            r_n = torch.logaddexp(r[t - 1, 0], phi[t - 1]) + x[t]
            r_b = torch.logaddexp(r[t - 1, 0], r[t - 1, 1]) + blank[t][:, None]
            r[t, 0] = torch.where(valid, r_n, r[t - 1, 0])
            r[t, 1] = torch.where(valid, r_b, r[t - 1, 1])
            log_psi = torch.where(valid, torch.logaddexp(log_psi, phi[t - 1] + x[t]), log_psi)
        log_psi[:, EOS] = r_sum[self.last, torch.arange(self.n, device=x.device)]
        log_psi[:, BLANK] = LOGZERO
        return log_psi.clamp_min(LOGZERO), r
