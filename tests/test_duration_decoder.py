"""model.speech_decoder = "duration" (m3dgan.modalities.speech.duration_decoder): durations from
the aligner's monotonic path, the length regulator, decoding by predicted durations, its losses
in the reconstruction loss, a training step with both branches, and where the switch applies."""

from __future__ import annotations

import pytest
import torch
from test_speech_model import N_MELS, mels, texts, train_step, tts

from m3dgan.audio.config import PAD_VALUE
from m3dgan.modalities.speech.duration_decoder import DurationSpeechDecoder
from m3dgan.modalities.speech.frames import frame_lengths, stop_targets


def test_the_switch_builds_the_duration_decoder() -> None:
    assert isinstance(tts("full", speech_decoder="duration").generator, DurationSpeechDecoder)
    assert not isinstance(tts("full").generator, DurationSpeechDecoder)


def test_teacher_forced_output_has_the_targets_lengths_and_its_losses() -> None:
    model = tts("mle", speech_decoder="duration")
    source, target = texts(3), mels([15, 20, 11])
    out = model.generate(source, None, target)
    assert out.frames.shape == target.shape
    assert frame_lengths(out.frames, N_MELS).tolist() == [15, 20, 11]
    assert (out.frames[2, 11:] == PAD_VALUE).all()  # silence after the row's end
    assert out.stop_logits.shape == target.shape[:2] and (out.guide == 0).all()
    # the length is known: the stop logits say "stop" from each row's last frame on
    lengths = torch.tensor([15, 20, 11])
    assert torch.equal(out.stop_logits > 0, stop_targets(lengths, 20).bool())
    assert out.align_loss.shape == (3,) and torch.isfinite(out.align_loss).all()
    loss = model.target_modality.reconstruction_loss(out, target)
    without = model.target_modality.reconstruction_loss(
        type(out)(out.frames, out.stop_logits, out.guide, out.alignment), target
    )
    assert torch.isclose(loss - without, out.align_loss.mean())
    loss.backward()
    dec = model.generator
    for part in (dec.aligner, dec.durations, dec.frame_convs, dec.to_frames):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())


def test_the_length_regulator_repeats_each_position_for_its_frames() -> None:
    dec = tts("mle", speech_decoder="duration").generator.eval()
    memory = torch.randn(1, 3, dec.mem_dim)
    path = torch.tensor([[0, 0, 1, 1, 1, 2]])
    counts = torch.tensor([[2.0, 3.0, 1.0]])
    captured = {}
    dec.frame_in.register_forward_hook(lambda m, i, o: captured.update(x=i[0]))
    dec._frames(memory, path, counts, torch.tensor([6]))
    x = captured["x"][0]
    assert torch.equal(x[:, :-1], memory[0, path[0]])  # each frame carries its position's state
    inside = torch.tensor([0, 0.5, 0, 1 / 3, 2 / 3, 0])  # the frame's place inside its position
    assert torch.allclose(x[:, -1], inside)


@pytest.mark.parametrize(("layers", "dilation", "reach"), [(4, 1, 8), (2, 1, 4), (4, 2, 30)])
def test_the_frame_stack_sees_as_far_as_its_layers_and_dilation_reach(
    layers: int, dilation: int, reach: int
) -> None:
    """model.frame_layers / model.frame_dilation: a change at one position moves exactly the
    frames within the stack's reach (2 · Σ dilations, kernel 5), and none beyond it."""
    model = tts("mle", speech_decoder="duration", frame_layers=layers, frame_dilation=dilation)
    dec = model.generator.eval()
    assert [c.dilation[0] for c in dec.frame_convs] == [dilation**i for i in range(layers)]
    n, at = 80, 40
    memory = torch.randn(1, n, dec.mem_dim)
    path, counts, lengths = torch.arange(n)[None], torch.ones(1, n), torch.tensor([n])
    with torch.no_grad():
        before = dec._frames(memory, path, counts, lengths)[0]
        memory[0, at] += 1.0
        moved = (dec._frames(memory, path, counts, lengths)[0] - before).abs().amax(-1)[0] > 0
    assert moved.nonzero().squeeze(1).tolist() == list(range(at - reach, at + reach + 1))


