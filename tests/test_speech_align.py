"""The learned text–speech alignment (``m3dgan.modalities.speech.align``)."""

from __future__ import annotations

import itertools

import torch

from m3dgan.modalities.speech.align import (
    Aligner,
    beta_binomial_log_prior,
    forward_sum_loss,
    monotonic_alignment,
)


def _paths(t: int, n: int):
    """Every monotonic path over t frames from position 0 to n − 1, moving 0 or 1 per frame."""
    for moves in itertools.product((0, 1), repeat=t - 1):
        path = [0]
        for m in moves:
            path.append(path[-1] + m)
        if path[-1] == n - 1:
            yield path


def test_monotonic_alignment_finds_the_best_path_by_brute_force() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        t, n = 7, 3
        log_p = torch.randn(1, t, n, generator=gen)
        path = monotonic_alignment(log_p, torch.tensor([t]), torch.tensor([n]))[0].tolist()
        best = max(_paths(t, n), key=lambda p: sum(log_p[0, i, k] for i, k in enumerate(p)))
        assert path == best


def test_monotonic_alignment_respects_each_rows_lengths() -> None:
    gen = torch.Generator().manual_seed(1)
    log_p = torch.randn(2, 9, 4, generator=gen)
    frames, positions = torch.tensor([9, 6]), torch.tensor([4, 3])
    path = monotonic_alignment(log_p, frames, positions)
    for row in range(2):
        real = path[row, : frames[row]].tolist()
        assert real[0] == 0 and real[-1] == positions[row] - 1
        assert all(b - a in (0, 1) for a, b in zip(real, real[1:], strict=False))
        assert set(real) == set(range(int(positions[row])))  # every position gets a frame
        assert (path[row, frames[row] :] == positions[row] - 1).all()
    # the second row's answer does not depend on the first row's padding
    alone = monotonic_alignment(log_p[1:, :6, :3], frames[1:], positions[1:])
    assert torch.equal(alone[0], path[1, :6])


def test_beta_binomial_prior_is_a_distribution_along_the_diagonal() -> None:
    log_prior = beta_binomial_log_prior(torch.tensor([40, 20]), torch.tensor([8, 5]), 40, 8)
    p = log_prior.exp()
    assert torch.allclose(p[0].sum(-1), torch.ones(40), atol=1e-4)
    assert torch.allclose(p[1, :20].sum(-1), torch.ones(20), atol=1e-4)
    assert (p[1, :, 5:] == 0).all()  # no mass beyond the row's positions
    peaks = p[0].argmax(-1)
    assert peaks[0] == 0 and peaks[-1] == 7 and (peaks.diff() >= 0).all()


