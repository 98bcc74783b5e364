"""What one training example is made of (``m3dgan.data.pairing``): the paper's R = T, a reference
of the target's domain with other content, and sources drawn from another domain."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import SIZE, TINY_OVERRIDES, set_args, synthetic_split

from m3dgan.cli import main
from m3dgan.data.pairing import TrainingPairs
from m3dgan.data.store import Manifest, write_dataset
from m3dgan.errors import ConfigError

pytestmark = pytest.mark.usefixtures("isolated_env")

# 6 emoji-like items (labels 0..5), each drawn by two vendors (domains 0 and 1): 12 rows
LABELS = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5])
DOMAINS = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
BATCH = torch.tensor([0, 3, 5, 6, 8, 11, 2, 9])


def test_paper_setting_is_the_batch_itself() -> None:
    rows = TrainingPairs(LABELS, DOMAINS).draw(BATCH, seed=0, step=3)
    assert torch.equal(rows.source, BATCH) and torch.equal(rows.reference, BATCH)
    assert rows.reference_is_target


def test_domain_reference_shares_the_domain_not_the_content() -> None:
    pairs = TrainingPairs(LABELS, DOMAINS, domain_reference=1.0)
    seen = set()
    for step in range(20):
        rows = pairs.draw(BATCH, seed=0, step=step)
        assert torch.equal(rows.source, BATCH) and torch.equal(rows.target, BATCH)
        assert torch.equal(DOMAINS[rows.reference], DOMAINS[BATCH])
        assert (LABELS[rows.reference] != LABELS[BATCH]).all()
        assert not rows.reference_is_target
        seen.update(rows.reference.tolist())
    assert len(seen) == len(LABELS)  # every row serves as a reference sometime
    # a pure function of (seed, step): a resumed run draws what an uninterrupted one drew
    again = pairs.draw(BATCH, seed=0, step=7)
    assert torch.equal(again.reference, pairs.draw(BATCH, seed=0, step=7).reference)
    assert not torch.equal(again.reference, pairs.draw(BATCH, seed=1, step=7).reference)


def test_unlabelled_rows_get_another_row_of_their_domain() -> None:
    # sentences (en2fr): no content labels, three source materials as domains
    labels = torch.full((12,), -1)
    domains = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    pairs = TrainingPairs(labels, domains, domain_reference=1.0)
    batch = torch.arange(12)
    for step in range(30):
        rows = pairs.draw(batch, seed=0, step=step)
        assert torch.equal(domains[rows.reference], domains[batch])
        assert (rows.reference != batch).all()  # never the target itself


def test_cross_domain_sources_show_the_same_content_in_another_domain() -> None:
    always = TrainingPairs(LABELS, DOMAINS, cross_domain=1.0).draw(BATCH, seed=0, step=0)
    assert torch.equal(LABELS[always.source], LABELS[BATCH])
    assert (DOMAINS[always.source] != DOMAINS[BATCH]).all()
    assert torch.equal(always.reference, BATCH)  # R = T unless asked otherwise
    half = TrainingPairs(LABELS, DOMAINS, cross_domain=0.5)
    swapped = torch.cat([(half.draw(BATCH, 0, s).source != BATCH) for s in range(200)]).float()
    assert 0.4 < swapped.mean() < 0.6


def test_rows_without_a_partner_keep_their_source() -> None:
    labels = torch.tensor([0, 1, 0, 7])  # emoji 7 exists in one domain only
    domains = torch.tensor([0, 0, 1, 1])
    rows = TrainingPairs(labels, domains, cross_domain=1.0).draw(torch.arange(4), 0, 0)
    assert rows.source.tolist() == [2, 1, 0, 3]


def test_partial_domain_reference_mixes_the_paper_setting_in() -> None:
    pairs = TrainingPairs(LABELS, DOMAINS, domain_reference=0.25)
    same = torch.cat([pairs.draw(BATCH, 0, s).reference == BATCH for s in range(200)]).float()
    assert 0.68 < same.mean() < 0.82  # R = T three times in four


def test_global_batch_shares_are_strided_like_the_batch() -> None:
    rows = TrainingPairs(LABELS, DOMAINS, domain_reference=1.0).draw(BATCH, 0, 0)
    share = rows.share(1, 2)
    assert torch.equal(share.target, BATCH[1::2])
    assert torch.equal(share.reference, rows.reference[1::2])


def test_data_without_domain_labels_is_one_domain_for_the_reference() -> None:
    """No domain labels at all (a user's parallel text): R is another row of the whole split,
    never T itself."""
    no_domain = torch.full((6,), -1)
    pairs = TrainingPairs(torch.full((6,), -1), no_domain, domain_reference=1.0)
    assert pairs.one_domain
    target = torch.arange(6).repeat(5)
    rows = pairs.draw(target, 0, 3)
    assert bool((rows.reference != rows.target).all())
    assert set(rows.reference.tolist()) == set(range(6))  # drawn from every row
    assert not TrainingPairs(LABELS[:6], torch.zeros(6, dtype=torch.int64)).one_domain


def test_switches_refuse_data_without_the_labels_they_need() -> None:
    some_domains = torch.tensor([0, 0, 1, -1, 1, 0])
    with pytest.raises(ConfigError, match="needs a domain label.*data set 'digits' has some"):
        TrainingPairs(LABELS[:6], some_domains, domain_reference=1.0, dataset="data set 'digits'")
    one_vendor = torch.zeros(6, dtype=torch.int64)
    with pytest.raises(ConfigError, match="no content .* in more than one domain"):
        TrainingPairs(LABELS[:6], one_vendor, cross_domain=0.5)


def _data_without_domains(root: Path) -> Path:
    splits = {name: synthetic_split(8, seed) for seed, name in enumerate(("train", "test"))}
    for split in splits.values():
        split["domain"] = torch.full_like(split["domain"], -1)
    manifest = Manifest("plain", SIZE, 3, 1, classes=["square"])
    return write_dataset(root, manifest, splits)


def test_cli_trains_with_both_switches_and_refuses_bad_values(
    tmp_path: Path, tiny_data: Path, capsys: pytest.CaptureFixture
) -> None:
    plain = _data_without_domains(tmp_path / "plain")
    common = ["--steps", "2", "--no-progress", *set_args(TINY_OVERRIDES)]
    args = ["train", "--task", "edges2emoji", "--data", str(tiny_data), "--out", str(tmp_path / "a")]
    switches = ["--set", "train.domain_reference=1", "--set", "train.cross_domain=0.5"]
    assert main([*args, *common, *switches]) == 0
    assert "domain_reference: 1.0" in (tmp_path / "a" / "config.yaml").read_text()
    bad = ["train", "--task", "digits", "--data", str(plain), "--out", str(tmp_path / "b")]
    capsys.readouterr()
    assert main([*bad, *common, "--set", "train.domain_reference=0.5"]) == 0
    err = capsys.readouterr().err
    assert "'plain' has no domain labels" in err and "one domain" in err, err
    bad[-1] = str(tmp_path / "c")
    assert main([*bad, *common, "--set", "train.domain_reference=-0.1"]) == 2
    assert main([*bad, *common, "--set", "train.cross_domain=1.5"]) == 2


def test_the_encoder_reads_the_drawn_reference_in_training(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With domain_reference=1 the loop hands the step a reference that is never the target
    batch itself (GeneratorSide encodes it instead of T); with 0 it hands none (R = T)."""
    from m3dgan.core.step import GeneratorSide

    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    original = GeneratorSide.forward

    def spy(self, source, target, eps_r, e_s, reference=None, **kwargs):
        encoded = target if reference is None else reference  # what forward encodes
        seen.append((target.detach().clone(), encoded.detach().clone()))
        return original(self, source, target, eps_r, e_s, reference, **kwargs)

    monkeypatch.setattr(GeneratorSide, "forward", spy)
    common = ["--steps", "3", "--no-progress", *set_args(TINY_OVERRIDES)]
    for q, run in (("1", "domain"), ("0", "paper")):
        seen.clear()
        args = ["train", "--task", "edges2emoji", "--data", str(tiny_data), "--out", str(tmp_path / run)]
        assert main([*args, *common, "--set", f"train.domain_reference={q}"]) == 0
        assert len(seen) == 3
        same = [torch.equal(t, r) for t, r in seen]
        assert all(same) if q == "0" else not any(same)
