"""``model.domain_discriminator``: D_enc with one score map per domain (StarGAN v2's multi-task
discriminator), read at each row's domain."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import SIZE, TINY_OVERRIDES, set_args, synthetic_split, tiny_model_config

from m3dgan.cli import main
from m3dgan.core.model import M3DGAN, domain_scores
from m3dgan.core.objectives import get_objective
from m3dgan.core.step import DiscriminatorLoss
from m3dgan.data.store import Manifest, write_dataset
from m3dgan.errors import ConfigError
from m3dgan.infer import Translator
from m3dgan.modalities import ModalitySpec, modality_for

pytestmark = pytest.mark.usefixtures("isolated_env")
IMAGE_S, IMAGE_T = ModalitySpec("image", 3, SIZE), ModalitySpec("image", 1, SIZE)


def _model(**changes) -> M3DGAN:
    torch.manual_seed(0)
    cfg = tiny_model_config(domain_discriminator=True, **changes)
    return M3DGAN(IMAGE_S, IMAGE_T, get_objective("full"), cfg, domains=2)


def test_scores_are_read_at_each_rows_domain() -> None:
    scores = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(3, 2, 2, 2)
    picked = domain_scores(scores, torch.tensor([1, 0, 1]))
    assert picked.shape == (3, 1, 2, 2)
    assert torch.equal(picked[0, 0], scores[0, 1]) and torch.equal(picked[1, 0], scores[1, 0])
    assert domain_scores(scores, None) is scores


def test_d_enc_has_a_map_per_domain_and_d_rand_one() -> None:
    model = _model()
    s, t = torch.randn(4, 3, SIZE, SIZE), torch.randn(4, 1, SIZE, SIZE)
    assert model.disc_enc(s, t).shape[1] == 2 and model.disc_rand(s, t).shape[1] == 1
    plain = M3DGAN(IMAGE_S, IMAGE_T, get_objective("full"), tiny_model_config(), domains=2)
    assert plain.domain_outputs == 0 and plain.disc_enc(s, t).shape[1] == 1


def test_the_d_loss_trains_only_the_rows_domains_outputs() -> None:
    model = _model()
    s, t = torch.randn(4, 3, SIZE, SIZE), torch.randn(4, 1, SIZE, SIZE)
    fake = torch.randn(4, 1, SIZE, SIZE)
    loss = DiscriminatorLoss(model, "lsgan")(s, t, fake, None, torch.zeros(4, dtype=torch.long))
    loss.backward()
    last = model.disc_enc.net[-1]
    assert last.weight.grad[0].abs().sum() > 0  # domain 0's map learns
    assert last.weight.grad[1].abs().sum() == 0  # domain 1's map is not asked


def test_data_without_domains_and_non_image_targets_refuse_it() -> None:
    with pytest.raises(ConfigError, match="two or more domains; this one has 0"):
        M3DGAN(IMAGE_S, IMAGE_T, get_objective("full"), tiny_model_config(domain_discriminator=True))
    text = modality_for(ModalitySpec("text", 12, 6))
    with pytest.raises(ConfigError, match="text discriminators have one output"):
        text.build_discriminator(modality_for(IMAGE_S), tiny_model_config(), outputs=2)


def test_cli_trains_saves_and_translates_with_it(tmp_path: Path, tiny_data: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "--task", "edges2emoji", "--data", str(tiny_data), "--out", str(run)]
    tiny = ["--steps", "2", "--no-progress", *set_args(TINY_OVERRIDES)]
    assert main([*args, *tiny, "--set", "model.domain_discriminator=true"]) == 0
    translator = Translator.from_checkpoint(run)  # rebuilt with the data set's 2 domains
    assert translator.model.domain_outputs == 2
    splits = {name: synthetic_split(8, seed) for seed, name in enumerate(("train", "test"))}
    for split in splits.values():
        split["domain"] = torch.full_like(split["domain"], -1)
    plain = write_dataset(tmp_path / "plain", Manifest("plain", SIZE, 3, 1, classes=["sq"]), splits)
    bad = ["train", "--task", "digits", "--data", str(plain), "--out", str(tmp_path / "b")]
    assert main([*bad, *tiny, "--set", "model.domain_discriminator=true"]) == 2
