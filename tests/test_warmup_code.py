"""``train.warmup_code=zero``: the warm-up step decodes from e = 0 without running Enc_r."""

from __future__ import annotations

import copy

import pytest
import torch
from test_stack_branches import CASES, _no_dropout

from m3dgan.config import LossConfig, config_from_dict
from m3dgan.core.state import RunState
from m3dgan.core.step import TrainStep
from m3dgan.core.switches import check_switches
from m3dgan.errors import ConfigError
from m3dgan.modalities import ModalitySpec


def _step(model, warmup_code: str) -> TrainStep:
    m = copy.deepcopy(model)
    opt_g = torch.optim.SGD(m.generator_parameters(), 1e-2)
    opt_d = torch.optim.SGD(m.discriminator_parameters(), 1e-2)
    state = RunState(m, opt_g, opt_d, torch.Generator().manual_seed(0))
    return TrainStep(state, LossConfig(), warmup_code=warmup_code)


def _calls(module: torch.nn.Module) -> list[int]:
    seen: list[int] = []
    module.register_forward_hook(lambda _m, args, _o: seen.append(len(args[0])))
    return seen


@pytest.mark.parametrize("kind", list(CASES))
def test_zero_warmup_skips_the_reference_encoder_and_the_kl(kind: str) -> None:
    build, data = CASES[kind]
    model = _no_dropout(build())
    source, target = data()
    step = _step(model, "zero")
    enc = _calls(step.model.reference_prenet)
    logs = step(source, target, warmup=True)
    assert enc == []  # no Enc_r pass at all
    assert "kl" not in logs and "loss_D" not in logs
    # the reference side got no gradient: its weights did not move, G's did
    before = dict(model.named_parameters())
    after = dict(step.model.named_parameters())
    ref = [n for n in before if n.startswith(("reference_prenet.", "attention.encoder."))]
    assert ref and all(torch.equal(before[n], after[n]) for n in ref)
    assert any(not torch.equal(before[n], after[n]) for n in before if n.startswith("generator."))


@pytest.mark.parametrize("kind", list(CASES))
def test_zero_warmup_decodes_from_the_zero_code(kind: str) -> None:
    """The reconstruction the zero warm-up trains on is G(S, UTL(0)): the same loss as the
    encoded warm-up gets when the posterior sample happens to be 0."""
    build, data = CASES[kind]
    model = _no_dropout(build())
    source, target = data()
    step = _step(model, "zero")
    with torch.no_grad():
        eps = torch.randn(len(target), model.cfg.nz)
        out = step.generator_side(source, target, eps, None, None, True)
        z = model.embed(torch.zeros(len(target), model.cfg.nz))
        expect = model.generator(model.source_prenet(source), z, target)
    sample = model.target_modality.output_sample  # speech: the frames of the named outputs
    torch.testing.assert_close(sample(out["fake_enc"]), sample(expect))
    assert out["mu"] is None


def test_after_the_warmup_the_encoded_branch_runs_again() -> None:
    build, data = CASES["image"]
    step = _step(_no_dropout(build()), "zero")
    enc = _calls(step.model.reference_prenet)
    source, target = data()
    logs = step(source, target, warmup=False)
    assert enc and "kl" in logs and "loss_D" in logs


def _cfg(objective: str = "full", **train):
    return config_from_dict({"objective": objective, "train": train})


def test_the_switch_is_checked() -> None:
    assert config_from_dict({}).train.warmup_code == "encoded"  # the default: as before
    image = ModalitySpec("image", 3, 16)
    with pytest.raises(ConfigError, match="no warm-up"):
        check_switches(_cfg(warmup_code="zero"), image, image)
    cfg = _cfg("pix2pix", warmup_code="zero", adversarial_warmup=0.5)
    with pytest.raises(ConfigError, match="no encoded branch"):
        check_switches(cfg, image, image)
    check_switches(_cfg(warmup_code="zero", adversarial_warmup=0.5), image, image)
    with pytest.raises(ConfigError, match="train.warmup_code"):
        _cfg(warmup_code="nothing")


# --- the task's recipe for one objective (Task.objective_defaults) ---------------------------


@pytest.mark.parametrize("task", ["en2fr", "emoji2text"])
def test_text_target_full_gets_the_recipe_and_mle_a_config_it_accepts(task: str) -> None:
    """The text-target `full` recipe carries switches `mle` refuses (the warm-up's code, the
    random branch's share): they come with `full` only, and every objective's config passes the
    switch checks."""
    from m3dgan.config import layered_config
    from m3dgan.tasks import get_task

    recipe = get_task(task).objective_defaults["full"]
    full = layered_config(task, "full")
    assert full.train.warmup_code == "zero" and full.train.adversarial_warmup == 0.9
    assert full.train.domain_reference == 1.0 and full.model.reference_cbhg_bank == 4
    assert full.train.random_share == recipe["train.random_share"] < 1
    source = ModalitySpec("image", 3, 64) if task == "emoji2text" else ModalitySpec("text", 30, 12)
    text = ModalitySpec("text", 30, 12)
    for objective in ("mle", "gst", "cvae-gan", "pix2pix", "full-noatt"):
        cfg = layered_config(task, objective)
        assert cfg.train.warmup_code == "encoded" and cfg.train.random_share == 1.0
        assert cfg.train.domain_reference == 0.0
        check_switches(cfg, source, text)  # raises if the recipe had leaked into it
    check_switches(full, source, text)


