"""``model.text_encoder=bag``: a text prenet's body is one position-wise layer, so its pooled
sentence vector is a bag of token embeddings (fastText's). Its states have the CBHG's width,
zeros at padding; the pooled vector ignores word order and the batch's padding; a text → image
step trains it; the state dict has no CBHG."""

from __future__ import annotations

import torch
from test_speech_model import VOCAB, small_config, texts

from m3dgan.config import config_from_dict
from m3dgan.core.model import M3DGAN
from m3dgan.modalities import ModalitySpec
from m3dgan.modalities.text.nets import TextPrenet, TokenBag

TEXT = ModalitySpec("text", VOCAB, 10)
IMAGE = ModalitySpec("image", 3, 32)


def test_bag_prenet_states_and_width():
    cfg = small_config(text_encoder="bag")
    prenet = TextPrenet(VOCAB, cfg).eval()
    assert isinstance(prenet.bag, TokenBag) and not hasattr(prenet, "cbhg")
    assert not any(k.startswith(("cbhg.", "brnn.")) for k in prenet.state_dict())
    feats = prenet(texts(3))
    assert feats.states.shape == (3, 8, 2 * cfg.text_gru)
    assert (feats.states[0, 6:] == 0).all()  # padding positions stay zero


def test_bag_sentence_vector_ignores_order_and_padding():
    prenet = TextPrenet(VOCAB, small_config(text_encoder="bag")).eval()
    ids = texts(1)[:, :6]  # row 0 has 6 real tokens
    shuffled = ids[:, torch.tensor([5, 2, 0, 4, 1, 3])]
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=ids.dtype)], 1)
    with torch.no_grad():
        base = prenet(ids).pooled()
        torch.testing.assert_close(prenet(shuffled).pooled(), base, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(prenet(padded).pooled(), base, atol=1e-6, rtol=1e-5)
        other = prenet(texts(2, seed=1)[:1]).pooled()
    assert not torch.allclose(other, base)  # different tokens, a different vector


def test_a_text_to_image_step_trains_the_bag():
    cfg = config_from_dict({"task": "text2emoji", "objective": "mle"})
    cfg.model.text_encoder = "bag"
    torch.manual_seed(0)
    model = M3DGAN.from_config(cfg, TEXT, IMAGE).train()
    w = model.source_prenet.bag.proj.weight
    before = w.detach().clone()
    opt = torch.optim.Adam(model.generator_parameters(), 1e-3)
    source = texts(4)
    target = torch.rand(4, 3, 32, 32) * 2 - 1
    loss = (model.generate(source, None) - target).abs().mean()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and not torch.equal(before, w)
