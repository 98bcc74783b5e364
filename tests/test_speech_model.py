"""Speech subnets: shapes, padding, stop prediction, token control, text↔speech in one model."""

from __future__ import annotations

import pytest
import torch

from m3dgan.audio import PAD_VALUE
from m3dgan.config import Config, ModelConfig
from m3dgan.core.model import M3DGAN
from m3dgan.core.objectives import get_objective
from m3dgan.core.state import RunState
from m3dgan.core.step import TrainStep
from m3dgan.modalities import ModalitySpec
from m3dgan.modalities.speech.frames import frame_lengths, stop_targets

N_MELS = 16
VOCAB = 12


def small_config(**extra) -> ModelConfig:
    cfg = dict(
        ref_channels=[8, 8, 16, 16],
        ref_gru=16,
        prenet_channels=[8, 8],
        disc_channels=16,
        disc_layers=2,
        text_embed=16,
        text_prenet=[16, 16],
        cbhg_bank=3,
        cbhg_channels=16,
        cbhg_highway=1,
        text_gru=16,
        decoder_attention_rnn=32,
        decoder_rnn=32,
        frame_prenet=[32, 16],
    )
    cfg.update(extra)
    return ModelConfig(**cfg)


def tts(objective: str = "full", **extra) -> M3DGAN:
    torch.manual_seed(0)
    return M3DGAN(
        ModalitySpec("text", VOCAB, 10),
        ModalitySpec("speech", N_MELS, 40),
        get_objective(objective),
        small_config(**extra),
    )


