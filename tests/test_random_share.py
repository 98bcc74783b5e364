"""``train.random_share``: the random branch on the batch's first rows only (a cheaper step)."""

from __future__ import annotations

import copy

import pytest
import torch
from test_speech_model import mels, texts, tts
from test_stack_branches import CASES, _no_dropout

from m3dgan.config import LossConfig, config_from_dict
from m3dgan.core.model import M3DGAN
from m3dgan.core.state import RunState
from m3dgan.core.step import TrainStep, first_rows, random_rows, stack_rows
from m3dgan.errors import ConfigError
from m3dgan.modalities import ModalitySpec
from m3dgan.modalities.base import SequenceFeatures


def _step(model, share: float, stack: bool = False) -> TrainStep:
    m = copy.deepcopy(model)
    opt_g = torch.optim.SGD(m.generator_parameters(), 1e-2)
    opt_d = torch.optim.SGD(m.discriminator_parameters(), 1e-2)
    state = RunState(m, opt_g, opt_d, torch.Generator().manual_seed(0))
    return TrainStep(state, LossConfig(), stack_branches=stack, random_share=share)


def _batch_sizes(module: torch.nn.Module, arg: int = 0) -> list[int]:
    """Batch sizes of argument ``arg`` in every forward of ``module`` from now on."""
    sizes: list[int] = []

    def hook(_mod, args, _out):
        sizes.append(len(args[arg]))

    module.register_forward_hook(hook)
    return sizes


@pytest.mark.parametrize(
    ("n", "share", "rows"), [(16, 0.5, 8), (4, 0.25, 1), (3, 0.1, 1), (5, 1.0, 5)]
)
def test_random_rows(n: int, share: float, rows: int) -> None:
    assert random_rows(n, share) == rows


def test_half_share_runs_the_random_branch_on_the_first_half() -> None:
    build, data = CASES["image"]
    step = _step(_no_dropout(build()), 0.5)
    m = step.model
    d_rand, d_enc = _batch_sizes(m.disc_rand), _batch_sizes(m.disc_enc)
    enc = _batch_sizes(m.reference_prenet)
    source, target = data()
    logs = step(source, target)
    assert {"lat", "dist", "G_gan_rand"} <= logs.keys()
    # D_rand: real and fake of the D update, fake of the G update, each on 2 of the 4 rows
    assert d_rand == [2, 2, 2]
    assert d_enc == [4, 4, 4]
    assert enc == [4, 2]  # Enc_r on R (every row), then on the 2 random outputs


def test_the_random_rows_are_the_first_rows_of_the_whole_batch_step() -> None:
    """With share 0.5, the random branch's G(S, z_s) is the full step's on the same rows: the
    same first e_s codes (the noise stream is drawn for every row), the same sources."""
    build, data = CASES["image"]
    model = _no_dropout(build())
    source, target = data()
    outs = {}
    for share in (1.0, 0.5):
        step = _step(model, share)
        seen: list[torch.Tensor] = []
        step.model.disc_rand.register_forward_hook(
            lambda _m, args, _o, seen=seen: seen.append(args[1].detach())
        )
        step(source, target)
        outs[share] = seen[1]  # the D update's fake input: T̂_sam
    torch.testing.assert_close(outs[0.5], outs[1.0][:2])


@pytest.mark.parametrize("kind", list(CASES))
def test_stacked_branches_with_a_share_give_the_two_pass_step(kind: str) -> None:
    build, data = CASES[kind]
    model = _no_dropout(build())
    source, target = data()
    apart, stacked = _step(model, 0.5, stack=False), _step(model, 0.5, stack=True)
    for _ in range(2):
        a, b = apart(source, target), stacked(source, target)
        assert a.keys() == b.keys() and {"loss_D", "lat", "dist"} <= a.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key
    for p, q in zip(apart.model.parameters(), stacked.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-5)


def test_speech_random_branch_decodes_only_its_rows() -> None:
    model = _no_dropout(tts("full", frame_dropout=0.0))
    step = _step(model, 0.5)
    gen_sizes = _batch_sizes(step.model.generator, arg=1)  # z: one row per output
    logs = step(texts(4), mels([15, 20, 11, 20]))
    assert gen_sizes == [4, 2] and all(torch.isfinite(torch.tensor(v)) for v in logs.values())


def test_first_rows_and_stack_rows_handle_tensors_and_dataclasses() -> None:
    feats = SequenceFeatures(torch.randn(4, 3, 2), torch.ones(4, 3, dtype=torch.bool))
    head = first_rows(feats, 1)
    assert head.states.shape == (1, 3, 2) and torch.equal(head.states, feats.states[:1])
    both = stack_rows(feats, head)
    assert both.states.shape == (5, 3, 2) and torch.equal(both.mask[4:], feats.mask[:1])
    x = torch.arange(3.0)
    assert first_rows(x, 5) is x and first_rows(None, 2) is None and stack_rows(None, None) is None


def test_bad_shares_and_objectives_without_a_random_branch_are_refused() -> None:
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ConfigError, match=r"train\.random_share.*\(0, 1\]"):
            config_from_dict({"train": {"random_share": bad}})
    assert config_from_dict({}).train.random_share == 1.0  # the paper: both on every row
    image = ModalitySpec("image", 3, 16)
    cfg = config_from_dict({"objective": "vae", "train": {"random_share": 0.5}})
    with pytest.raises(ConfigError, match="train.random_share applies to objectives with a random"):
        M3DGAN.from_config(cfg, image, image)
