"""``model.attentional_hidden``: Luong's attentional layer h̃ = tanh(W_c [state; context])
before a text decoder's vocabulary layer. The logits are a function of h̃ alone, training
lowers the loss, greedy and beam decoding run, and tasks without text outputs refuse it."""

from __future__ import annotations

import pytest
import torch
from test_speech_model import VOCAB, small_config, texts

from m3dgan.config import config_from_dict
from m3dgan.core.model import M3DGAN
from m3dgan.core.objectives import get_objective
from m3dgan.errors import ConfigError
from m3dgan.modalities import ModalitySpec
from m3dgan.modalities.text.vocab import PAD

TEXT = ModalitySpec("text", VOCAB, 10)
IMAGE = ModalitySpec("image", 3, 32)


def model(hidden: int, objective: str = "mle") -> M3DGAN:
    torch.manual_seed(0)
    cfg = small_config(attentional_hidden=hidden)
    return M3DGAN(TEXT, TEXT, get_objective(objective), cfg)


def test_the_vocabulary_layer_reads_the_attentional_state() -> None:
    m = model(12)
    dec = m.generator
    assert dec.attentional.in_features == dec.out_dim and dec.attentional.bias is None
    assert dec.out.in_features == 12
    assert model(0).generator.attentional is None
    assert model(0).generator.out.in_features == dec.out_dim  # the paper's decoder
    seen = {}
    dec.out.register_forward_hook(lambda m, i, o: seen.update(x=i[0]))
    m.eval()
    with torch.no_grad():
        m.generate(texts(2), None, texts(2, seed=1))
    assert seen["x"].shape[-1] == 12 and seen["x"].abs().max() <= 1  # tanh(W_c [h; c])


@pytest.mark.parametrize("objective", ["mle", "full"])
def test_it_trains_and_decodes(objective: str) -> None:
    m = model(32, objective)
    z = torch.zeros(3, m.z_dim) if m.z_dim else None
    src, tgt = texts(3), texts(3, seed=1)
    opt = torch.optim.Adam(m.generator.parameters(), 1e-2)
    losses = []
    for _ in range(60):
        probs = m.generate(src, z, tgt)
        real = tgt != PAD
        nll = -(probs.gather(-1, tgt.long()[..., None])[..., 0].clamp_min(1e-9).log() * real)
        loss = nll.sum() / real.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]
    assert m.generator.attentional.weight.grad.abs().sum() > 0
    m.eval()
    with torch.no_grad():
        assert m.generate(src, z).dim() == 2  # greedy ids
        assert m.generate(src, z, beam_size=3).dim() == 2


def test_tasks_without_text_outputs_and_negative_sizes_refuse_it() -> None:
    with pytest.raises(ConfigError, match="model.attentional_hidden applies to text outputs"):
        M3DGAN.from_config(
            config_from_dict({"task": "text2emoji", "model": {"attentional_hidden": 256}}),
            TEXT,
            IMAGE,
        )
    with pytest.raises(ConfigError, match="attentional_hidden"):
        config_from_dict({"model": {"attentional_hidden": -1}})
