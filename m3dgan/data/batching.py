"""Which training rows make each step's batch.

A batch is a pure function of (seed, step), so a resumed run draws exactly the batches an
uninterrupted one draws, and N processes under DDP slice one global batch alike (rank r takes
rows r, r + N, ...).

- Random batches (``train.length_buckets = 0``): a fresh permutation of the training rows each
  epoch, cut into consecutive batches.
- Length buckets (``train.length_buckets = K`` ≥ 1): the same permutation is cut into pools of
  K batches; each pool is sorted by length and cut into K batches of rows of similar length,
  drawn in a shuffled order. Every row is still drawn once per epoch. A batch is trimmed to
  its longest row (``data.tensors.batch_to_model``), so a batch of similar lengths carries
  less padding, and a text or speech step does less work: on en2fr's training split (subwords),
  random batches of 32 are 39 % real tokens, pools of 128 batches 83 %. The same idea as
  OpenNMT-py's ``bucket_size`` and fairseq's batching by size. Image sides have one size, so a
  task without a text or speech side is not affected.
"""

from __future__ import annotations

import torch

from m3dgan.modalities.text.vocab import PAD


def row_lengths(split: dict, kinds: tuple[str, str]) -> torch.Tensor | None:
    """The sort key of length buckets: for each training row, the sum over its text and speech
    sides of that side's length (tokens, or mel frames) divided by the side's mean length, as
    float [N]. ``kinds``: the (source, target) modality kinds, whose sides are ``split``'s
    ``"source"`` and ``"target"`` (text: padded ids [N, L]; speech: ``SpeechFrames``). None
    when neither side is text or speech (every row then has the same size)."""
    key = None
    for side, kind in zip(("source", "target"), kinds, strict=True):
        if kind == "text":
            lengths = (split[side] != PAD).sum(dim=1).float()
        elif kind == "speech":
            lengths = split[side].lengths.float()
        else:
            continue
        part = lengths / lengths.mean().clamp_min(1.0)
        key = part if key is None else key + part
    return key


def batch_indices(
    n: int,
    batch_size: int,
    step: int,
    seed: int,
    rank: int = 0,
    world: int = 1,
    lengths: torch.Tensor | None = None,
    buckets: int = 0,
) -> torch.Tensor:
    """Row indices (int64) of this rank's share of the global batch for ``step``.

    ``n`` training rows, ``batch_size`` rows a global batch (an epoch is ``n // batch_size``
    batches, at least one); ``lengths`` (float [n], :func:`row_lengths`) and ``buckets`` K ≥ 1:
    length buckets of K batches (module docstring); ``buckets`` 0 or ``lengths`` None: random
    batches."""
    per_epoch = max(n // batch_size, 1)
    epoch, pos = divmod(step, per_epoch)
    epoch_seed = seed * 1_000_003 + epoch
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed))
    if buckets < 1 or lengths is None:
        idx = perm[pos * batch_size : (pos + 1) * batch_size]
        return idx[rank::world]
    pool = pos // buckets
    first = pool * buckets  # the pool's first batch in the epoch
    count = min(buckets, per_epoch - first)  # the epoch's last pool may hold fewer batches
    rows = perm[first * batch_size : (first + count) * batch_size]
    rows = rows[torch.argsort(lengths[rows], stable=True)]  # ties keep the random order
    order_seed = epoch_seed * 1_000_033 + pool
    order = torch.randperm(count, generator=torch.Generator().manual_seed(order_seed))
    k = int(order[pos - first])
    idx = rows[k * batch_size : (k + 1) * batch_size]
    return idx[rank::world]
