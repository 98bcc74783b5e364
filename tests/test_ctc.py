"""``model.ctc_weight``: hybrid CTC/attention for speech → text (the loss, the memory length,
CTC prefix scores, joint beam search, the switch's refusals, a run that saves, translates and
evaluates)."""

from __future__ import annotations

import itertools
import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from test_speech_cli import SPEECH_OVERRIDES, corpus, espeak, set_args  # noqa: F401 (fixture)
from test_speech_model import N_MELS, VOCAB, mels, small_config, texts
from test_stack_branches import _no_dropout, _steps

from m3dgan.config import Config, config_from_dict
from m3dgan.core.model import M3DGAN
from m3dgan.core.objectives import get_objective
from m3dgan.core.state import RunState
from m3dgan.core.step import TrainStep
from m3dgan.errors import ConfigError
from m3dgan.modalities import ModalitySpec, modality_for
from m3dgan.modalities.speech.nets import SpeechMemory
from m3dgan.modalities.text.ctc import (
    BLANK,
    CTCPrefixScorer,
    ctc_loss,
    ctc_targets,
    min_input_length,
)
from m3dgan.modalities.text.decoder import TextDecoderOutput
from m3dgan.modalities.text.vocab import BOS, EOS, PAD

SPEECH, TEXT = ModalitySpec("speech", N_MELS, 40), ModalitySpec("text", VOCAB, 10)


def asr(ctc_weight: float = 0.3, stride: int = 2, objective: str = "full") -> M3DGAN:
    torch.manual_seed(0)
    cfg = small_config(ctc_weight=ctc_weight, speech_memory_stride=stride)
    return M3DGAN(SPEECH, TEXT, get_objective(objective), cfg)


def _step(model: M3DGAN) -> TrainStep:
    cfg = Config()
    opt_g = torch.optim.SGD(model.generator_parameters(), 1e-2)
    opt_d = torch.optim.SGD(model.discriminator_parameters(), 1e-2)
    return TrainStep(RunState(model, opt_g, opt_d, torch.Generator().manual_seed(0)), cfg.loss)


# -- the loss ------------------------------------------------------------------------------------
def test_ctc_targets_drop_specials_and_count_repeats():
    ids = torch.tensor([[5, 6, 6, EOS, PAD], [BOS, 4, EOS, PAD, PAD], [EOS, PAD, PAD, PAD, PAD]])
    targets, lengths = ctc_targets(ids)
    assert targets.tolist() == [[5, 6, 6], [4, PAD, PAD], [PAD, PAD, PAD]]
    assert lengths.tolist() == [3, 1, 0]
    assert min_input_length(targets, lengths).tolist() == [4, 1, 0]  # 6 6 needs a blank between


def test_ctc_loss_equals_f_ctc_loss_by_hand():
    gen = torch.Generator().manual_seed(0)
    logp = torch.randn(3, 6, 7, generator=gen).log_softmax(-1)
    mask = torch.arange(6)[None] < torch.tensor([6, 4, 2])[:, None]
    ids = torch.tensor([[5, 6, 6, EOS, PAD], [4, EOS, PAD, PAD, PAD], [4, 4, 4, EOS, PAD]])
    loss, infeasible = ctc_loss(logp, mask, ids)
    by_hand = 0.0
    for row, target, n in (
        (0, [5, 6, 6], 6),
        (1, [4], 4),
    ):  # row 2 (three 4s need 5 positions, it has 2) is infeasible and counts 0
        by_hand += torch.nn.functional.ctc_loss(
            logp[row, :n], torch.tensor(target), (n,), (len(target),), blank=PAD, reduction="sum"
        ).item()
    assert infeasible.item() == 1
    assert loss.item() == pytest.approx(by_hand / (3 + 1 + 3), rel=1e-6)


