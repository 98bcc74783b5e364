"""M_out for text targets: the shared attention-RNN decoder (``modalities.sequence_decoder``)
predicting one token per step, with greedy decoding and beam search (paper §4).

With ``model.ctc_weight`` λ > 0 (speech sources) a CTC head reads the source memory as well
(hybrid CTC/attention, ``modalities.text.ctc``): teacher forcing then returns a
:class:`TextDecoderOutput`, and beam search is joint CTC/attention decoding."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from m3dgan.config import ModelConfig
from m3dgan.modalities.base import Modality, SequenceFeatures
from m3dgan.modalities.sequence_decoder import AttentionRNNDecoder
from m3dgan.modalities.text.ctc import CTCPrefixScorer
from m3dgan.modalities.text.nets import token_prenet
from m3dgan.modalities.text.vocab import BOS, EOS, PAD


@dataclass
class TextDecoderOutput:
    """The text decoder's teacher-forced output when it has a CTC head (``model.ctc_weight``).

    - ``probs``: distributions [B, L, V] (zero rows at padding): the sample;
    - ``ctc_log_probs``: the CTC head's log-softmax [B, M, V] over the M source memory
      positions (float32; blank = PAD);
    - ``ctc_mask``: bool [B, M], the real memory positions."""

    probs: torch.Tensor
    ctc_log_probs: torch.Tensor
    ctc_mask: torch.Tensor


class TextDecoder(AttentionRNNDecoder):
    """One token per step: embedding → prenet FC → shared core → logits over the vocabulary.

    ``cfg.decoder_dropout`` p > 0 drops, in training, source memory states (before z joins them)
    and the core's [state, context] features before the vocabulary layer (OpenNMT-py drops its
    attentional output before the generator); evaluation and decoding are unchanged.

    ``cfg.attentional_hidden`` H > 0 puts Luong's attentional layer before the vocabulary
    layer: h̃ = tanh(W_c [state; context]) (H units, no bias, as OpenNMT-py's ``linear_out`` for
    general attention), then dropout, then the logits from h̃.

    ``cfg.ctc_weight`` λ > 0 adds ``ctc``, a linear layer from each source memory state (before
    z is appended: CTC reads the source alone) to V classes, PAD being the blank. It needs a
    speech source (ValueError otherwise): CTC assumes the target's symbols follow the source
    positions in order, true of a transcript and its recording, not of a translation or an
    image grid."""

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
        hidden = cfg.attentional_hidden
        self.attentional = nn.Linear(self.out_dim, hidden, bias=False) if hidden else None
        self.out = nn.Linear(hidden or self.out_dim, vocab_size)
        self.own_inputs = cfg.decoder_own_inputs  # parallel scheduled sampling (training only)
        # model.decoder_dropout: on the memory and before the vocabulary layer (training only)
        self.dropout = nn.Dropout(cfg.decoder_dropout)
        self.ctc_weight = cfg.ctc_weight
        if self.ctc_weight > 0:
            if source.kind != "speech":
                raise ValueError(
                    f"model.ctc_weight needs a speech source (CTC aligns monotonically); this "
                    f"one is {source.kind}"
                )
            self.ctc = nn.Linear(self.mem_dim - z_dim, vocab_size)
        else:
            self.ctc = None

    def ctc_log_probs(self, features: SequenceFeatures) -> torch.Tensor:
        """The CTC head over the source memory states [B, M, D] → log-softmax [B, M, V]
        (float32)."""
        return F.log_softmax(self.ctc(features.states).float(), dim=-1)

    def _run(self, tokens, memory, keys, mask, state=None):
        h, state, weights = self._core(
            self.prenet(self.embedding(tokens)), memory, keys, mask, state
        )
        if self.attentional is not None:
            h = torch.tanh(self.attentional(h))
        return self.out(self.dropout(h)), state, weights

    def forward(
        self,
        source: SequenceFeatures | torch.Tensor,
        z: torch.Tensor | None,
        target: torch.Tensor | None = None,
        beam_size: int = 1,
        max_len: int | None = None,
    ) -> torch.Tensor | TextDecoderOutput:
        """Teacher forcing when ``target`` ids are given: distributions [B, L, V] (zero rows at
        padding), or with a CTC head a :class:`TextDecoderOutput` carrying them. Otherwise
        decoding: ids [B, T] (padding after the end mark). With a CTC head every search is
        joint CTC/attention decoding (:meth:`_beam`; ``beam_size`` 1 is its greedy form: one
        hypothesis extended by the token of the best joint score), as ESPnet decodes hybrid
        models; without one, greedy decoding or beam search over the attention decoder."""
        features = self.source_features(source)
        if self.training and self.dropout.p > 0:
            features = SequenceFeatures(self.dropout(features.states), features.mask)
        memory, mask = self.memory(source, z, features)
        keys = self.key(memory)
        if target is not None:
            target = target.long()
            bos = torch.full_like(target[:, :1], BOS)
            inputs = torch.cat([bos, target[:, :-1]], 1)
            if self.training and self.own_inputs > 0:
                inputs = self._own_inputs(inputs, memory, keys, mask)
            logits, _, _ = self._run(inputs, memory, keys, mask)
            probs = F.softmax(logits.float(), dim=-1) * (target != PAD).unsqueeze(-1)
            if self.ctc is None:
                return probs
            return TextDecoderOutput(probs, self.ctc_log_probs(features), features.mask)
        limit = max_len or self.max_len
        if beam_size > 1 or self.ctc is not None:
            ctc = None
            if self.ctc is not None:
                ctc = (self.ctc_log_probs(features), features.mask.sum(1))
            return self._beam(memory, keys, mask, beam_size, limit, ctc=ctc)
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

    def _beam(
        self,
        memory,
        keys,
        mask,
        k: int,
        limit: int,
        alpha: float = 1.0,
        ctc: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Beam search with length-normalised scores (score / length^alpha).

        ``ctc``: (the CTC head's log-probs [B, M, V], real positions [B]) for joint
        CTC/attention decoding (Watanabe et al. 2017 §4; ESPnet's ``ctc_weight``): a
        hypothesis h scores (1 − λ) · log p_att(h) + λ · log p_ctc(h, …), λ =
        ``model.ctc_weight``, where log p_ctc is the CTC *prefix* score computed during the
        search for every hypothesis and every next token (:class:`CTCPrefixScorer`; for the
        end mark the full CTC probability of h). None: the attention score alone."""
        b, dev = memory.shape[0], memory.device
        rep = lambda t: t.repeat_interleave(k, dim=0)  # noqa: E731
        memory, keys, mask = rep(memory), rep(keys), rep(mask)
        att = torch.full((b, k), float("-inf"), device=dev)  # cumulative log p_att
        att[:, 0] = 0.0
        scores = att.clone()
        lengths = torch.zeros(b, k, device=dev)
        done = torch.zeros(b, k, dtype=torch.bool, device=dev)
        history = torch.zeros(b, k, 0, dtype=torch.long, device=dev)
        token = torch.full((b * k, 1), BOS, dtype=torch.long, device=dev)
        state = None
        v = self.vocab_size
        lam = self.ctc_weight if ctc is not None else 0.0
        if ctc is not None:
            scorer = CTCPrefixScorer(rep(ctc[0]), rep(ctc[1]))
            r = scorer.initial_state()
            psi = torch.zeros(b, k, device=dev)  # log p_ctc of each hypothesis as a prefix
        # a finished beam continues with padding at no cost and no other option
        finished_row = torch.full((v,), float("-inf"), device=dev)
        finished_row[PAD] = 0.0
        for step in range(limit):
            logits, state, _ = self._run(token, memory, keys, mask, state)
            logp = F.log_softmax(logits[:, -1].float(), dim=-1).view(b, k, v)
            logp = torch.where(done[:, :, None], finished_row, logp)
            att_next = att[:, :, None] + logp
            total = att_next
            if ctc is not None:
                psi_next, r_next = scorer.score(r, token[:, 0], step)
                # a finished hypothesis keeps its CTC score (its only option is padding)
                psi_next = torch.where(done[:, :, None], psi[:, :, None], psi_next.view(b, k, v))
                total = (1 - lam) * att_next + lam * psi_next
            scores, flat = total.view(b, k * v).topk(k, dim=-1)
            beam, tok = flat // v, flat % v
            att = att_next.view(b, k * v).gather(1, flat)
            rows = (beam + torch.arange(b, device=dev)[:, None] * k).view(-1)
            if ctc is not None:
                psi = psi_next.reshape(b, k * v).gather(1, flat)
                r = r_next[:, :, rows, tok.view(-1)]
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
            state = tuple(s[:, rows] for s in state)
            token = tok.view(-1, 1)
            if done.all():
                break
        best = (scores / lengths.clamp_min(1) ** alpha).argmax(dim=1)
        return history[torch.arange(b, device=dev), best]
