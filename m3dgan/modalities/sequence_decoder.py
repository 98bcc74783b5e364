"""The sequential generator M_out shared by text and speech targets (paper §4).

    source representation ──► memory (sequence of states) ⊕ z replicated over time
    previous token ─ embedding ─ prenet FC ─ attention RNN (2-layer residual GRU 256) ─► query
    query × memory ─ additive attention ─► context
    [query, context] ─ decoder RNN (GRU 256) ─ [·, context] ─ linear ─► next-token logits

One token per step. Training uses teacher forcing; because the attention RNN reads only previous
tokens (no input feeding), a whole teacher-forced sequence runs as one GRU call per layer and one
batched attention, and step-by-step decoding (greedy or beam search) computes exactly the same
function. z reaches every step through the memory: every memory position carries a copy, so the
context vector always contains z.

``source_attention=False`` reproduces the paper's weak point: the memory is a single global
embedding of the source (mean of its states), so the output cannot follow the source's order —
kept as a switch so the benchmark can measure what attention buys.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from m3dgan.config import ModelConfig
from m3dgan.core.safe_conv import Conv2d
from m3dgan.modalities.base import ModalitySpec
from m3dgan.modalities.text import TextFeatures
from m3dgan.modalities.text_vocab import BOS, EOS, PAD


class ImageMemory(nn.Module):
    """An image's prenet features → a short sequence (≤ 8×8 positions) to attend over."""

    def __init__(self, channels: int, size: int, dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev, s = channels, size
        halvings = 0
        while s > 8:
            halvings += 1
            s //= 2
        # narrow at high resolution, ``dim`` wide at the ≤ 8×8 grid the decoder attends over
        for i in range(halvings):
            width = max(dim // 2 ** (halvings - 1 - i), 16)
            layers += [Conv2d(prev, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            prev = width
        layers += [Conv2d(prev, dim, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True)]
        self.net = nn.Sequential(*layers)
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> TextFeatures:
        h = self.net(x).flatten(2).transpose(1, 2)  # [B, H'W', dim]
        return TextFeatures(h, torch.ones(h.shape[:2], dtype=torch.bool, device=h.device))


class AttentionRNNDecoder(nn.Module):
    """The part of M_out that text and speech share: the source memory (⊕ z), the attention RNN
    (2-layer residual GRU), additive attention and the decoder RNN. Subclasses supply what goes in
    (embedded previous tokens, or previous mel frames through a prenet) and what comes out."""

    def __init__(
        self,
        source: ModalitySpec,
        source_channels: int,
        input_dim: int,
        z_dim: int,
        cfg: ModelConfig,
        input_feeding: bool = False,
    ) -> None:
        """``input_feeding``: the attention RNN also reads the previous step's context vector
        (Tacotron's design; steps then run one at a time, in training too)."""
        super().__init__()
        self.z_dim = z_dim
        self.source_attention = cfg.source_attention
        self.image_memory: ImageMemory | None = None
        self.speech_memory: nn.Module | None = None
        if source.kind == "image":
            self.image_memory = ImageMemory(source_channels, source.size, cfg.decoder_rnn)
            mem_dim = cfg.decoder_rnn
        elif source.kind == "speech":
            from m3dgan.modalities.speech import SpeechMemory

            self.speech_memory = SpeechMemory(source_channels, source.channels, cfg.decoder_rnn)
            mem_dim = cfg.decoder_rnn
        else:
            mem_dim = source_channels
        self.mem_dim = mem_dim + z_dim
        a = cfg.decoder_attention_rnn
        if input_feeding:
            input_dim += self.mem_dim
        self.attention_rnn = nn.ModuleList(
            [nn.GRU(input_dim, a, batch_first=True), nn.GRU(a, a, batch_first=True)]
        )
        self.query = nn.Linear(a, a, bias=False)
        self.key = nn.Linear(self.mem_dim, a)
        self.score = nn.Linear(a, 1, bias=False)
        self.decoder_rnn = nn.GRU(a + self.mem_dim, cfg.decoder_rnn, batch_first=True)
        self.out_dim = cfg.decoder_rnn + self.mem_dim  # what ``_core`` returns per step

    # -- memory -------------------------------------------------------------------------------
    def memory(self, source, z: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.image_memory is not None:
            feats = self.image_memory(source)
        elif self.speech_memory is not None:
            feats = self.speech_memory(source)
        else:
            feats = source
        states, mask = feats.states, feats.mask
        if not self.source_attention:
            states = feats.pooled().unsqueeze(1)
            mask = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)
        if self.z_dim:
            if z is None:
                raise ValueError("this generator was built with z; pass a domain embedding")
            states = torch.cat([states, z[:, None, :].expand(-1, states.shape[1], -1)], dim=-1)
        return states, mask

    # -- one pass over a block of steps (all teacher-forced steps, or a single decoding step) --
    def _core(self, x, memory, keys, mask, state=None):
        """x [B, T, input_dim] → ([decoder state, context] [B, T, out_dim], state, weights)."""
        s1, s2, s3 = state if state is not None else (None, None, None)
        h1, s1 = self.attention_rnn[0](x, s1)
        h2, s2 = self.attention_rnn[1](h1, s2)
        query = h2 + h1  # residual second layer
        energy = self.score(torch.tanh(self.query(query)[:, :, None] + keys[:, None])).squeeze(-1)
        energy = energy.masked_fill(~mask[:, None, :], float("-inf"))
        weights = F.softmax(energy, dim=-1)  # [B, T, M]
        context = weights @ memory  # [B, T, mem_dim]
        h3, s3 = self.decoder_rnn(torch.cat([query, context], dim=-1), s3)
        return torch.cat([h3, context], dim=-1), (s1, s2, s3), weights


class TextDecoder(AttentionRNNDecoder):
    """One token per step: embedding → prenet FC → shared core → logits over the vocabulary."""

    def __init__(
        self,
        source: ModalitySpec,
        source_channels: int,
        vocab_size: int,
        max_len: int,
        z_dim: int,
        cfg: ModelConfig,
    ) -> None:
        width_in = cfg.text_prenet[-1] if cfg.text_prenet else cfg.text_embed
        super().__init__(source, source_channels, width_in, z_dim, cfg)
        self.vocab_size, self.max_len = vocab_size, max_len
        self.embedding = nn.Embedding(vocab_size, cfg.text_embed, padding_idx=PAD)
        layers: list[nn.Module] = []
        prev = cfg.text_embed
        for width in cfg.text_prenet:
            layers += [nn.Linear(prev, width), nn.ReLU(), nn.Dropout(0.2)]
            prev = width
        self.prenet = nn.Sequential(*layers)
        self.out = nn.Linear(self.out_dim, vocab_size)

    def _run(self, tokens, memory, keys, mask, state=None):
        h, state, weights = self._core(
            self.prenet(self.embedding(tokens)), memory, keys, mask, state
        )
        return self.out(h), state, weights

    def forward(
        self,
        source: TextFeatures | torch.Tensor,
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
            logits, _, _ = self._run(torch.cat([bos, target[:, :-1]], 1), memory, keys, mask)
            probs = F.softmax(logits.float(), dim=-1)
            return probs * (target != PAD).unsqueeze(-1)
        limit = max_len or self.max_len
        if beam_size > 1:
            return self._beam(memory, keys, mask, beam_size, limit)
        return self._greedy(memory, keys, mask, limit)

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
