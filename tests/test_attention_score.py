"""``model.attention_score=general``: the shared attention-RNN decoder scores memory positions by
a scaled dot product of projected query and key (Luong et al. 2015) instead of the additive
v·tanh(W q + U m). The weights are that softmax, teacher forcing and step-by-step decoding still
compute one function, a step trains both projections, and outputs whose attention is not the
shared core refuse it."""

from __future__ import annotations

import pytest
import torch
from test_speech_model import N_MELS, VOCAB, small_config, texts, train_step
from torch.nn import functional as F

from m3dgan.config import config_from_dict
from m3dgan.core.model import M3DGAN
from m3dgan.core.objectives import get_objective
from m3dgan.errors import ConfigError
from m3dgan.modalities import ModalitySpec
from m3dgan.modalities.text.vocab import BOS

TEXT = ModalitySpec("text", VOCAB, 10)
IMAGE = ModalitySpec("image", 3, 32)
SPEECH = ModalitySpec("speech", N_MELS, 40)


def general_model(objective: str = "mle") -> M3DGAN:
    torch.manual_seed(0)
    cfg = small_config(attention_score="general")
    return M3DGAN(TEXT, TEXT, get_objective(objective), cfg).eval()


def test_general_weights_are_the_softmax_of_scaled_dot_products():
    model = general_model()
    dec = model.generator
    assert dec.score is None  # no v: nothing of the additive score is built
    feats = model.source_prenet(texts(3))
    memory, mask = dec.memory(feats, None)
    keys = dec.key(memory)
    x = torch.randn(3, 5, dec.attention_rnn[0].input_size)
    _, _, weights = dec._core(x, memory, keys, mask)
    h1, _ = dec.attention_rnn[0](x)
    h2, _ = dec.attention_rnn[1](h1)
    q = dec.query(h1 + h2)
    expected = torch.einsum("bta,bma->btm", q, keys) / keys.shape[-1] ** 0.5
    expected = F.softmax(expected.masked_fill(~mask[:, None], float("-inf")), dim=-1)
    torch.testing.assert_close(weights, expected)
    assert (weights[0][:, ~mask[0]] == 0).all()  # padding gets no weight


def test_teacher_forcing_and_step_by_step_decoding_agree_under_general():
    model = general_model()
    dec, target = model.generator, texts(2, seed=3)
    with torch.no_grad():
        probs = model.generate(texts(2), None, target)
        feats = model.source_prenet(texts(2))
        memory, mask = dec.memory(feats, None)
        keys, state = dec.key(memory), None
        token = torch.full((2, 1), BOS)
        for t in range(target.shape[1]):
            logits, state, _ = dec._run(token, memory, keys, mask, state)
            step = F.softmax(logits[:, -1], dim=-1)
            real = target[:, t] != 0
            torch.testing.assert_close(step[real], probs[real, t], atol=1e-5, rtol=1e-4)
            token = target[:, t : t + 1]


def test_a_full_step_trains_both_projections():
    model = general_model("full").train()
    query, key = model.generator.query.weight, model.generator.key.weight
    before = query.detach().clone(), key.detach().clone()
    logs = train_step(model)(texts(3), texts(3, seed=1))
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert not torch.equal(before[0], query) and not torch.equal(before[1], key)


def test_outputs_without_the_shared_core_refuse_general():
    def cfg(task: str, **model) -> object:
        return config_from_dict({"task": task, "model": {"attention_score": "general", **model}})

    with pytest.raises(ConfigError, match="model.attention_score='general' applies"):
        M3DGAN.from_config(cfg("text2emoji"), TEXT, IMAGE)
    with pytest.raises(ConfigError, match="speech_attention='location'"):
        M3DGAN.from_config(cfg("tts"), TEXT, SPEECH)
    with pytest.raises(ConfigError, match="speech_decoder='duration'"):
        M3DGAN.from_config(
            cfg("tts", speech_decoder="duration", speech_attention="content"), TEXT, SPEECH
        )
    model = M3DGAN.from_config(cfg("tts", speech_attention="content"), TEXT, SPEECH)
    assert model.generator.score is None
    with pytest.raises(ConfigError, match="attention_score"):
        config_from_dict({"model": {"attention_score": "dot"}})
