"""A speech *source* (asr): ``model.source_stride`` (a strided first prenet conv) and
``model.speech_memory_layers`` (stacked bidirectional GRUs in the attention memory)."""

from __future__ import annotations

import pytest
import torch
from test_speech_model import N_MELS, VOCAB, mels, small_config, texts, train_step

from m3dgan.config import config_from_dict
from m3dgan.core.model import M3DGAN
from m3dgan.core.objectives import get_objective
from m3dgan.errors import ConfigError
from m3dgan.modalities import ModalitySpec, modality_for
from m3dgan.modalities.speech.nets import SpeechMemory

SPEECH, TEXT = ModalitySpec("speech", N_MELS, 60), ModalitySpec("text", VOCAB, 10)
LENGTHS = [57, 33, 8, 1]


def _memory(time_stride: int, source_stride: int, layers: int = 1):
    cfg = small_config(
        speech_memory_stride=time_stride, source_stride=source_stride, speech_memory_layers=layers
    )
    speech = modality_for(SPEECH)
    torch.manual_seed(0)
    return speech.build_prenet(cfg), speech.build_memory(cfg)


@pytest.mark.parametrize("time_stride", [2, 4])
@pytest.mark.parametrize("source_stride", [1, 2])
def test_memory_positions_follow_the_total_time_stride(time_stride, source_stride):
    """Whatever stride the prenet takes, the memory has ceil(T / time_stride) positions per
    utterance: the memory's convs make up the rest."""
    prenet, memory = _memory(time_stride, source_stride)
    with torch.no_grad():
        features = prenet(mels(LENGTHS))
        out = memory(features)
    expected = [-(-n // time_stride) for n in LENGTHS]
    assert out.mask.sum(1).tolist() == expected
    assert out.states.shape[1] == -(-max(LENGTHS) // time_stride)
    assert features.grid.shape[2] == -(-N_MELS // source_stride)  # frequency rows


def test_strided_prenet_does_a_quarter_of_the_work():
    full, _ = _memory(2, 1)
    half, _ = _memory(2, 2)
    with torch.no_grad():
        a, b = full(mels(LENGTHS)), half(mels(LENGTHS))
    f, t = a.grid.shape[2:]
    assert b.grid.shape[2:] == (-(-f // 2), -(-t // 2))  # a quarter of the positions
    assert b.lengths.tolist() == [-(-n // 2) for n in LENGTHS]


@pytest.mark.parametrize("layers", [1, 3])
def test_an_utterance_s_memory_does_not_depend_on_its_batch(layers):
    """Masked convs and packed GRUs: the states of an utterance alone and beside longer ones
    agree on its real positions, with stacked layers too."""
    prenet, memory = _memory(2, 2, layers)
    assert memory.gru.num_layers == layers
    batch = mels(LENGTHS)
    with torch.no_grad():
        together = memory(prenet(batch))
        alone = memory(prenet(batch[1:2, : LENGTHS[1]]))
    n = alone.mask.sum().item()
    assert torch.allclose(together.states[1, :n], alone.states[0, :n], atol=1e-5)


def test_deeper_memory_has_more_weights_and_trains():
    cfg = small_config(source_stride=2, speech_memory_layers=2)
    torch.manual_seed(0)
    model = M3DGAN(SPEECH, TEXT, get_objective("mle"), cfg)
    shallow = M3DGAN(SPEECH, TEXT, get_objective("mle"), small_config())
    assert sum(p.numel() for p in model.parameters()) > sum(p.numel() for p in shallow.parameters())
    step = train_step(model)
    speech, ids = mels([40, 34, 28, 40]), texts(4)
    first = step(speech, ids)["rec"]
    for _ in range(10):
        last = step(speech, ids)["rec"]
    assert last < first
    model.eval()
    out = model.translate(speech[:2])
    assert out.shape[0] == 2


@pytest.mark.parametrize(("key", "value"), [("source_stride", 2), ("speech_memory_layers", 2)])
def test_text_sources_refuse_the_switches(key, value):
    cfg = config_from_dict({"task": "en2fr", "model": {key: value}})
    spec = ModalitySpec("text", VOCAB, 10)
    with pytest.raises(ConfigError, match=f"model.{key} applies to speech sources"):
        M3DGAN.from_config(cfg, spec, spec)


def test_config_ranges_and_old_configs():
    old = config_from_dict({"task": "asr"})  # written before the keys existed
    assert old.model.source_stride == 1 and old.model.speech_memory_layers == 1
    for bad in ({"source_stride": 3}, {"speech_memory_layers": 0}):
        with pytest.raises(ConfigError):
            config_from_dict({"task": "asr", "model": bad})
    with pytest.raises(ValueError, match="prenet stride"):
        SpeechMemory(8, N_MELS, 16, 2, prenet_stride=4)
