"""The text modality: vocabularies, subnets' shapes and masks, decoding, and the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import TINY_OVERRIDES, set_args, tiny_model_config
from text_fixtures import TEXT_MODEL_OVERRIDES, write_image_text, write_text2text
from torch.nn import functional as F

from m3dgan.cli import main
from m3dgan.core.model import M3DGAN
from m3dgan.core.objectives import get_objective
from m3dgan.errors import InputError
from m3dgan.modalities import ModalitySpec
from m3dgan.modalities.text import TextModality
from m3dgan.modalities.text.discriminator import TextDiscriminator
from m3dgan.modalities.text.nets import TextPrenet
from m3dgan.modalities.text.tokens import one_hot
from m3dgan.modalities.text.vocab import EOS, PAD, UNK, CharVocabulary

pytestmark = pytest.mark.usefixtures("isolated_env")

TEXT_CFG = dict(
    text_embed=8,
    text_prenet=[16, 8],
    cbhg_bank=3,
    cbhg_channels=8,
    cbhg_highway=1,
    text_gru=8,
    decoder_attention_rnn=16,
    decoder_rnn=16,
)
V, L = 12, 7


def ids(b: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(4, V, (b, L), generator=gen)
    x[:, -1] = EOS
    x[0, 3], x[0, 4:] = EOS, PAD  # a shorter first row
    return x


def text_model(source: str = "text", objective: str = "full", **changes) -> M3DGAN:
    torch.manual_seed(0)
    src = ModalitySpec(source, V if source == "text" else 3, L if source == "text" else 16)
    cfg = tiny_model_config(**{**TEXT_CFG, **changes})
    return M3DGAN(src, ModalitySpec("text", V, L), get_objective(objective), cfg).eval()


# --- vocabulary --------------------------------------------------------------------------------


def test_char_vocabulary_round_trip_unknowns_and_limits() -> None:
    vocab = CharVocabulary.build(["open file", "close it"])
    encoded = vocab.encode("open  file")  # whitespace is normalised
    assert encoded[-1] == EOS and vocab.decode(encoded) == "open file"
    assert vocab.unknown("open Zfile") == ["Z"]
    assert UNK in vocab.encode("open Zfile")
    with pytest.raises(InputError, match="empty"):
        vocab.encode("   ")
    with pytest.raises(InputError, match="too long"):
        vocab.encode("open file", max_len=5)
    batch = vocab.encode_batch(["open", "close it"])
    assert batch.shape == (2, 9) and (batch[0, 5:] == PAD).all()


# --- subnets -----------------------------------------------------------------------------------


def test_text_prenet_shapes_masks_and_padding_invariance() -> None:
    torch.manual_seed(0)
    prenet = TextPrenet(V, tiny_model_config(**TEXT_CFG)).eval()
    x = ids(3)
    feats = prenet(x)
    assert feats.states.shape == (3, L, 16) and feats.mask.tolist() == (x != PAD).tolist()
    # extra padding changes nothing at real positions (masked convs, packed GRU)
    padded = F.pad(x, (0, 5), value=PAD)
    again = prenet(padded)
    assert torch.allclose(again.states[:, :L], feats.states, atol=1e-5)
    # distributions (one-hot) embed exactly like ids: generated text goes through the same path
    soft = prenet(one_hot(x, V))
    assert torch.allclose(soft.states, feats.states, atol=1e-5)
    assert torch.equal(soft.mask, feats.mask)


def test_teacher_forcing_matches_step_by_step_decoding() -> None:
    model = text_model()
    src = ids(4)
    e = torch.randn(4, model.cfg.nz)
    greedy = model.translate(src, e=e)
    assert greedy.dtype == torch.long and greedy.shape[0] == 4
    # teacher forcing on the greedy output reproduces it: both compute the same function
    probs = model.generate(src, model.embed(e), greedy)
    real = greedy != PAD
    assert torch.equal(probs.argmax(-1)[real], greedy[real])
    assert torch.allclose(probs.sum(-1)[real], torch.ones(int(real.sum())), atol=1e-5)
    assert (probs[~real] == 0).all()
    # beam search with one beam is greedy decoding
    z = model.embed(e)
    beam1 = model.generator(model.source_prenet(src), z, beam_size=1)
    assert torch.equal(beam1, greedy)
    beam3 = model.generator(model.source_prenet(src), z, beam_size=3)
    assert beam3.shape[0] == 4 and (beam3[:, 0] != PAD).all()


def test_own_inputs_feed_the_decoder_its_greedy_predictions_in_training_only() -> None:
    src, target = ids(4), ids(4, seed=1)
    plain, own = text_model(), text_model(decoder_own_inputs=1.0)  # one seed: same weights
    z = own.embed(torch.randn(4, own.cfg.nz))
    memory = own.source_prenet(src)
    real = target != PAD
    # evaluation: plain teacher forcing
    assert torch.equal(own.generator(memory, z, target), plain.generator(memory, z, target))
    for model in (own, plain):
        model.train()
        for module in model.modules():  # no dropout: both passes compute the same function
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    mixed = own.generator(memory, z, target)
    teacher = plain.generator(memory, z, target)
    # at share 1 every input after BOS is the first pass's greedy prediction: the pass is
    # teacher forcing on those predictions
    first = teacher.argmax(-1)
    replay = plain.generator(memory, z, torch.where(real, first, target))
    assert torch.allclose(mixed[real], replay[real], atol=1e-6)
    assert not torch.allclose(mixed[real], teacher[real])  # the untrained model errs: it differs
    assert (mixed[~real] == 0).all()
    # at share 0 training is plain teacher forcing
    own.generator.own_inputs = 0.0
    assert torch.allclose(own.generator(memory, z, target), teacher)


def test_label_smoothing_mixes_in_the_uniform_cross_entropy() -> None:
    mod = TextModality(ModalitySpec("text", V, L))
    target = ids(3)
    probs = torch.softmax(torch.randn(3, L, V), -1) * (target != PAD).unsqueeze(-1)
    nll = mod.reconstruction_loss(probs, target)
    assert mod.reconstruction_loss(probs, target, label_smoothing=0.0) == nll
    mask = target != PAD
    uniform = (-torch.log(probs.clamp_min(1e-8)).mean(-1) * mask).sum() / mask.sum()
    assert torch.isclose(mod.reconstruction_loss(probs, target, label_smoothing=1.0), uniform)
    mix = mod.reconstruction_loss(probs, target, label_smoothing=0.1)
    assert torch.isclose(mix, 0.9 * nll + 0.1 * uniform)
    # a confident, right prediction costs more with smoothing: it is pulled toward uniform
    sure = F.one_hot(target.clamp_min(0), V).float() * 0.999 + 0.001 / V
    assert mod.reconstruction_loss(sure, target, label_smoothing=0.1) > mod.reconstruction_loss(
        sure, target
    )


def test_text_output_switches_refuse_other_targets() -> None:
    from m3dgan.config import Config, config_from_dict
    from m3dgan.errors import ConfigError

    image = ModalitySpec("image", 3, 16)
    for key, section in (("decoder_own_inputs", "model"), ("label_smoothing", "loss")):
        cfg = Config()
        setattr(getattr(cfg, section), key, 0.1)
        with pytest.raises(ConfigError, match=f"{section}.{key} applies to text outputs"):
            M3DGAN.from_config(cfg, image, image)
        M3DGAN.from_config(cfg, ModalitySpec("text", V, L), ModalitySpec("text", V, L))
        bad = cfg.to_dict()
        bad[section][key] = 1.5
        with pytest.raises(ConfigError, match=key):
            config_from_dict(bad)


@pytest.mark.parametrize("source", ["text", "image"])
def test_decoder_memory_with_and_without_source_attention(source: str) -> None:
    for attend in (True, False):
        model = text_model(source, source_attention=attend)
        src = ids(2) if source == "text" else torch.rand(2, 3, 16, 16) * 2 - 1
        z = model.embed(model.sample_e(2))
        memory, mask = model.generator.memory(model.source_prenet(src), z)
        if attend:
            assert memory.shape[1] == (L if source == "text" else 64)
        else:
            assert memory.shape[1] == 1  # the paper's single global embedding
        assert memory.shape[-1] == model.generator.key.in_features
        assert torch.allclose(
            memory[:, :, -z.shape[1] :], z[:, None].expand_as(memory[:, :, -z.shape[1] :])
        )


def test_text_discriminator_and_losses_pass_gradients_to_the_generator() -> None:
    model = text_model().train()
    src, tgt = ids(4, 1), ids(4, 2)
    probs = model.generate(src, model.embed(model.sample_e(4)), tgt)
    d = model.disc_enc
    assert isinstance(d, TextDiscriminator)
    assert d(src, tgt).shape == d(src, probs).shape == (4, 1)
    # D reads generated text as a straight-through one-hot: the argmax tokens going forward
    hard = one_hot(torch.where(tgt != PAD, probs.argmax(-1), PAD), V)
    assert torch.allclose(d(src, probs), d(src, hard), atol=1e-5)
    d(src, probs).sum().backward()
    grads = [p.grad for p in model.generator.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    # the reconstruction loss is the token cross-entropy
    mod = TextModality(ModalitySpec("text", V, L))
    logits = torch.randn(4, L, V)
    p = F.softmax(logits, -1) * (tgt != PAD).unsqueeze(-1)
    expected = F.cross_entropy(logits.transpose(1, 2), tgt, ignore_index=PAD)
    assert torch.allclose(mod.reconstruction_loss(p, tgt), expected, atol=1e-5)
    # distance between distributions: 0 for equal, 2 for disjoint one-hots
    a = one_hot(tgt, V)
    assert torch.allclose(mod.output_distance(a, a), torch.zeros(4))
    b = one_hot(torch.where(tgt > PAD, 4 + (tgt - 3) % (V - 4), tgt), V)
    assert torch.allclose(mod.output_distance(a, b), torch.full((4,), 2.0))


# --- a tiny trained model and the CLI ------------------------------------------------------------

TEXT_ARGS = set_args(TINY_OVERRIDES + TEXT_MODEL_OVERRIDES)


def test_cli_text_to_text_train_translate_evaluate(tmp_path, capsys) -> None:
    data = write_text2text(tmp_path / "data")
    run = tmp_path / "run"
    args = [
        "train",
        "--task",
        "en2fr",
        "--objective",
        "mle",
        "--data",
        str(data),
        "--out",
        str(run),
    ]
    extra = ["--set", "train.steps=400", "--set", "train.lr=0.01", "--set", "train.batch_size=8"]
    extra += ["--set", "model.decoder_rnn=32", "--set", "model.decoder_attention_rnn=32"]
    assert main(args + TEXT_ARGS + extra + ["--no-progress"]) == 0
    assert (run / "samples").glob("*.txt")
    out = tmp_path / "out"
    assert (
        main(["translate", "--checkpoint", str(run), "--text", "red cat", "--out", str(out)]) == 0
    )
    printed = capsys.readouterr()
    assert "red cat" in printed.out and (out / "text0_z0.txt").is_file()
    assert "no latent code" not in printed.err  # nothing asked for samples: nothing to say
    cmd = ["translate", "--checkpoint", str(run), "--text", "red cat", "--out", str(out)]
    assert main([*cmd, "--samples", "3"]) == 0
    assert "--samples do not apply" in capsys.readouterr().err
    # the tiny model learned to swap the words of its training phrases (greedy and beam)
    from m3dgan.infer import Translator

    tr = Translator.from_checkpoint(run)
    from text_fixtures import reverse_pairs

    pairs = reverse_pairs(24, 0)[:12]
    for beam in (1, 3):
        hits = sum(
            tr.decode(tr.translate(tr.encode_text(s), beam_size=beam))[0] == t for s, t in pairs
        )
        assert hits >= 9, f"beam {beam}: {hits}/12"
    metrics_path = tmp_path / "metrics.json"
    assert (
        main(
            ["evaluate", "--checkpoint", str(run), "--data", str(data), "--out", str(metrics_path)]
        )
        == 0
    )
    metrics = json.loads(metrics_path.read_text())
    assert 0.0 <= metrics["bleu4"] <= 100.0 and metrics["decoded"] == len(set(reverse_pairs(8, 1)))
    assert 0.0 <= metrics["chrf"] <= 100.0
    assert "posterior_kl" not in metrics  # mle has no domain code to owe anything to
    # the teacher-forced test loss of a model that learned: well below a uniform guess
    uniform = math.log(tr.vocabs["target"].size)
    assert 0.0 < metrics["test_nll"] < 0.5 * uniform
    assert 0.0 <= metrics["end_nll"] < uniform


def test_text_evaluation_reports_what_the_output_owes_to_the_code(tmp_path, monkeypatch) -> None:
    from m3dgan.core.attention import Posterior
    from m3dgan.evaluate import evaluate

    data = write_text2text(tmp_path / "data")
    run = tmp_path / "run"
    args = ["train", "--task", "en2fr", "--objective", "full", "--data", str(data)]
    args += [
        "--out",
        str(run),
        "--no-progress",
        "--set",
        "train.steps=60",
        "--set",
        "train.lr=0.01",
    ]
    assert main(args + TEXT_ARGS) == 0

    def scores() -> dict:
        return evaluate(run, data_root=data, progress=False)

    m = scores()
    assert m["posterior_kl"] >= 0.0 and 0.0 <= m["code_dependence"] <= 1.0
    assert 0.0 <= m["chrf_encoded"] <= 100.0 and 0.0 <= m["bleu4_encoded"] <= 100.0
    # a code the decoder cannot see: nothing depends on it, encoded and e = 0 score the same
    embed = M3DGAN.embed
    monkeypatch.setattr(M3DGAN, "embed", lambda self, e: embed(self, torch.zeros_like(e)))
    flat = scores()
    assert flat["code_dependence"] == 0.0
    assert (flat["bleu4_encoded"], flat["chrf_encoded"]) == (flat["bleu4"], flat["chrf"])
    # a code that shouts: e = 0 stays as it was, the encoded outputs change
    monkeypatch.setattr(M3DGAN, "embed", lambda self, e: embed(self, 1e3 * e))
    assert scores()["code_dependence"] > 0.0
    # a posterior that is the prior carries nothing: KL 0
    monkeypatch.setattr(
        M3DGAN,
        "encode",
        lambda self, r: Posterior(
            torch.zeros(len(r), self.cfg.nz), torch.zeros(len(r), self.cfg.nz)
        ),
    )
    assert scores()["posterior_kl"] == pytest.approx(0.0, abs=1e-9)


def test_cli_text_input_errors_exit_2(tmp_path, capsys) -> None:
    data = write_text2text(tmp_path / "data")
    run = tmp_path / "run"
    args = ["train", "--task", "en2fr", "--data", str(data), "--out", str(run), "--no-progress"]
    assert main(args + TEXT_ARGS + ["--set", "train.steps=2"]) == 0
    base = ["translate", "--checkpoint", str(run), "--out", str(tmp_path / "o")]
    assert main(base + ["--text", "  "]) == 2
    assert "empty text" in capsys.readouterr().err
    # a bad second sentence: named, and nothing written for the first either
    assert main(base + ["--text", "red cat", ""]) == 2
    assert "--text #2 (text1, '')" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    assert main(base + ["--input", str(empty)]) == 2
    err = capsys.readouterr().err
    assert f"{empty}: empty text" in err and "Traceback" not in err
    assert main(base + ["--text", "red cat " * 20]) == 2
    assert "too long" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="unknown"):
        assert main(base + ["--text", "red ©at", "--samples", "2"]) == 0
    assert main(base + ["--text", "red cat", "--beam", "0"]) == 2


@pytest.mark.parametrize("text_source", [False, True])
def test_cli_image_text_tasks_train_and_translate(tmp_path, text_source: bool, capsys) -> None:
    data = write_image_text(tmp_path / "data", text_source)
    run = tmp_path / "run"
    task = "text2emoji" if text_source else "emoji2text"
    args = ["train", "--task", task, "--data", str(data), "--out", str(run), "--no-progress"]
    assert main(args + TEXT_ARGS + ["--set", "train.steps=3", "--set", "train.sample_every=3"]) == 0
    sample = next((run / "samples").iterdir())
    assert sample.suffix == (".png" if text_source else ".txt")
    out = tmp_path / "out"
    if text_source:
        assert (
            main(
                [
                    "translate",
                    "--checkpoint",
                    str(run),
                    "--text",
                    "red square",
                    "--samples",
                    "3",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        assert len(list(out.glob("text0_z*.png"))) == 3
    else:
        from PIL import Image

        img = tmp_path / "sq.png"
        Image.new("RGB", (16, 16), (200, 20, 20)).save(img)
        assert (
            main(
                [
                    "translate",
                    "--checkpoint",
                    str(run),
                    "--input",
                    str(img),
                    "--out",
                    str(out),
                    "--samples",
                    "2",
                ]
            )
            == 0
        )
        assert len(list(out.glob("sq_z*.txt"))) == 2
        metrics = tmp_path / "m.json"
        assert (
            main(["evaluate", "--checkpoint", str(run), "--data", str(data), "--out", str(metrics)])
            == 0
        )
        assert "bleu1" in json.loads(metrics.read_text())


@pytest.mark.parametrize(
    ("texts", "random_codes", "noted"),
    [
        (["le chat", "le chat", "le chat"], True, True),
        (["le chat", "un chat", "le chat"], True, False),  # the code changes an output
        (["le chat", "le chat"], False, False),  # references chose these, not random codes
        (["le chat"], True, False),  # one sample
    ],
)
def test_translate_says_when_every_random_code_gives_the_same_text(
    tmp_path, capsys, texts: list[str], random_codes: bool, noted: bool
) -> None:
    """A model whose text outputs ignore e (en2fr's `full`: code_dependence 0) writes N equal
    files for --samples N; translate says so rather than leave the user to diff them."""
    from types import SimpleNamespace

    from m3dgan.cli import _report

    written = []
    for k, text in enumerate(texts):
        (tmp_path / f"text0_z{k}.txt").write_text(text + "\n")
        written.append(tmp_path / f"text0_z{k}.txt")
    target = SimpleNamespace(describe_output=lambda p: TextModality.describe_output(None, p))
    _report(SimpleNamespace(target=target), "'red cat'", written, random_codes)
    printed = capsys.readouterr().out
    assert printed.count("le chat") == texts.count("le chat")
    assert ("random codes gave the same output" in printed) == noted
