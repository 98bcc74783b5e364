"""A learned text–speech alignment for guiding the speech decoder's attention
(``model.attention_guide = "learned"``).

The decoder's attention has to *discover* which text position each mel frame speaks, and on a
CPU budget it does so late or never. A small aligner finds it directly, from the very pairs the
decoder trains on, on any corpus (no durations from the synthesizer needed), as RAD-TTS does
(Badlani et al. 2022, "One TTS Alignment to Rule Them All"; FastPitch and NeMo use the same):

1. **Soft alignment.** The source memory (text states, [B, N, D]) and the target mels
   ([B, T, n_mels]) go through two small conv stacks to one width; a frame's log-probability of
   each text position is the log-softmax over positions of −``temperature`` · squared distance,
   plus the log of a static beta-binomial prior that favours the diagonal (FastPitch's ω = 1),
   renormalised: ``log_p`` [B, T, N].
2. **Forward-sum loss.** The probability of *every* monotonic path that visits each text
   position in order, summed with the CTC algorithm (a blank with log-probability −1, as
   RAD-TTS): ``forward_sum_loss`` [B], nats per text position. It trains the aligner (and,
   through the memory, the text encoder) so that some monotonic path explains the frames.
3. **Hard alignment.** Monotonic alignment search (Glow-TTS, Kim et al. 2020):
   ``monotonic_alignment`` gives, per frame, the text position of the most likely monotonic path
   that starts at the first position, ends at the last and visits each at least once.

The decoder then penalises attention mass away from the hard path, as the diagonal guide does
away from the diagonal (``SpeechDecoder``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

TEMPERATURE = 0.0005  # RAD-TTS's AlignmentEncoder default
BLANK_LOGPROB = -1.0  # RAD-TTS's forward-sum loss: the blank's fixed log-probability
PRIOR_OMEGA = 1.0  # FastPitch's beta-binomial prior scaling


class Aligner(nn.Module):
    """Soft alignment of mel frames to text positions (module docstring, step 1).

    ``memory_dim``: width of the source memory; ``n_mels``: mel bins; ``dim``: the shared width
    (80, RAD-TTS's ``n_att_channels``)."""

    def __init__(self, memory_dim: int, n_mels: int, dim: int = 80) -> None:
        super().__init__()
        self.keys = nn.Sequential(
            nn.Conv1d(memory_dim, 2 * dim, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(2 * dim, dim, 1),
        )
        self.queries = nn.Sequential(
            nn.Conv1d(n_mels, 2 * n_mels, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(2 * n_mels, n_mels, 1),
            nn.ReLU(),
            nn.Conv1d(n_mels, dim, 1),
        )

    def forward(
        self,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        mels: torch.Tensor,
        frames: torch.Tensor,
    ) -> torch.Tensor:
        """``memory`` [B, N, D], ``memory_mask`` bool [B, N] (True at real positions), ``mels``
        [B, T, n_mels], ``frames`` int [B] (real frames per row) → ``log_p`` [B, T, N], float32:
        each frame's log-probability of each text position (−inf at padded positions)."""
        k = self.keys(memory.float().transpose(1, 2))  # [B, dim, N]
        q = self.queries(mels.float().transpose(1, 2))  # [B, dim, T]
        # −temperature · ‖q − k‖² over positions. ‖q‖² is the same for every position of a frame
        # and drops out of the softmax, so −temperature · (‖k‖² − 2 q·k) gives the same log_p
        # through one batched matmul instead of a [B, dim, T, N] difference tensor (which was
        # about a tenth of a tts `full` step, forward and backward; bench/profile_step.py).
        distance = k.pow(2).sum(1)[:, None, :] - 2 * torch.bmm(q.transpose(1, 2), k)  # [B, T, N]
        logits = (-TEMPERATURE * distance).masked_fill(~memory_mask[:, None, :], float("-inf"))
        log_p = F.log_softmax(logits, dim=-1)
        prior = beta_binomial_log_prior(frames, memory_mask.sum(1), mels.shape[1], memory.shape[1])
        return F.log_softmax(log_p + prior, dim=-1)


def beta_binomial_log_prior(
    frames: torch.Tensor, positions: torch.Tensor, t: int, n: int
) -> torch.Tensor:
    """FastPitch's static alignment prior, log [B, t, n]: for frame i (1-based) of an utterance of
    T frames, text position k of N follows BetaBinomial(N − 1, ω·i, ω·(T − i + 1)), so the mass
    moves along the diagonal. −inf at positions ≥ N; frames ≥ T get the last frame's row."""
    frames = frames.clamp_min(1).float()[:, None, None]  # [B, 1, 1]
    size = positions.clamp_min(1).float()[:, None, None] - 1  # N − 1
    i = torch.arange(1, t + 1, device=frames.device, dtype=torch.float32)[None, :, None]
    i = torch.minimum(i, frames)
    k = torch.arange(n, device=frames.device, dtype=torch.float32)[None, None, :]
    a, b = PRIOR_OMEGA * i, PRIOR_OMEGA * (frames - i + 1)
    kk = torch.minimum(k, size)  # keeps lgamma finite; masked below

    def lbeta(x, y):
        return torch.lgamma(x) + torch.lgamma(y) - torch.lgamma(x + y)

    log_choose = torch.lgamma(size + 1) - torch.lgamma(kk + 1) - torch.lgamma(size - kk + 1)
    log_pmf = log_choose + lbeta(kk + a, size - kk + b) - lbeta(a, b)
    return log_pmf.masked_fill(k > size, float("-inf"))


def forward_sum_loss(log_p: torch.Tensor, frames: torch.Tensor, positions: torch.Tensor):
    """The forward-sum (CTC) loss of soft alignments ``log_p`` [B, T, N] with ``frames`` [B] real
    frames and ``positions`` [B] real text positions: −log of the summed probability of every
    monotonic path through positions 1..N, per row, divided by N (nats per position; [B]).
    An utterance with fewer frames than positions has no path and costs 0 (``zero_infinity``)."""
    b, t, n = log_p.shape
    # padded positions (−inf) become a finite floor, so that no gradient is NaN
    with_blank = F.pad(log_p.clamp_min(-1e4), (1, 0), value=BLANK_LOGPROB)
    with_blank = F.log_softmax(with_blank, dim=-1)
    targets = torch.arange(1, n + 1, device=log_p.device).expand(b, n)
    return F.ctc_loss(
        with_blank.transpose(0, 1),  # [T, B, N + 1]
        targets,
        frames.clamp(1, t),
        positions.clamp(1, n),
        blank=0,
        reduction="none",
        zero_infinity=True,
    ) / positions.clamp_min(1).float()


@torch.no_grad()
def monotonic_alignment(
    log_p: torch.Tensor, frames: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """Monotonic alignment search (Glow-TTS): the text position of every frame, int64 [B, T],
    along the most likely path through ``log_p`` [B, T, N] that starts at position 0 on frame 0,
    ends at position N − 1 on the last real frame, and moves by 0 or 1 position per frame (so
    every position gets at least one frame when T ≥ N). Frames after a row's last real frame get
    its last position. Rows with fewer frames than positions get a clipped path."""
    b, t, n = log_p.shape
    device = log_p.device
    score = log_p.float().nan_to_num(nan=-1e9).clamp_min(-1e9)
    valid = torch.arange(n, device=device)[None] < positions[:, None]
    score = score.masked_fill(~valid[:, None, :], -1e9)
    best = torch.full((b, t, n), -float("inf"), device=device)
    best[:, 0, 0] = score[:, 0, 0]
    for i in range(1, t):
        previous = best[:, i - 1]
        moved = F.pad(previous[:, :-1], (1, 0), value=-float("inf"))
        best[:, i] = score[:, i] + torch.maximum(previous, moved)
    last = (frames.clamp(1, t) - 1).long()
    position = (positions.clamp(1, n) - 1).long()
    path = torch.empty(b, t, dtype=torch.long, device=device)
    rows = torch.arange(b, device=device)
    for i in range(t - 1, -1, -1):
        active = i <= last  # after a row's last frame its position stays the last one
        path[:, i] = position
        if i == 0:
            break
        stay = best[rows, i - 1, position]
        move = best[rows, i - 1, (position - 1).clamp_min(0)]
        step = active & (position > 0) & ((move > stay) | (position >= i))
        position = position - step.long()
    return path
