"""``m3dgan evaluate`` end to end on a tiny run: metrics exist, lie in range, repeat with the
seed, and move with the model (a generator without z has exactly zero diversity; one with z
does not); every metric a task names has its function."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_OVERRIDES, set_args, write_synthetic_dataset

from m3dgan.cli import main
from m3dgan.data.store import load_split, read_manifest, write_dataset
from m3dgan.errors import ConfigError
from m3dgan.evaluate import METRICS, evaluate, metric_functions
from m3dgan.tasks import TASKS

pytestmark = pytest.mark.usefixtures("isolated_env")


def _train(tmp_path: Path, data: Path, task: str, objective: str) -> Path:
    run = tmp_path / f"{task}-{objective}"
    args = [
        "train",
        "--task",
        task,
        "--objective",
        objective,
        "--out",
        str(run),
        "--steps",
        "2",
        "--data",
        str(data),
        "--no-progress",
        *set_args(TINY_OVERRIDES),
    ]
    assert main(args) == 0
    return run


def test_reference_and_diversity_metrics(tmp_path: Path, tiny_data: Path) -> None:
    run = _train(tmp_path, tiny_data, "edges2emoji", "full")
    metrics = evaluate(run, inputs=4, samples=3, data_root=tiny_data, progress=False)
    assert metrics["objective"] == "full" and metrics["step"] == 2
    assert metrics["distance"].startswith("judge-features")
    assert metrics["diversity_z"] > 0  # random z changes the output of a FiLM-conditioned G
    assert metrics["diversity_ref"] > 0
    assert metrics["diversity_real"] > 0
    for key in (
        "reference_accuracy",
        "reference_accuracy_swap",
        "reference_judge_real",
        "reference_accuracy_dim",
        "reference_accuracy_bright",
    ):
        assert 0.0 <= metrics[key] <= 1.0
    # the judge separates the two synthetic domains on real targets
    assert metrics["reference_judge_real"] >= 0.9
    # the ground truth as its own reference: an L1 in pixel units, above 0 for a 2-step model
    assert 0.0 < metrics["reconstruction_l1"] <= 1.0
    assert "reference_identity" not in metrics  # no identity judge for a synthetic data set
    # every random draw comes from the seed (the judge is cached now)
    assert evaluate(run, inputs=4, samples=3, data_root=tiny_data, progress=False) == metrics
    # the page: drawn after the metrics from its own generator, so the numbers do not move
    paged = evaluate(
        run, inputs=4, samples=3, data_root=tiny_data, progress=False, page_dir=tmp_path / "page"
    )
    assert paged.pop("page") == str(tmp_path / "page" / "index.html") and paged == metrics
    page = (tmp_path / "page" / "index.html").read_text()
    assert "reference_accuracy" in page  # the metrics at the top
    # the goals' ratio, and what the grid is a view of (4 codes and 2 references here)
    ratio = metrics["diversity_z"] / metrics["diversity_real"]
    assert f"diversity_z / diversity_real</td><td>{ratio:.4g}<" in page
    assert "4 output column(s) without a reference and 2 reference(s)" in page
    assert "reference: dim" in page and "reference: bright" in page  # a reference per domain
    names = sorted(p.name for p in (tmp_path / "page").glob("input*.png"))
    assert names[:6] == ["input0_ref0.png", "input0_ref1.png", *(f"input0_z{k}.png" for k in range(4))]
    assert all(f'src="{name}"' in page for name in names)


def _two_class_data(root: Path) -> Path:
    """The synthetic set with its domain copied into ``label``, so a class judge has 2 classes."""
    manifest = read_manifest(write_synthetic_dataset(root))
    splits = {}
    for split in ("train", "test"):
        tensors = load_split(root, split)
        tensors["label"] = tensors["domain"].clone()
        splits[split] = tensors
    manifest.classes = ["dim", "bright"]
    return write_dataset(root, manifest, splits)


def test_pix2pix_has_no_diversity_and_cli_writes_json(tmp_path: Path, capsys) -> None:
    data = _two_class_data(tmp_path / "two_class")
    run = _train(tmp_path, data, "digits", "pix2pix")
    out = tmp_path / "metrics.json"
    code = main(
        [
            "evaluate",
            "--checkpoint",
            str(run),
            "--out",
            str(out),
            "--inputs",
            "4",
            "--samples",
            "3",
            "--data",
            str(data),
        ]
    )
    assert code == 0
    metrics = json.loads(out.read_text())
    assert metrics["diversity_z"] == 0.0  # no z: every sample of one input is identical
    assert "diversity_ref" not in metrics  # no reference encoder to use
    assert 0.0 <= metrics["realism"] <= 1.0 and 0.0 <= metrics["realism_real"] <= 1.0
    # no code: one output column on the page beside the metrics JSON
    assert metrics["page"] == str(tmp_path / "metrics_page" / "index.html")
    said = capsys.readouterr().out.splitlines()  # where to look, as the last lines
    assert said[-2:] == [f"metrics: {out}", f"page: {metrics['page']}  (open it in a browser)"]
    assert sorted(p.name for p in (tmp_path / "metrics_page").glob("input0_*")) == ["input0_out.png"]


def test_every_metric_a_task_names_has_a_function() -> None:
    for task in TASKS.values():
        assert metric_functions(task.metrics) == [METRICS[name] for name in task.metrics]


def test_an_unknown_metric_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown metric 'fid' \(.*realism, diversity"):
        metric_functions(["realism", "fid"])


def test_evaluate_missing_run_is_a_clean_error(tmp_path: Path, capsys) -> None:
    code = main(
        ["evaluate", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "m.json")]
    )
    assert code == 2
    assert "error:" in capsys.readouterr().err
