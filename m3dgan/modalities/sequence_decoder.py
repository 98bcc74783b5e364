"""The sequential generator M_out shared by text and speech targets (paper §4).

    source representation ──► memory (sequence of states) ⊕ z replicated over time
    previous token ─ embedding ─ prenet FC ─ attention RNN (2-layer residual GRU 256) ─► query
    query × memory ─ additive (or general) attention ─► context
    [query, context] ─ decoder RNN (GRU 256) ─ [·, context] ─ linear ─► next-token logits

One token per step. Training uses teacher forcing; because the attention RNN reads only previous
tokens (no input feeding), a whole teacher-forced sequence runs as one GRU call per layer and one
batched attention, and step-by-step decoding (greedy or beam search) computes exactly the same
function. z reaches every step through the memory: every memory position carries a copy, so the
context vector always contains z.

How a query scores a memory position (``model.attention_score``): ``additive`` (Bahdanau et al.
2015; Tacotron's, whose decoder the paper follows) is v·tanh(W q + U m), which a teacher-forced
pass computes as a [B, T, M, a] tensor (a = 256). ``general`` (Luong et al. 2015, OpenNMT-py's
default ``global_attention``) is (W q)·(U m) / sqrt(a), one batched matmul [B, T, a] × [B, a, M];
U's bias adds the same amount to every position of a row, so softmax ignores it. One step on one
quiet CPU thread: 0.95× on en2fr (short subword memories), 0.74× on emoji2text (64 image
positions; docs/benchmarks.md). Location-sensitive speech attention
(``modalities/speech/decoder.py``) stays additive.

``source_attention=False`` reproduces the paper's weak point: the memory is a single global
embedding of the source (mean of its states), so the output cannot follow the source's order —
kept as a switch so the benchmark can measure what attention buys.

The source enters through its modality's attention memory (``Modality.build_memory``): a text
source's prenet states as they are, an image's or speech's prenet grid turned into a sequence.
The text and speech decoders built on this core are in ``modalities/text/decoder.py`` and
``modalities/speech/decoder.py``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from m3dgan.config import ModelConfig
from m3dgan.modalities.base import Modality, SequenceFeatures


class SourceMemory(nn.Module):
    """What every sequence generator reads: the source's memory (a sequence of states), with z
    copied to every position. Owns the source side's memory module (as ``<kind>_memory``, e.g.
    ``image_memory``; none for a text source, whose prenet states are the memory)."""

    def __init__(self, source: Modality, z_dim: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.source_attention = cfg.source_attention
        memory = source.build_memory(cfg)
        self._memory_name = f"{source.kind}_memory" if memory is not None else None
        if memory is not None:
            self.add_module(self._memory_name, memory)
            mem_dim = memory.out_dim
        else:
            mem_dim = source.prenet_channels(cfg)
        self.mem_dim = mem_dim + z_dim  # width of a memory position, z included

    def source_features(self, source) -> SequenceFeatures:
        """The source prenet's output → its attention memory before z: states [B, M, D] and
        mask [B, M] (``mem_dim`` − ``z_dim`` = D)."""
        return getattr(self, self._memory_name)(source) if self._memory_name else source

    def memory(
        self, source, z: torch.Tensor | None, features: SequenceFeatures | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The source prenet's output (⊕ z at every position) → (memory [B, M, mem_dim], mask
        [B, M]). ``features``: :meth:`source_features` already computed (``source`` unused)."""
        feats = features if features is not None else self.source_features(source)
        states, mask = feats.states, feats.mask
        if not self.source_attention:
            states = feats.pooled().unsqueeze(1)
            mask = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)
        if self.z_dim:
            if z is None:
                raise ValueError("this generator was built with z; pass a domain embedding")
            states = torch.cat([states, z[:, None, :].expand(-1, states.shape[1], -1)], dim=-1)
        return states, mask


class AttentionRNNDecoder(SourceMemory):
    """The part of M_out that text and speech share: the source memory (⊕ z), the attention RNN
    (2-layer residual GRU), additive attention and the decoder RNN. Subclasses supply what goes in
    (embedded previous tokens, or previous mel frames through a prenet) and what comes out."""

    def __init__(
        self,
        source: Modality,
        input_dim: int,
        z_dim: int,
        cfg: ModelConfig,
        input_feeding: bool = False,
    ) -> None:
        """``source``: the source side's modality, whose attention memory this decoder owns
        (:class:`SourceMemory`). ``input_feeding``: the attention RNN also reads the previous
        step's context vector (Tacotron's design; steps then run one at a time, in training
        too)."""
        super().__init__(source, z_dim, cfg)
        a = cfg.decoder_attention_rnn
        if input_feeding:
            input_dim += self.mem_dim
        self.attention_rnn = nn.ModuleList(
            [nn.GRU(input_dim, a, batch_first=True), nn.GRU(a, a, batch_first=True)]
        )
        self.query = nn.Linear(a, a, bias=False)
        self.key = nn.Linear(self.mem_dim, a)
        self.general = cfg.attention_score == "general"
        # additive: v of v·tanh(W q + U m) (general attention has no v)
        self.score = None if self.general else nn.Linear(a, 1, bias=False)
        self.decoder_rnn = nn.GRU(a + self.mem_dim, cfg.decoder_rnn, batch_first=True)
        self.out_dim = cfg.decoder_rnn + self.mem_dim  # what ``_core`` returns per step

    # -- one pass over a block of steps (all teacher-forced steps, or a single decoding step) --
    def _core(self, x, memory, keys, mask, state=None):
        """x [B, T, input_dim] → ([decoder state, context] [B, T, out_dim], state, weights)."""
        s1, s2, s3 = state if state is not None else (None, None, None)
        h1, s1 = self.attention_rnn[0](x, s1)
        h2, s2 = self.attention_rnn[1](h1, s2)
        query = h2 + h1  # residual second layer
        if self.general:
            energy = self.query(query) @ keys.transpose(1, 2) * keys.shape[-1] ** -0.5
        else:
            energy = self.score(torch.tanh(self.query(query)[:, :, None] + keys[:, None]))
            energy = energy.squeeze(-1)
        energy = energy.masked_fill(~mask[:, None, :], float("-inf"))
        weights = F.softmax(energy, dim=-1)  # [B, T, M]
        context = weights @ memory  # [B, T, mem_dim]
        h3, s3 = self.decoder_rnn(torch.cat([query, context], dim=-1), s3)
        return torch.cat([h3, context], dim=-1), (s1, s2, s3), weights
