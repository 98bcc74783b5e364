"""``train.stack_branches``: both branches through G as one batch give the two-pass step."""

from __future__ import annotations

import copy

import pytest
import torch
from test_losses import batch, make_step
from test_speech_model import mels, texts, tts
from test_text_model import ids, text_model

from m3dgan.config import LossConfig
from m3dgan.core.state import RunState
from m3dgan.core.step import TrainStep, halves, twice
from m3dgan.modalities.base import SequenceFeatures


def _no_dropout(model: torch.nn.Module) -> torch.nn.Module:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model.train()


def _steps(model) -> tuple[TrainStep, TrainStep]:
    """Two steps on two identical copies of ``model``: one pass per branch, and stacked."""
    out = []
    for stack in (False, True):
        m = copy.deepcopy(model)
        # SGD, not Adam: Adam turns float noise in a near-zero gradient (a bias before an
        # instance norm) into a full-size step, which would hide what is compared here
        opt_g = torch.optim.SGD(m.generator_parameters(), 1e-2)
        opt_d = torch.optim.SGD(m.discriminator_parameters(), 1e-2)
        state = RunState(m, opt_g, opt_d, torch.Generator().manual_seed(0))
        out.append(TrainStep(state, LossConfig(), stack_branches=stack))
    return out[0], out[1]


def _image_model():
    return make_step("full").model


CASES = {
    "image": (_image_model, lambda: batch(4)),
    "text": (lambda: text_model(), lambda: (ids(4), ids(4, seed=1))),
    "speech": (lambda: tts("full", frame_dropout=0.0), lambda: (texts(4), mels([15, 20, 11, 20]))),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_stacked_branches_give_the_losses_and_weights_of_two_passes(kind: str) -> None:
    build, data = CASES[kind]
    model = _no_dropout(build())
    source, target = data()
    apart, stacked = _steps(model)
    for _ in range(2):
        a, b = apart(source, target), stacked(source, target)
        assert a.keys() == b.keys() and {"loss_D", "lat", "dist"} <= a.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key
    for p, q in zip(apart.model.parameters(), stacked.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-5)


def test_twice_and_halves_handle_tensors_and_dataclasses() -> None:
    feats = SequenceFeatures(torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.bool))
    both = twice(feats)
    assert both.states.shape == (4, 3, 4) and torch.equal(both.states[2:], feats.states)
    first, second = halves(both, 2)
    assert torch.equal(first.states, second.states) and torch.equal(first.mask, feats.mask)
    assert twice(None) is None
    x = torch.arange(6.0).view(6, 1)
    assert [h.flatten().tolist() for h in halves(x, 2)] == [[0.0, 1.0], [2.0, 3.0, 4.0, 5.0]]
