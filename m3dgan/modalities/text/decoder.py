"""M_out for text targets: the shared attention-RNN decoder (``modalities.sequence_decoder``)
predicting one token per step, with greedy decoding and beam search (paper §4)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from m3dgan.config import ModelConfig
from m3dgan.modalities.base import Modality, SequenceFeatures
from m3dgan.modalities.sequence_decoder import AttentionRNNDecoder
from m3dgan.modalities.text.nets import token_prenet
from m3dgan.modalities.text.vocab import BOS, EOS, PAD


class TextDecoder(AttentionRNNDecoder):
    """One token per step: embedding → prenet FC → shared core → logits over the vocabulary."""

    def __init__(
        self,
        source: Modality,
        vocab_size: int,
        max_len: int,
        z_dim: int,
        cfg: ModelConfig,
    ) -> None:
        width_in = cfg.text_prenet[-1] if cfg.text_prenet else cfg.text_embed
        super().__init__(source, width_in, z_dim, cfg)
        self.vocab_size, self.max_len = vocab_size, max_len
        self.embedding = nn.Embedding(vocab_size, cfg.text_embed, padding_idx=PAD)
        self.prenet = token_prenet(cfg)
        self.out = nn.Linear(self.out_dim, vocab_size)
        self.own_inputs = cfg.decoder_own_inputs  # parallel scheduled sampling (training only)

    def _run(self, tokens, memory, keys, mask, state=None):
        h, state, weights = self._core(
            self.prenet(self.embedding(tokens)), memory, keys, mask, state
        )
        return self.out(h), state, weights

    def forward(
        self,
        source: SequenceFeatures | torch.Tensor,
        z: torch.Tensor | None,
        target: torch.Tensor | None = None,
        beam_size: int = 1,
        max_len: int | None = None,
    ) -> torch.Tensor:
        """Teacher forcing when ``target`` ids are given: distributions [B, L, V] (zero rows at
        padding). Otherwise decoding: ids [B, T] (padding after the end mark)."""
        memory, mask = self.memory(source, z)
        keys = self.key(memory)
        if target is not None:
            target = target.long()
            bos = torch.full_like(target[:, :1], BOS)
            inputs = torch.cat([bos, target[:, :-1]], 1)
            if self.training and self.own_inputs > 0:
                inputs = self._own_inputs(inputs, memory, keys, mask)
            logits, _, _ = self._run(inputs, memory, keys, mask)
            probs = F.softmax(logits.float(), dim=-1)
            return probs * (target != PAD).unsqueeze(-1)
        limit = max_len or self.max_len
        if beam_size > 1:
            return self._beam(memory, keys, mask, beam_size, limit)
        return self._greedy(memory, keys, mask, limit)

    @torch.no_grad()
    def _own_inputs(self, inputs, memory, keys, mask) -> torch.Tensor:
        """Parallel scheduled sampling (Duckworth et al. 2019, one extra pass): a teacher-forced
        pass without gradients gives the decoder's greedy prediction at every position; each
        input token after BOS is replaced by the prediction made one step before it with
        probability ``model.decoder_own_inputs``. Padding stays padding."""
        logits, _, _ = self._run(inputs, memory, keys, mask)
        own = logits.argmax(-1)[:, :-1]  # the prediction for position t is the input of t + 1
        swap = torch.rand(own.shape, device=own.device) < self.own_inputs
        rest = inputs[:, 1:]
        swap &= rest != PAD
        return torch.cat([inputs[:, :1], torch.where(swap, own, rest)], 1)

    def _greedy(self, memory, keys, mask, limit: int) -> torch.Tensor:
        b = memory.shape[0]
        token = torch.full((b, 1), BOS, dtype=torch.long, device=memory.device)
        done = torch.zeros(b, dtype=torch.bool, device=memory.device)
        out, state = [], None
        for _ in range(limit):
            logits, state, _ = self._run(token, memory, keys, mask, state)
            token = logits[:, -1].argmax(-1, keepdim=True)
            token = token.masked_fill(done[:, None], PAD)
            out.append(token)
            done = done | (token[:, 0] == EOS)
            if done.all():
                break
        return torch.cat(out, dim=1)

    def _beam(self, memory, keys, mask, k: int, limit: int, alpha: float = 1.0) -> torch.Tensor:
        """Beam search with length-normalised scores (log p / length^alpha)."""
        b, dev = memory.shape[0], memory.device
        rep = lambda t: t.repeat_interleave(k, dim=0)  # noqa: E731
        memory, keys, mask = rep(memory), rep(keys), rep(mask)
        scores = torch.full((b, k), float("-inf"), device=dev)
        scores[:, 0] = 0.0
        lengths = torch.zeros(b, k, device=dev)
        done = torch.zeros(b, k, dtype=torch.bool, device=dev)
        history = torch.zeros(b, k, 0, dtype=torch.long, device=dev)
        token = torch.full((b * k, 1), BOS, dtype=torch.long, device=dev)
        state = None
        v = self.vocab_size
        for _ in range(limit):
            logits, state, _ = self._run(token, memory, keys, mask, state)
            logp = F.log_softmax(logits[:, -1].float(), dim=-1).view(b, k, v)
            # a finished beam continues with padding at no cost and no other option
            finished_row = torch.full((v,), float("-inf"), device=dev)
            finished_row[PAD] = 0.0
            logp = torch.where(done[:, :, None], finished_row, logp)
            total = (scores[:, :, None] + logp).view(b, k * v)
            scores, flat = total.topk(k, dim=-1)
            beam, tok = flat // v, flat % v
            done, lengths = done.gather(1, beam), lengths.gather(1, beam)
            history = torch.cat(
                [
                    history.gather(1, beam[:, :, None].expand(-1, -1, history.shape[2])),
                    tok[:, :, None],
                ],
                dim=2,
            )
            lengths = lengths + (~done).float()
            done = done | (tok == EOS)
            index = (beam + torch.arange(b, device=dev)[:, None] * k).view(-1)
            state = tuple(s[:, index] for s in state)
            token = tok.view(-1, 1)
            if done.all():
                break
        best = (scores / lengths.clamp_min(1) ** alpha).argmax(dim=1)
        return history[torch.arange(b, device=dev), best]