def test_overrides_beat_the_recipe() -> None:
    """`--set` (and a --config file) sit over the recipe: the paper's setting stays reachable."""
    from m3dgan.config import layered_config

    paper = layered_config(
        "en2fr",
        "full",
        overrides=[
            "train.adversarial_warmup=0",
            "train.warmup_code=encoded",
            "train.domain_reference=0",
            "train.random_share=1",
        ],
    )
    assert paper.train.adversarial_warmup == 0 and paper.train.warmup_code == "encoded"
    assert paper.train.domain_reference == 0 and paper.train.random_share == 1


def test_tts_full_gets_its_recipe_and_the_baselines_the_paper_decoder() -> None:
    """tts `full` decodes by durations from phonemes (issue 13's recipe); `gst` and `mle` keep
    the attention decoder on characters their names promise, and every config passes the
    switch checks (the recipe's keys are accepted by `full` and refused by no baseline)."""
    from m3dgan.config import layered_config
    from m3dgan.tasks import get_task

    recipe = get_task("tts").objective_defaults["full"]
    full = layered_config("tts", "full")
    assert (full.model.speech_decoder, full.model.text_frontend) == ("duration", "phonemes")
    assert full.train.stack_branches and full.train.random_share == recipe["train.random_share"]
    assert full.train.ema_decay == 0.999
    text, speech = ModalitySpec("text", 30, 12), ModalitySpec("speech", 80, 40)
    check_switches(full, text, speech)
    for objective in ("gst", "mle"):
        cfg = layered_config("tts", objective)
        assert (cfg.model.speech_decoder, cfg.model.text_frontend) == ("attention", "characters")
        assert cfg.train.ema_decay == 0.0 and not cfg.train.stack_branches
        check_switches(cfg, text, speech)
    paper = layered_config(
        "tts",
        "full",
        overrides=["model.speech_decoder=attention", "model.text_frontend=characters"],
    )
    assert (paper.model.speech_decoder, paper.model.text_frontend) == ("attention", "characters")


def test_asr_defaults_reach_every_objective_and_full_gets_the_text_recipe() -> None:
    """asr's hybrid CTC/attention defaults are task defaults (the `mle` baseline gets the same
    encoder and decoding); text targets' recipe reaches `full` only; both pass the switch
    checks; the paper's setting stays a few overrides away."""
    from m3dgan.config import layered_config
    from m3dgan.tasks.registry import TEXT_TARGET_FULL_RECIPE

    speech, text = ModalitySpec("speech", 80, 40), ModalitySpec("text", 30, 12)
    for objective in ("full", "mle"):
        cfg = layered_config("asr", objective)
        assert (cfg.model.ctc_weight, cfg.model.speech_memory_stride) == (0.3, 2)
        assert cfg.model.attention_score == "general" and cfg.train.lr == 1e-3
        assert (cfg.train.length_buckets, cfg.train.ema_decay) == (128, 0.999)
        check_switches(cfg, speech, text)
    full, mle = layered_config("asr", "full"), layered_config("asr", "mle")
    assert full.train.adversarial_warmup == TEXT_TARGET_FULL_RECIPE["train.adversarial_warmup"]
    assert full.train.warmup_code == "zero" and full.train.domain_reference == 1.0
    assert mle.train.adversarial_warmup == 0 and mle.train.warmup_code == "encoded"
    paper = layered_config(
        "asr", "mle", overrides=["model.ctc_weight=0", "model.speech_memory_stride=4"]
    )
    assert paper.model.ctc_weight == 0 and paper.model.speech_memory_stride == 4
    check_switches(paper, speech, text)


@pytest.mark.parametrize("task", ["text2emoji", "text2emoji-seen"])
def test_text2emoji_reads_captions_as_a_bag_of_pieces_and_full_gets_its_recipe(task: str) -> None:
    """text2emoji's caption encoder (a bag of 2,000 sentencepiece pieces, Adam at 1e-3) reaches
    every objective; the `full` recipe (a reference of the domain, the warm-up from e = 0, the
    stacked branches) reaches `full` only, without the text-target-only reference bank; every
    config passes the switch checks; the paper's setting is a few overrides away."""
    from m3dgan.config import layered_config

    text, image = ModalitySpec("text", 30, 12), ModalitySpec("image", 3, 64)
    for objective in ("full", "cvae-gan", "mle", "bicycle", "pix2pix"):
        cfg = layered_config(task, objective)
        lr = 2e-4 if objective == "cvae-gan" else 1e-3  # cvae-gan collapsed at 1e-3
        assert (cfg.model.text_encoder, cfg.model.subwords, cfg.train.lr) == ("bag", 2000, lr)
        check_switches(cfg, text, image)
    full = layered_config(task, "full")
    assert full.train.domain_reference == 1.0 and full.train.warmup_code == "zero"
    assert full.train.adversarial_warmup == 0.9 and full.train.stack_branches
    assert full.model.reference_cbhg_bank == 0  # text targets only: refused for images
    cvae = layered_config(task, "cvae-gan")
    assert cvae.train.domain_reference == 0.0 and cvae.train.adversarial_warmup == 0.0
    paper = layered_config(
        task,
        "full",
        overrides=["model.text_encoder=cbhg", "model.subwords=0", "train.domain_reference=0"],
    )
    assert (paper.model.text_encoder, paper.model.subwords) == ("cbhg", 0)
    check_switches(paper, text, image)
