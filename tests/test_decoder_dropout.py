"""``model.decoder_dropout``: text outputs drop source memory states and the decoder's features
before the vocabulary layer in training only. Training passes then differ, evaluation is the
same function as without it, and tasks without text outputs refuse it."""

from __future__ import annotations

import pytest
import torch
from test_speech_model import VOCAB, small_config, texts

from m3dgan.config import config_from_dict
from m3dgan.core.model import M3DGAN
from m3dgan.core.objectives import get_objective
from m3dgan.errors import ConfigError
from m3dgan.modalities import ModalitySpec

TEXT = ModalitySpec("text", VOCAB, 10)
IMAGE = ModalitySpec("image", 3, 32)


def model(p: float) -> M3DGAN:
    torch.manual_seed(0)
    return M3DGAN(TEXT, TEXT, get_objective("mle"), small_config(decoder_dropout=p))


def test_dropout_acts_in_training_only():
    dropped, plain = model(0.5), model(0.0)
    src, tgt = texts(3), texts(3, seed=1)
    dropped.train()
    torch.manual_seed(1)
    first = dropped.generate(src, None, tgt)
    second = dropped.generate(src, None, tgt)
    assert not torch.allclose(first, second)
    # dropout has no weights: the same net (BatchNorm's running statistics included)
    plain.load_state_dict(dropped.state_dict())
    dropped.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(dropped.generate(src, None, tgt), plain.generate(src, None, tgt))
        assert torch.equal(dropped.generate(src, None), plain.generate(src, None))  # greedy ids


def test_tasks_without_text_outputs_and_bad_rates_refuse_it():
    with pytest.raises(ConfigError, match="model.decoder_dropout applies to text outputs"):
        M3DGAN.from_config(
            config_from_dict({"task": "text2emoji", "model": {"decoder_dropout": 0.3}}),
            TEXT,
            IMAGE,
        )
    with pytest.raises(ConfigError, match="decoder_dropout"):
        config_from_dict({"model": {"decoder_dropout": 1.0}})