def mels(lengths: list[int], t: int | None = None, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    t = t or max(lengths)
    x = torch.full((len(lengths), t, N_MELS), PAD_VALUE)
    for i, n in enumerate(lengths):
        x[i, :n] = torch.rand(n, N_MELS, generator=gen) * 1.6 - 0.8
    return x


def texts(b: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (b, 8), generator=gen)
    ids[0, 6:] = 0
    return ids


def train_step(model: M3DGAN, stack_branches: bool = False, lr: float = 1e-3) -> TrainStep:
    """One training iteration on ``model`` (Adam for both sides, the default losses)."""
    opt_g = torch.optim.Adam(model.generator_parameters(), lr)
    opt_d = torch.optim.Adam(model.discriminator_parameters(), lr)
    state = RunState(model, opt_g, opt_d, torch.Generator().manual_seed(0))
    return TrainStep(state, Config().loss, stack_branches=stack_branches)


def test_frame_lengths_and_stop_targets():
    x = mels([5, 9, 1], t=12)
    x[1, 3] = PAD_VALUE  # silence inside an utterance does not end it
    assert frame_lengths(x, N_MELS).tolist() == [5, 9, 1]
    assert stop_targets(torch.tensor([2, 4]), 4).tolist() == [[0, 1, 1, 1], [0, 0, 0, 1]]


@pytest.mark.parametrize("objective", ["full", "cvae-gan", "mle", "gst"])
def test_tts_shapes_every_objective(objective):
    model = tts(objective)
    source, target = texts(3), mels([20, 33, 7])
    out = model.generate(
        source, model.embed(model.encode(target).mu) if model.attention else None, target
    )
    # named outputs: frames, a stop logit and an attention penalty per frame, the alignment
    fake = out.frames
    assert fake.shape == (3, 33, N_MELS)
    assert out.stop_logits.shape == out.guide.shape == (3, 33)
    assert out.alignment.shape[0] == 3 and out.alignment.shape[1] == 11  # ceil(33 / r=3)
    assert torch.allclose(out.alignment.sum(-1), torch.ones(3, 11))
    assert model.target_modality.output_sample(out) is fake
    # frames past each utterance's end are silence, so D sees padding like real padding
    assert torch.all(fake[2, 7:] == PAD_VALUE)
    assert frame_lengths(fake, N_MELS).tolist() == [20, 33, 7]
    model.eval()
    out = model.translate(source)
    assert out.ndim == 3 and out.shape[0] == 3 and out.shape[2] == N_MELS
    assert out.shape[1] <= 2 * 40 and out.min() >= -1 and out.max() <= 1
    scores = model.disc_enc(source, target)
    assert scores.shape == (3, 1)


def test_reference_encoder_ignores_padding():
    model = tts().eval()
    target = mels([25, 30])
    longer = torch.cat([target, torch.full((2, 17, N_MELS), PAD_VALUE)], dim=1)
    a, b = model.encode(target), model.encode(longer)
    torch.testing.assert_close(a.mu, b.mu, atol=1e-5, rtol=1e-5)
    # and it does read the content
    assert not torch.allclose(model.encode(mels([25, 30], seed=3)).mu, a.mu)


def test_teacher_forcing_matches_step_by_step_decoding():
    """Fed the true previous frames one step at a time, the decoder computes what teacher forcing
    computed in one pass (no input feeding), so training and inference are the same function."""
    model = tts("mle", frame_dropout=0.0).eval()
    dec = model.generator
    source, target = texts(2), mels([12, 9])
    forced = model.generate(source, None, target)
    memory, mask = dec.memory(model.source_prenet(source), None)
    keys = dec.key(memory)
    previous = torch.full((2, 1, N_MELS), PAD_VALUE)
    state, frames, stops = None, [], []
    for g in range(4):  # 12 frames, 3 per step
        f, s, state, _ = dec._step(previous, memory, keys, mask, state)
        frames.append(f)
        stops.append(s)
        previous = target[:, 3 * g + 2 : 3 * g + 3]
    stepped = torch.cat(frames, 1)
    torch.testing.assert_close(stepped[0], forced.frames[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.cat(stops, 1)[0], forced.stop_logits[0], atol=1e-5, rtol=1e-4)


def test_decoder_learns_when_to_stop():
    """Two sentences of different lengths: after a short training the decoded lengths follow."""
    model = tts("mle", frame_dropout=0.0)
    source = torch.tensor([[4, 5, 6, 0, 0, 0], [7, 8, 9, 10, 11, 9]])
    # learnable frames (smooth in time and frequency), so the decoder can follow its own output
    t, f = torch.arange(24.0)[:, None], torch.arange(float(N_MELS))[None]
    target = torch.full((2, 24, N_MELS), PAD_VALUE)
    target[0, :9] = 0.5 * torch.sin(t[:9] / 3 + f / 4)
    target[1] = 0.5 * torch.cos(t / 5 + f / 3)
    opt = torch.optim.Adam(model.generator_parameters(), 3e-3)
    mod = model.target_modality
    for _ in range(150):
        loss = mod.reconstruction_loss(model.generate(source, None, target), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    out = model.translate(source)
    decoded = frame_lengths(out, N_MELS).tolist()
    assert abs(decoded[0] - 9) <= 3 and abs(decoded[1] - 24) <= 3, decoded


def test_token_weights_and_style_scale_control_the_output():
    model = tts("full", frame_dropout=0.0).eval()
    source = texts(1)
    w1 = torch.zeros(1, 10)
    w1[0, 3] = 1.0
    w2 = torch.zeros(1, 10)
    w2[0, 7] = 1.0
    a1 = model.translate(source, token_weights=w1)
    assert torch.equal(a1, model.translate(source, token_weights=w1))
    assert not torch.equal(a1, model.translate(source, token_weights=w2))
    assert not torch.equal(a1, model.translate(source, token_weights=w1, style_scale=3.0))


def test_asr_direction_shapes_and_memory_padding():
    torch.manual_seed(0)
    model = M3DGAN(
        ModalitySpec("speech", N_MELS, 40),
        ModalitySpec("text", VOCAB, 10),
        get_objective("full"),
        small_config(),
    ).eval()
    speech, ids = mels([30, 18]), texts(2)
    dist = model.generate(speech, model.embed(model.encode(ids).mu), ids)
    assert dist.shape == (2, 8, VOCAB)
    feats = model.generator.speech_memory(model.source_prenet(speech))
    assert feats.mask.sum(1).tolist() == [8, 5]  # 30 and 18 frames, 4× shorter
    longer = torch.cat([speech, torch.full((2, 12, N_MELS), PAD_VALUE)], 1)
    again = model.generator.speech_memory(model.source_prenet(longer))
    torch.testing.assert_close(again.states[0, :8], feats.states[0, :8], atol=1e-5, rtol=1e-4)
    assert model.translate(speech).shape[0] == 2


@pytest.mark.parametrize("objective", ["full", "gst", "mle"])
def test_a_training_step_lowers_reconstruction(objective):
    step = train_step(tts(objective, frame_dropout=0.0), lr=2e-3)
    source, target = texts(4), mels([15, 20, 11, 20])
    first = step(source, target)
    for _ in range(30):
        last = step(source, target)
    assert last["rec"] < first["rec"]
    assert ("kl" in last) == (objective == "full")  # gst: deterministic embedding, no KL
    assert ("loss_D" in last) == (objective == "full")


def test_guided_attention_penalises_off_diagonal_attention():
    dec = tts("mle").generator
    g = m = 6
    mask = torch.ones(1, m, dtype=torch.bool)
    lengths = torch.tensor([g * dec.r])
    diagonal = torch.eye(g)[None]
    anti = torch.eye(g).flip(1)[None]
    on = dec._off_diagonal(diagonal, mask, lengths).mean()
    off = dec._off_diagonal(anti, mask, lengths).mean()
    assert on < 0.05 and off > 0.5