def test_style_adaptive_norm_takes_gain_and_bias_from_z() -> None:
    """model.frame_style_norm: norm(x) · (1 + γ(z)) + β(z); γ = β = 0 at the start."""
    from m3dgan.modalities.speech.duration_decoder import StyleAdaptiveNorm

    norm = StyleAdaptiveNorm(6, 3)
    x, z = torch.randn(2, 5, 6), torch.randn(2, 3)
    plain = torch.nn.functional.layer_norm(x, (6,))
    assert torch.allclose(norm(x, z), plain)  # starts as a plain LayerNorm
    torch.nn.init.normal_(norm.affine.weight)
    gain, bias = norm.affine(z).chunk(2, dim=-1)
    assert torch.allclose(norm(x, z), plain * (1 + gain[:, None]) + bias[:, None], atol=1e-6)
    assert not torch.allclose(norm(x, z), norm(x, z.flip(0)))  # each row by its own code


def test_with_style_norm_the_code_reaches_every_frame_layer() -> None:
    model = tts("full", speech_decoder="duration", frame_style_norm=True)
    dec = model.generator
    out = model.generate(texts(3), torch.randn(3, model.z_dim), mels([15, 20, 11]))
    assert out.frames.shape == (3, 20, N_MELS)
    # γ and β start at zero, so only their layers' gradients say that z is read there
    model.target_modality.reconstruction_loss(out, mels([15, 20, 11])).backward()
    for norm in dec.frame_norms:
        assert norm.affine.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs a style code"):
        tts("mle", speech_decoder="duration", frame_style_norm=True)


def test_the_postnet_refines_the_frames_and_both_ends_are_trained() -> None:
    """model.speech_postnet: the sample is the refined mels; the loss is L1 before and after."""
    model = tts("mle", speech_decoder="duration", speech_postnet=16)
    dec, target = model.generator, mels([15, 20, 11])
    out = model.generate(texts(3), None, target)
    assert out.frames_before_postnet.shape == out.frames.shape == target.shape
    assert not torch.allclose(out.frames[:, :11], out.frames_before_postnet[:, :11])
    assert (out.frames[2, 11:] == PAD_VALUE).all()  # silence after the row's end, both ends
    assert (out.frames_before_postnet[2, 11:] == PAD_VALUE).all()
    speech = model.target_modality
    loss = speech.reconstruction_loss(out, target)
    after = speech.reconstruction_loss(out.frames, target)  # the sample's L1 alone
    before = speech.reconstruction_loss(out.frames_before_postnet, target)
    without = type(out)(out.frames, out.stop_logits, out.guide, out.alignment, out.align_loss)
    assert torch.isclose(loss - speech.reconstruction_loss(without, target), before)
    assert after > 0 and before > 0
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in dec.postnet.parameters())
    with torch.no_grad():  # decoding returns the refined mels, as training samples them
        model.eval()
        decoded = model.generate(texts(3), None)
    assert decoded.dim() == 3 and torch.isfinite(decoded).all()


def test_decoding_follows_the_predicted_durations() -> None:
    model = tts("mle", speech_decoder="duration").eval()
    dec, source = model.generator, texts(2)
    real = (source != 0).sum(1)  # texts(2): row 0 has 6 real characters, row 1 has 8
    with torch.no_grad():
        dec.durations.out.weight.zero_()
        dec.durations.out.bias.fill_(float(torch.log1p(torch.tensor(3.0))))  # 3 frames each
        out = model.generate(source, None)
    lengths = frame_lengths(out, N_MELS)
    assert (lengths <= 3 * real).all() and lengths[1] == 3 * real[1]
    assert out.shape[1] == int(3 * real.max())
    assert (out[0, int(3 * real[0]) :] == PAD_VALUE).all()  # silence after the shorter row
    short = model.generator(model.source_prenet(source), None, max_frames=10)
    assert short.shape[1] == 10  # the frame limit holds


