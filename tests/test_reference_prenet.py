"""The cheaper reference prenets (M_in in front of Enc_r, which a ``full`` step runs twice).

``model.reference_stride``: the first conv strides 2 on image and speech targets (a quarter of
Enc_r's positions), the source prenet keeps full resolution, a padded utterance still encodes as
on its own, a step trains, and text targets refuse it. ``model.reference_cbhg_bank``: a text
target's reference prenet has its own conv bank width, the source prenet keeps the paper's, a
padded sentence still encodes as on its own, a step trains, other targets refuse it."""

from __future__ import annotations

import pytest
import torch
from test_speech_model import N_MELS, VOCAB, mels, small_config, texts

from m3dgan.config import Config, config_from_dict
from m3dgan.core.model import M3DGAN
from m3dgan.core.objectives import get_objective
from m3dgan.core.state import RunState
from m3dgan.core.step import TrainStep
from m3dgan.errors import ConfigError
from m3dgan.modalities import ModalitySpec

TEXT, SPEECH = ModalitySpec("text", VOCAB, 10), ModalitySpec("speech", N_MELS, 40)
IMAGE = ModalitySpec("image", 3, 32)


def _model(source: ModalitySpec, target: ModalitySpec, stride: int) -> M3DGAN:
    torch.manual_seed(0)
    cfg = small_config(reference_stride=stride, gen_channels=8, gen_max_channels=16)
    return M3DGAN(source, target, get_objective("full"), cfg)


def _train_step(model: M3DGAN) -> TrainStep:
    opt_g = torch.optim.Adam(model.generator_parameters(), 1e-3)
    opt_d = torch.optim.Adam(model.discriminator_parameters(), 1e-3)
    return TrainStep(RunState(model, opt_g, opt_d, torch.Generator().manual_seed(0)), Config().loss)


def _first_conv(prenet: torch.nn.Module) -> torch.nn.Conv2d:
    return next(m for m in prenet.modules() if isinstance(m, torch.nn.Conv2d))


@pytest.mark.parametrize("stride", [1, 2])
def test_speech_reference_grid_is_strided_and_the_source_prenet_is_not(stride):
    model = _model(SPEECH, SPEECH, stride)
    x = mels([40, 23])
    ref = model.reference_prenet(x)
    src = model.source_prenet(x)
    assert _first_conv(model.reference_prenet).stride == (stride, stride)
    assert _first_conv(model.source_prenet).stride == (1, 1)
    # [B, C, n_mels, T] → halved (rounded up) on both axes, the lengths with them
    assert tuple(ref.grid.shape[2:]) == (-(-N_MELS // stride), -(-40 // stride))
    assert ref.lengths.tolist() == [-(-40 // stride), -(-23 // stride)]
    assert tuple(src.grid.shape[2:]) == (N_MELS, 40)
    post = model.encode(x)
    assert post.mu.shape == (2, model.cfg.nz) and torch.isfinite(post.mu).all()


def test_strided_reference_ignores_padding():
    """An utterance padded into a longer batch encodes as it does alone: the strided first conv
    keeps the frame masking of every later layer exact."""
    model = _model(TEXT, SPEECH, 2).eval()
    batch = mels([17, 40])
    with torch.no_grad():
        alone = model.encode(batch[:1, :17]).mu
        padded = model.encode(batch).mu[:1]
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("source", "target"), [(TEXT, SPEECH), (IMAGE, IMAGE)])
def test_a_step_with_a_strided_reference_trains_enc_r(source, target):
    model = _model(source, target, 2)
    step = _train_step(model)
    if target.kind == "speech":
        s, t = texts(3), mels([30, 21, 12])
    else:
        s, t = torch.rand(3, 3, 32, 32) * 2 - 1, torch.rand(3, 3, 32, 32) * 2 - 1
    before = _first_conv(model.reference_prenet).weight.detach().clone()
    logs = step(s, t)
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert not torch.equal(before, _first_conv(model.reference_prenet).weight)


def test_image_reference_encoder_matches_the_strided_grid():
    assert _model(IMAGE, IMAGE, 1).attention.encoder.freq_out == 2  # 32, 4 halvings
    model = _model(IMAGE, IMAGE, 2)
    assert model.attention.encoder.freq_out == 1  # 16 after the prenet, 4 halvings
    assert model.encode(torch.zeros(2, 3, 32, 32)).mu.shape == (2, model.cfg.nz)


def test_text_targets_and_bad_values_are_refused():
    with pytest.raises(ConfigError, match="model.reference_stride applies to image and speech"):
        M3DGAN.from_config(
            config_from_dict({"task": "en2fr", "model": {"reference_stride": 2}}), TEXT, TEXT
        )
    with pytest.raises(ConfigError, match="reference_stride"):
        config_from_dict({"task": "tts", "model": {"reference_stride": 3}})
    assert config_from_dict({"task": "tts"}).model.reference_stride == 1  # the paper's


# -- model.reference_cbhg_bank (text targets) -------------------------------------------------------
def _text_model(bank: int) -> M3DGAN:
    torch.manual_seed(0)
    return M3DGAN(TEXT, TEXT, get_objective("full"), small_config(reference_cbhg_bank=bank))


def test_text_reference_prenet_has_its_own_bank_and_the_source_keeps_the_papers():
    model = _text_model(2)
    assert model.cfg.cbhg_bank == 3
    assert len(model.reference_prenet.cbhg.bank) == 2
    assert len(model.source_prenet.cbhg.bank) == 3
    assert len(_text_model(0).reference_prenet.cbhg.bank) == 3  # 0: the paper's one shape
    model.eval()
    ids = texts(2)
    with torch.no_grad():
        alone = model.encode(ids[:1, :6]).mu  # row 0 is 6 tokens long, then padding
        padded = model.encode(ids).mu[:1]
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)


def test_a_step_with_a_narrow_text_bank_trains_the_reference_prenet():
    model = _text_model(1)
    step = _train_step(model)
    before = model.reference_prenet.cbhg.bank[0].conv.weight.detach().clone()
    logs = step(texts(3), texts(3, seed=1))
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert not torch.equal(before, model.reference_prenet.cbhg.bank[0].conv.weight)


def test_reference_cbhg_bank_refuses_other_targets_and_negative_values():
    with pytest.raises(ConfigError, match="model.reference_cbhg_bank applies to text targets"):
        M3DGAN.from_config(
            config_from_dict({"task": "tts", "model": {"reference_cbhg_bank": 4}}), TEXT, SPEECH
        )
    with pytest.raises(ConfigError, match="reference_cbhg_bank"):
        config_from_dict({"task": "en2fr", "model": {"reference_cbhg_bank": -1}})
    assert config_from_dict({"task": "en2fr"}).model.reference_cbhg_bank == 0
