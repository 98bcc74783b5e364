"""bench/harness.py's report: rows measured in run folders that a fresh checkout lacks (run
folders are not committed) survive a report rebuilt after new runs finish in the same folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
harness = pytest.importorskip("harness")

VARIANTS = {"en2fr": [("full", "full", []), ("mle", "mle", [])]}


def _finish(out: Path, task: str, name: str, bleu4: float) -> None:
    folder = harness.run_dir(out, task, name)
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"task": task, "bleu4": bleu4, "step": 10}))
    (folder / "train_stats.json").write_text(json.dumps({"seconds": 60.0, "images": 320}))
    (folder / "config.yaml").write_text("train:\n  steps: 10\n  batch_size: 32\n")


def test_a_committed_row_whose_run_folder_is_absent_is_kept(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(
        json.dumps([{"task": "en2fr", "variant": "full", "bleu4": 25.8}])
    )
    _finish(tmp_path, "en2fr", "mle", 28.2)
    rows = harness.collect(tmp_path, VARIANTS)
    assert [(r["variant"], r["bleu4"]) for r in rows] == [("full", 25.8), ("mle", 28.2)]


def test_a_run_folder_present_wins_over_the_committed_row(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(
        json.dumps([{"task": "en2fr", "variant": "full", "bleu4": 25.8}])
    )
    _finish(tmp_path, "en2fr", "full", 30.0)
    rows = harness.collect(tmp_path, VARIANTS)
    assert [(r["variant"], r["bleu4"]) for r in rows] == [("full", 30.0)]
    unfinished = harness.run_dir(tmp_path, "en2fr", "full")
    (unfinished / "metrics.json").unlink()  # a rerun under way: no row until it is scored
    assert harness.collect(tmp_path, VARIANTS) == []


def test_variants_option_keeps_names_that_hold_commas() -> None:
    """``--variants`` is a comma list, and some names hold a comma; the emoji2text plain
    CNN-RNN job once failed because its name was split in two."""
    known = {"full", "full, global source", "mle (CNN-RNN)", "mle (CNN-RNN, no attention)"}
    assert harness.chosen_variants(None, known) is None
    assert harness.chosen_variants("full", known) == {"full"}
    assert harness.chosen_variants("full, global source", known) == {"full, global source"}
    assert harness.chosen_variants("full,full, global source,mle (CNN-RNN)", known) == {
        "full",
        "full, global source",
        "mle (CNN-RNN)",
    }
    assert harness.chosen_variants("mle (CNN-RNN, no attention),full", known) == {
        "mle (CNN-RNN, no attention)",
        "full",
    }
    # an unknown name stays whole where it can, for the caller's error
    assert harness.chosen_variants("full,nope", known) == {"full", "nope"}


def test_speech_goals_reads_committed_rows_without_run_folders(tmp_path: Path) -> None:
    """A fresh checkout has the goal rows' results.json but no runs/: the table keeps them."""
    speech_goals = pytest.importorskip("speech_goals")
    asr = tmp_path / f"asr-{speech_goals.ASR_MINUTES}min"
    asr.mkdir()
    (asr / "results.json").write_text(
        json.dumps([{"task": "asr", "variant": "full", "wer": 0.14, "cer": 0.051}])
    )
    tts = tmp_path / f"tts-{speech_goals.TTS_MINUTES}min"
    tts.mkdir()
    (tts / "results.json").write_text(
        json.dumps([{"task": "tts", "variant": "full", "wer_tts_ref": 0.52, "wer_real": 0.307}])
    )
    md, numbers = speech_goals.goals(tmp_path)
    assert numbers["asr"]["wer"] == 0.14
    assert "14.0% / 5.1%" in md
    assert "| 52.0% |" in md
    assert "real test audio" in md and "`full` 30.7%" in md  # which judge heard the row
