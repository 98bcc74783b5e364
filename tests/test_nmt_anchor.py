"""bench/nmt_anchor.py's own parts that need neither the toolkit nor data: the anchor is scored on
the distinct test sources with the reference lists our evaluator builds, a checkpoint cut short
is not taken, and the last reported step is read from the latest training session's log."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
nmt_anchor = pytest.importorskip("nmt_anchor")
peer = pytest.importorskip("peer")
pytest.importorskip("sacrebleu")


def _test_split() -> dict:
    # rows 0 and 2 share a source: one hypothesis, scored against both rows' references
    return {
        "label": [0, 0, 0],
        "source_text": ["the cat", "a dog", "the cat"],
        "target_text": ["le chat", "un chien", "la chatte"],
        "source": ["the cat", "a dog", "the cat"],
        "references": [["le chat"], ["un chien"], ["la chatte", "le chat"]],
    }


def test_scores_distinct_sources_against_the_union_of_references() -> None:
    scored = nmt_anchor.score_outputs(_test_split(), ["la chatte", "un chien"])
    assert scored["decoded"] == 2
    assert scored["examples"][0]["references"] == ["le chat", "la chatte"]
    assert scored["bleu1"] == pytest.approx(100.0)
    assert scored["chrf"] == pytest.approx(100.0)
    first_only = nmt_anchor.score_outputs(_test_split(), ["le chat"])
    assert first_only["decoded"] == 1
    with pytest.raises(SystemExit):
        nmt_anchor.score_outputs(_test_split(), ["a", "b", "c"])  # only 2 distinct sources


def test_a_checkpoint_cut_short_is_not_intact(tmp_path: Path) -> None:
    whole = tmp_path / "model_step_100.pt"
    with zipfile.ZipFile(whole, "w") as archive:
        archive.writestr("archive/data.pkl", b"x" * 1000)
    cut = tmp_path / "model_step_200.pt"
    cut.write_bytes(whole.read_bytes()[:500])
    assert peer.intact(whole)
    assert not peer.intact(cut)
    assert [s for s, _ in peer.checkpoints(tmp_path, nmt_anchor.CHECKPOINTS)] == [100, 200]
    assert peer.last_intact(tmp_path, nmt_anchor.CHECKPOINTS) == (100, whole)


def test_last_logged_step_is_from_the_latest_session(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text(
        "$ onmt_train -config a\n[x INFO] Step 450/100000000; acc: 1\n"
        "$ onmt_train -config a\n[x INFO] Step 50/100000000; acc: 1\n[x INFO] Saving\n"
    )
    assert nmt_anchor._last_logged_step(log) == 50