def test_forward_sum_loss_prefers_a_monotonic_alignment() -> None:
    t, n = 12, 4
    diagonal = torch.full((1, t, n), -8.0)
    for i in range(t):
        diagonal[0, i, i * n // t] = 0.0
    reverse = diagonal.flip(-1)
    lengths = (torch.tensor([t]), torch.tensor([n]))
    good = forward_sum_loss(diagonal.log_softmax(-1), *lengths)
    bad = forward_sum_loss(reverse.log_softmax(-1), *lengths)
    assert good.shape == (1,) and good < bad / 4


def test_the_aligner_learns_a_synthetic_alignment() -> None:
    """Mels made by repeating per-position vectors: the aligner finds which frame says which."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    n, n_mels = 5, 8
    sounds = torch.randn(n, n_mels, generator=gen)
    durations = torch.tensor([[2, 4, 3, 2, 3], [3, 3, 3, 3, 2]])
    mels = torch.stack([sounds.repeat_interleave(d, 0) for d in durations])  # [2, 14, n_mels]
    truth = torch.stack([torch.arange(n).repeat_interleave(d) for d in durations])
    # the text states say which sound each position is (as the decoder's memory would)
    memory = torch.eye(n).expand(2, n, n) + 0.1 * torch.randn(2, n, n, generator=gen)
    mask = torch.ones(2, n, dtype=torch.bool)
    frames, positions = torch.tensor([14, 14]), torch.tensor([n, n])
    aligner = Aligner(memory.shape[-1], n_mels, dim=16)
    opt = torch.optim.Adam(aligner.parameters(), 2e-2)
    first = None
    for _ in range(100):
        loss = forward_sum_loss(aligner(memory, mask, mels, frames), frames, positions).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in aligner.parameters())
        opt.step()
    assert loss.item() < first
    path = monotonic_alignment(aligner(memory, mask, mels, frames), frames, positions)
    # the mel convs see neighbouring frames, so a boundary may move by one frame
    assert (path - truth).abs().max() <= 1 and (path == truth).float().mean() >= 0.8


def test_the_aligner_scores_positions_by_squared_distance() -> None:
    """log_p is the log-softmax of −temperature · ‖q − k‖² plus the prior (the module's step 1),
    values and gradients, though the aligner never builds the [B, dim, T, N] differences."""
    from torch.nn import functional as F

    from m3dgan.modalities.speech.align import TEMPERATURE

    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    aligner = Aligner(12, 8, dim=16)
    memory = torch.randn(2, 5, 12, generator=gen) * 20  # large states: distances in the thousands
    mels = torch.randn(2, 9, 8, generator=gen) * 20
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    frames = torch.tensor([9, 6])
    got = aligner(memory, mask, mels, frames)
    q = aligner.queries(mels.transpose(1, 2))
    k = aligner.keys(memory.transpose(1, 2))
    distance = (q[:, :, :, None] - k[:, :, None, :]).pow(2).sum(1)
    logits = (-TEMPERATURE * distance).masked_fill(~mask[:, None, :], float("-inf"))
    prior = beta_binomial_log_prior(frames, mask.sum(1), 9, 5)
    want = F.log_softmax(F.log_softmax(logits, -1) + prior, -1)
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    real = torch.isfinite(want)
    assert torch.allclose(got[real], want[real], atol=1e-4)
    weights = torch.rand(int(real.sum()), generator=gen)
    grads = [
        torch.autograd.grad((x[real] * weights).sum(), aligner.keys[0].weight, retain_graph=True)[0]
        for x in (got, want)
    ]
    assert torch.allclose(grads[0], grads[1], atol=1e-3, rtol=1e-3)


# --- in the speech decoder (model.attention_guide = "learned") -----------------------------------


def test_learned_guide_trains_the_aligner_through_the_reconstruction_loss() -> None:
    from test_speech_model import mels, texts, tts

    learned, diagonal = tts("mle", attention_guide="learned"), tts("mle")
    source, target = texts(3), mels([15, 20, 11])
    out = learned.generate(source, None, target)
    assert out.align_loss.shape == (3,) and torch.isfinite(out.align_loss).all()
    assert diagonal.generate(source, None, target).align_loss is None
    loss = learned.target_modality.reconstruction_loss(out, target)
    without = learned.target_modality.reconstruction_loss(
        type(out)(out.frames, out.stop_logits, out.guide, out.alignment), target
    )
    assert torch.isclose(loss - without, out.align_loss.mean())
    loss.backward()
    aligner = learned.generator.aligner
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in aligner.parameters())


def test_learned_guide_penalises_attention_away_from_the_path() -> None:
    from test_speech_model import tts

    dec = tts("mle", attention_guide="learned").generator
    g, m = 6, 4
    path = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3]])  # 18 frames
    centre = path[0, torch.arange(g) * dec.r + dec.r // 2]
    on = torch.nn.functional.one_hot(centre, m).float()[None]
    off = torch.nn.functional.one_hot(3 - centre, m).float()[None]
    assert dec._off_path(on, path).max() < 1e-6
    assert dec._off_path(off, path).mean() > 0.5


def test_a_training_step_with_the_learned_guide_stacked_or_not() -> None:
    from test_speech_model import mels, texts, train_step, tts

    for stack in (False, True):
        model = tts("full", attention_guide="learned", frame_dropout=0.0)
        logs = train_step(model, stack)(texts(4), mels([15, 20, 11, 20]))
        assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())


def test_learned_guide_applies_to_speech_outputs_only() -> None:
    import pytest

    from m3dgan.config import Config
    from m3dgan.core.model import M3DGAN
    from m3dgan.errors import ConfigError
    from m3dgan.modalities import ModalitySpec

    cfg = Config()
    cfg.model.attention_guide = "learned"
    image = ModalitySpec("image", 3, 16)
    with pytest.raises(ConfigError, match="guides speech outputs' attention, not image"):
        M3DGAN.from_config(cfg, image, image)
    bad = cfg.to_dict()
    bad["model"]["attention_guide"] = "nope"
    from m3dgan.config import config_from_dict

    with pytest.raises(ConfigError, match="attention_guide"):
        config_from_dict(bad)