def test_lambda_zero_is_todays_loss_and_lambda_mixes_the_two_terms():
    speech, ids = mels([30, 22]), texts(2)
    plain, hybrid = asr(0.0, stride=2).eval(), asr(0.3).eval()
    assert plain.generator.ctc is None
    assert not any("ctc" in k for k in plain.state_dict())  # a λ = 0 checkpoint is as before
    # same seed: the attention decoder's weights are the same (the head is built after them)
    hybrid_att = {k: v for k, v in hybrid.generator.state_dict().items() if "ctc" not in k}
    for key, value in plain.generator.state_dict().items():
        assert torch.equal(value, hybrid_att[key]), key
    z = plain.embed(plain.encode(ids).mu)
    probs = plain.generate(speech, z, ids)
    assert isinstance(probs, torch.Tensor)
    tm = modality_for(TEXT)
    # today's loss: the mean negative log-likelihood over real positions
    mask = ids != PAD
    nll = -torch.log(probs.clamp_min(1e-8)).gather(-1, ids[..., None]).squeeze(-1)
    att = tm.reconstruction_loss(probs, ids)
    assert att.item() == pytest.approx(((nll * mask).sum() / mask.sum()).item(), rel=1e-6)
    out = hybrid.generate(speech, z, ids)
    assert isinstance(out, TextDecoderOutput) and torch.equal(out.probs, probs)
    assert tm.output_sample(out) is out.probs
    ctc, _ = ctc_loss(out.ctc_log_probs, out.ctc_mask, ids)
    both = tm.reconstruction_loss(out, ids, ctc_weight=0.3)
    assert both.item() == pytest.approx(0.7 * att.item() + 0.3 * ctc.item(), rel=1e-6)
    # label smoothing applies to the attention part only
    smooth = tm.reconstruction_loss(out, ids, label_smoothing=0.1, ctc_weight=0.3)
    att_s = tm.reconstruction_loss(probs, ids, label_smoothing=0.1)
    assert smooth.item() == pytest.approx(0.7 * att_s.item() + 0.3 * ctc.item(), rel=1e-6)
    with pytest.raises(ValueError, match="ctc_weight"):
        tm.reconstruction_loss(out, ids)
    with pytest.raises(ValueError, match="CTC output"):
        tm.reconstruction_loss(probs, ids, ctc_weight=0.3)


def test_training_steps_lower_the_hybrid_loss_and_log_the_ctc_term():
    step = _step(asr(0.3))
    speech, ids = mels([40, 34, 28, 40]), texts(4)
    first = step(speech, ids)
    assert {"ctc", "ctc_infeasible"} <= first.keys() and first["ctc_infeasible"] == 0
    for _ in range(15):
        last = step(speech, ids)
    assert last["rec"] < first["rec"] and last["ctc"] < first["ctc"]
    assert "ctc" not in _step(asr(0.0))(speech, ids)  # λ = 0: no CTC branch at all


def test_stacked_branches_with_a_ctc_head_give_the_two_pass_losses():
    apart, stacked = _steps(_no_dropout(asr(0.3)))
    speech, ids = mels([30, 22, 26, 30]), texts(4)
    a, b = apart(speech, ids), stacked(speech, ids)
    assert a.keys() == b.keys() and "ctc" in a
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key


# -- the memory is long enough -------------------------------------------------------------------
SENTENCES = [
    "The cat sat on the mat.",
    "She sells sea shells by the sea shore.",
    "Time flies like an arrow; fruit flies like a banana.",
    "Open the red door.",
]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_stride_two_memory_holds_a_ctc_alignment_of_fast_espeak_speech(tmp_path: Path):
    """The built-in corpus' fastest style (210 words/min, trimmed like the corpus): every
    sentence fits at stride 2; at stride 4 they do not (the frame-rate trap)."""
    from m3dgan.audio import MelConfig, load_audio, wave_to_mel
    from m3dgan.audio.inputs import trim_silence
    from m3dgan.modalities.text.vocab import CharVocabulary

    cfg = MelConfig()
    vocab = CharVocabulary.build(SENTENCES)
    spoken = []
    for k, text in enumerate(SENTENCES):
        wav = tmp_path / f"{k}.wav"
        subprocess.run(
            ["espeak-ng", "-v", "en-us", "-p", "80", "-s", "210", "-w", str(wav), text],
            check=True,
            capture_output=True,
        )
        spoken.append(wave_to_mel(trim_silence(load_audio(wav), cfg), cfg))
    batch = torch.full((len(spoken), max(len(m) for m in spoken), cfg.n_mels), -1.0)
    for i, m in enumerate(spoken):
        batch[i, : len(m)] = m
    ids = vocab.encode_batch(SENTENCES, 100)
    need = min_input_length(*ctc_targets(ids))
    speech = modality_for(ModalitySpec("speech", cfg.n_mels, 400))
    positions = {}
    for stride in (2, 4):
        mc = small_config(speech_memory_stride=stride)
        prenet = speech.build_prenet(mc)
        memory = speech.build_memory(mc)
        assert isinstance(memory, SpeechMemory) and memory.time_stride == stride
        with torch.no_grad():
            positions[stride] = memory(prenet(batch)).mask.sum(1)
    chars_per_s = [
        len(t) / (len(m) / cfg.frames_per_second) for t, m in zip(SENTENCES, spoken, strict=True)
    ]
    assert min(chars_per_s) > 18  # fast speech indeed
    assert (positions[2] >= need).all(), (positions[2].tolist(), need.tolist())
    assert (positions[4] < need).all(), (positions[4].tolist(), need.tolist())