@pytest.mark.parametrize("extra", [{}, {"speech_postnet": 16, "frame_dilation": 2}])
def test_a_row_does_not_depend_on_its_batchs_padding(extra: dict) -> None:
    model = tts("mle", speech_decoder="duration", **extra).eval()
    source, target = texts(2), mels([12, 20])
    with torch.no_grad():
        both = model.generate(source, None, target).frames[0, :12]
        alone = model.generate(source[:1], None, target[:1, :12]).frames[0]
    assert torch.allclose(both, alone, atol=1e-5)


@pytest.mark.parametrize("stack", [False, True])
def test_a_full_training_step(stack: bool) -> None:
    logs = train_step(tts("full", speech_decoder="duration"), stack)(
        texts(4), mels([15, 20, 11, 20])
    )
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    # the frame stack's switches train too: dilated, deeper, style-adaptive norms
    model = tts(
        "full",
        speech_decoder="duration",
        frame_layers=6,
        frame_dilation=2,
        frame_style_norm=True,
        speech_postnet=16,
    )
    logs = train_step(model, stack)(texts(4), mels([15, 20, 11, 20]))
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert any(n.affine.weight.abs().sum() > 0 for n in model.generator.frame_norms)


def test_the_switch_applies_to_speech_outputs_without_an_attention_guide() -> None:
    from m3dgan.config import Config, config_from_dict
    from m3dgan.core.model import M3DGAN
    from m3dgan.errors import ConfigError
    from m3dgan.modalities import ModalitySpec

    cfg = Config()
    cfg.model.speech_decoder = "duration"
    image = ModalitySpec("image", 3, 16)
    with pytest.raises(ConfigError, match="speech output's decoder; this task's output is image"):
        M3DGAN.from_config(cfg, image, image)
    cfg.model.attention_guide = "learned"
    text, speech = ModalitySpec("text", 30, 10), ModalitySpec("speech", N_MELS, 40)
    with pytest.raises(ConfigError, match="has no attention"):
        M3DGAN.from_config(cfg, text, speech)
    cfg = Config()
    cfg.model.frame_dilation = 2  # the frame stack is the duration decoder's
    with pytest.raises(ConfigError, match="model.frame_dilation shapes the frame stack"):
        M3DGAN.from_config(cfg, text, speech)
    cfg.model.speech_decoder = "duration"
    M3DGAN.from_config(cfg, text, speech)
    cfg.model.speech_postnet = 32
    M3DGAN.from_config(cfg, text, speech)
    cfg.model.frame_style_norm = True
    M3DGAN.from_config(cfg, text, speech)  # full has a code
    cfg.objective = "mle"
    with pytest.raises(ConfigError, match="'mle' has no code"):
        M3DGAN.from_config(cfg, text, speech)
    cfg.objective, cfg.model.speech_decoder, cfg.model.frame_dilation = "full", "attention", 1
    cfg.model.speech_postnet = 0
    with pytest.raises(ConfigError, match="model.frame_style_norm shapes the frame stack"):
        M3DGAN.from_config(cfg, text, speech)
    bad = Config().to_dict()
    bad["model"]["frame_dilation"] = 3
    with pytest.raises(ConfigError, match="frame_dilation"):
        config_from_dict(bad)
    bad["model"]["frame_dilation"], bad["model"]["frame_layers"] = 1, 0
    with pytest.raises(ConfigError, match="frame_layers"):
        config_from_dict(bad)
    bad = Config().to_dict()
    bad["model"]["speech_decoder"] = "nope"
    with pytest.raises(ConfigError, match="speech_decoder"):
        config_from_dict(bad)
