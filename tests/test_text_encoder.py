"""``model.text_encoder=brnn``: a text prenet's body is two stacked bidirectional GRU layers
(OpenNMT-py's ``brnn`` encoder) instead of the CBHG. Its states have the CBHG's width, a row's
states do not depend on its batch's padding, a training step trains it (source and reference
prenets), checkpoints keep the CBHG's keys, and tasks with no text side refuse it."""

from __future__ import annotations

import pytest
import torch
from test_speech_model import VOCAB, small_config, texts, train_step

from m3dgan.cli import main
from m3dgan.config import config_from_dict
from m3dgan.core.model import M3DGAN
from m3dgan.core.objectives import get_objective
from m3dgan.errors import ConfigError
from m3dgan.modalities import ModalitySpec
from m3dgan.modalities.text.nets import BiRNN, TextPrenet

TEXT = ModalitySpec("text", VOCAB, 10)
IMAGE = ModalitySpec("image", 3, 32)


def brnn_model(objective: str = "mle") -> M3DGAN:
    torch.manual_seed(0)
    return M3DGAN(TEXT, TEXT, get_objective(objective), small_config(text_encoder="brnn"))


def test_brnn_prenet_has_no_cbhg_and_the_cbhg_width():
    cfg = small_config(text_encoder="brnn")
    prenet = TextPrenet(VOCAB, cfg).eval()
    assert isinstance(prenet.brnn, BiRNN) and not hasattr(prenet, "cbhg")
    assert prenet.brnn.gru.num_layers == 2 and prenet.brnn.gru.bidirectional
    assert not any(k.startswith("cbhg.") for k in prenet.state_dict())
    feats = prenet(texts(3))
    assert feats.states.shape == (3, 8, 2 * cfg.text_gru)
    assert (feats.states[0, 6:] == 0).all()  # padding positions stay zero
    # the CBHG prenet keeps its state-dict keys (older checkpoints load)
    assert any(k.startswith("cbhg.") for k in TextPrenet(VOCAB, small_config()).state_dict())


def test_brnn_states_do_not_depend_on_the_batch_padding():
    prenet = TextPrenet(VOCAB, small_config(text_encoder="brnn")).eval()
    ids = texts(3)
    with torch.no_grad():
        alone = prenet(ids[:1, :6]).states  # row 0 has 6 real tokens
        padded = prenet(torch.cat([ids, torch.zeros(3, 4, dtype=ids.dtype)], 1)).states
    torch.testing.assert_close(padded[0, :6], alone[0], atol=1e-6, rtol=1e-5)


def test_a_full_step_trains_the_source_and_reference_brnn():
    model = brnn_model("full").train()
    source_w = model.source_prenet.brnn.gru.weight_hh_l1
    reference_w = model.reference_prenet.brnn.gru.weight_hh_l1_reverse
    before = source_w.detach().clone(), reference_w.detach().clone()
    logs = train_step(model)(texts(3), texts(3, seed=1))
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert not torch.equal(before[0], source_w) and not torch.equal(before[1], reference_w)


def test_tasks_without_a_text_side_refuse_brnn():
    cfg = config_from_dict({"task": "edges2emoji", "model": {"text_encoder": "brnn"}})
    with pytest.raises(ConfigError, match="model.text_encoder='brnn'.*no text side"):
        M3DGAN.from_config(cfg, IMAGE, IMAGE)
    with pytest.raises(ConfigError, match="text_encoder"):
        config_from_dict({"model": {"text_encoder": "lstm"}})
    text_image = config_from_dict({"task": "text2emoji", "model": {"text_encoder": "brnn"}})
    model = M3DGAN.from_config(text_image, TEXT, IMAGE)
    assert isinstance(model.source_prenet.brnn, BiRNN)


def test_train_refuses_the_switch_before_any_data_or_run_folder(tmp_path, monkeypatch, capsys):
    import m3dgan.train

    def no_data(task: str):
        raise AssertionError(f"the data set of {task} was asked for before the switch check")

    monkeypatch.setattr(m3dgan.train, "task_dataset_root", no_data)
    run = tmp_path / "run"
    code = main(
        ["train", "--task", "digits", "--set", "model.text_encoder=brnn", "--out", str(run)]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "model.text_encoder='brnn'" in err and "Traceback" not in err
    assert not run.exists()