# -- CTC prefix scores ---------------------------------------------------------------------------
def _collapse(path: tuple[int, ...]) -> list[int]:
    out, prev = [], None
    for s in path:
        if s != prev and s != BLANK:
            out.append(s)
        prev = s
    return out


def _brute_force(logp: torch.Tensor, prefix: list[int], whole: bool) -> float:
    """log Σ over all label paths of p(path) whose collapsed output starts with (or, ``whole``,
    is) ``prefix``."""
    t, v = logp.shape
    total = 0.0
    for path in itertools.product(range(v), repeat=t):
        out = _collapse(path)
        if (out == prefix) if whole else (out[: len(prefix)] == prefix):
            total += math.exp(sum(logp[i, s].item() for i, s in enumerate(path)))
    return math.log(total) if total > 0 else float("-inf")


def test_prefix_scores_match_brute_force_sums_over_paths():
    torch.manual_seed(0)
    v, t = 5, 5  # blank(PAD)=0, BOS, EOS, and two symbols 3, 4
    logp = torch.randn(2, t, v).log_softmax(-1).double()
    lengths = torch.tensor([5, 3])  # the second row's last 2 positions are padding
    scorer = CTCPrefixScorer(logp, lengths)
    r = scorer.initial_state()
    for prefix in ([], [3], [3, 4], [4, 4]):
        state, last = r, torch.full((2,), BOS)
        for step, sym in enumerate(prefix):
            _, extended = scorer.score(state, last, step)
            state = extended[:, :, torch.arange(2), torch.tensor([sym, sym])]
            last = torch.tensor([sym, sym])
        psi, _ = scorer.score(state, last, len(prefix))
        for row in range(2):
            x = logp[row, : lengths[row]]
            for c in (3, 4):
                expected = _brute_force(x, prefix + [c], whole=False)
                if expected == float("-inf"):
                    assert psi[row, c] < -1e9
                else:
                    assert psi[row, c].item() == pytest.approx(expected, abs=1e-4), (prefix, c)
            # the end mark: the probability that the output is exactly the prefix
            whole = _brute_force(x, prefix, whole=True)
            assert psi[row, EOS].item() == pytest.approx(whole, abs=1e-4), prefix
            assert psi[row, BLANK] < -1e9
            if prefix:
                target = torch.tensor(prefix)
                by_ctc = -torch.nn.functional.ctc_loss(
                    x, target, (len(x),), (len(target),), blank=BLANK, reduction="sum"
                )
                assert psi[row, EOS].item() == pytest.approx(by_ctc.item(), abs=1e-4)


# -- joint decoding ------------------------------------------------------------------------------
def test_joint_beam_search_picks_the_hypothesis_ctc_prefers(monkeypatch):
    """The attention decoder slightly prefers "4" over "5" as the only token; the CTC head
    strongly prefers "5". Joint decoding with λ = 0.3 follows CTC, in its greedy form (beam 1)
    and as a beam search; with λ = 0 both follow attention."""
    model = asr(0.3).eval()
    dec = model.generator
    run = dec._run

    def attention(tokens, memory, keys, mask, state=None):
        _, state, weights = run(tokens, memory, keys, mask, state)
        logits = torch.full((len(tokens), 1, VOCAB), -20.0)
        first = tokens[:, -1] == BOS
        logits[first, 0, 4], logits[first, 0, 5] = 0.2, 0.0  # p(4) ≈ 0.55, p(5) ≈ 0.45
        logits[~first, 0, EOS] = 0.0  # then the end
        return logits, state, weights

    def ctc_log_probs(features):
        b, m = features.states.shape[:2]
        logp = torch.full((b, m, VOCAB), math.log(1e-4))
        logp[:, :, BLANK] = math.log(0.9)
        logp[:, m // 2, 5], logp[:, m // 2, BLANK] = math.log(0.9), math.log(1e-4)
        return logp.log_softmax(-1)

    monkeypatch.setattr(dec, "_run", attention)
    monkeypatch.setattr(dec, "ctc_log_probs", ctc_log_probs)
    speech = mels([30, 26])
    e = torch.zeros(2, model.cfg.nz)
    assert model.translate(speech, e=e)[:, :2].tolist() == [[5, EOS]] * 2  # joint greedy
    assert model.translate(speech, e=e, beam_size=3)[:, :2].tolist() == [[5, EOS]] * 2
    dec.ctc_weight = 0.0
    assert model.translate(speech, e=e)[:, :2].tolist() == [[4, EOS]] * 2
    assert model.translate(speech, e=e, beam_size=3)[:, :2].tolist() == [[4, EOS]] * 2
    dec.ctc = None  # no CTC head: the attention decoder's own greedy loop
    assert model.translate(speech, e=e).tolist() == [[4, EOS]] * 2


def test_joint_beam_search_on_an_untrained_model_runs_and_pads_after_the_end():
    model = asr(0.5).eval()
    out = model.translate(mels([30, 12]), beam_size=4)
    assert out.shape[0] == 2
    for row in out.tolist():
        if EOS in row:
            assert all(t == PAD for t in row[row.index(EOS) + 1 :])


# -- the switch ----------------------------------------------------------------------------------
def _cfg(task: str, **model) -> Config:
    return config_from_dict({"task": task, "model": model})


@pytest.mark.parametrize(
    ("task", "source", "target", "model", "message"),
    [
        ("tts", "text", "speech", {"ctc_weight": 0.3}, "speech → text"),
        ("en2fr", "text", "text", {"ctc_weight": 0.3}, "speech → text"),
        ("asr", "speech", "text", {"ctc_weight": 0.3}, "speech_memory_stride=2"),
        ("en2fr", "text", "text", {"speech_memory_stride": 2}, "speech sources"),
    ],
)
def test_the_switch_refuses_tasks_it_does_not_apply_to(task, source, target, model, message):
    cfg = _cfg(task, **model)
    s = ModalitySpec(source, N_MELS if source == "speech" else VOCAB, 20)
    t = ModalitySpec(target, N_MELS if target == "speech" else VOCAB, 20)
    with pytest.raises(ConfigError, match=message):
        M3DGAN.from_config(cfg, s, t)


def test_config_range_and_old_configs():
    old = config_from_dict({"task": "asr"})  # a config written before the keys existed
    assert old.model.ctc_weight == 0.0 and old.model.speech_memory_stride == 4
    for bad in ({"ctc_weight": 1.0}, {"ctc_weight": -0.1}, {"speech_memory_stride": 3}):
        with pytest.raises(ConfigError):
            _cfg("asr", **bad)
    with pytest.raises(ValueError, match="speech source"):
        M3DGAN(TEXT, TEXT, get_objective("mle"), small_config(ctc_weight=0.3))


# -- end to end ----------------------------------------------------------------------------------
@pytest.mark.usefixtures("isolated_env")
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_asr_with_ctc_trains_saves_translates_and_evaluates(corpus, tmp_path: Path):  # noqa: F811
    from m3dgan.cli import main
    from m3dgan.evaluate import evaluate

    data = corpus
    run = tmp_path / "asr"
    args = ["train", "--task", "asr", "--objective", "full", "--data", str(data)]
    args += ["--out", str(run), "--steps", "3", "--no-progress"]
    overrides = [*SPEECH_OVERRIDES, "model.ctc_weight=0.3", "model.speech_memory_stride=2"]
    assert main(args + set_args(overrides)) == 0
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert any("ctc" in row for row in logged)
    clip = espeak("Open the red door.", [], tmp_path / "in.wav")
    out = tmp_path / "t"
    assert (
        main(
            ["translate", "--checkpoint", str(run), "--input", str(clip), "--out", str(out)]
            + ["--beam", "3"]
        )
        == 0
    )
    assert len(list(out.glob("in_*.txt"))) == 4
    metrics = evaluate(run, data_root=data, progress=False, beam=3)
    assert metrics["utterances"] == 4 and metrics["cer"] >= 0
