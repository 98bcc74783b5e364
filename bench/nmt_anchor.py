"""The outside anchor for en2fr: OpenNMT-py's attentional RNN encoder-decoder, trained on our
built-in en2fr data for a fixed wall-clock budget and scored by OUR metrics.

What it measures: how far a well-known NMT toolkit, at the sizes of our full-width text models
(``bench/text_tasks.py --full-width``, what ``bench/text_goals.py`` runs), gets on the same training
pairs in ``--minutes`` of wall-clock with ``--threads`` intra-op threads, as corpus BLEU-1 / BLEU-4
and chrF (``m3dgan.metrics.bleu``) on every distinct test source against the same reference lists
our evaluator uses (``m3dgan.evaluate.text.decode_test``: a source's references are those of all
test rows with that source, plus their targets, deduplicated in order). Greedy decoding (beam 1, our
benchmark's setting) and beam 5. The toolkit runs in its own venv outside the repo; this script runs
in ours, and m3dgan never imports the toolkit.

    PYTHONPATH=$PWD .venv/bin/python bench/nmt_anchor.py --setup   # the toolkit venv (once)
    PYTHONPATH=$PWD .venv/bin/python bench/nmt_anchor.py --minutes 30 --threads 2
        # -> bench/results/nmt_anchor (the defaults); the whole test set, greedy and beam 5
    PYTHONPATH=$PWD .venv/bin/python bench/nmt_anchor.py --report-only
    # a smoke test: 1 minute, 1 thread, the first 100 distinct sources only
    PYTHONPATH=$PWD .venv/bin/python bench/nmt_anchor.py --minutes 1 --threads 1 --inputs 100 \
        --out /tmp/nmt-smoke

A run killed mid-way is rerun with the same command: finished stages (data, vocabulary, training,
each decoding) are kept; a training that did not finish starts again from scratch, so the budget
stays one uninterrupted session.

Why OpenNMT-py 3.5.1 (the latest release), and how: it declares ``torch<2.3,>=2.1``, and the only
CPU torch wheel here is 2.13.0 (PyPI serves torch 2.1-2.2 for Linux as CUDA builds only: a plain
``pip install opennmt-py==3.5.1`` replaces the CPU torch with torch 2.2.2 and the nvidia-* CUDA
wheels). So the venv gets torch==2.13.0+cpu first (pinned by a constraints file for every later
install, and checked), then ``opennmt-py`` with ``--no-deps`` and only the declared dependencies
that its ``onmt_build_vocab`` / ``onmt_train`` / ``onmt_translate`` import (configargparse, pyyaml,
sacrebleu, numpy, pyonmttok, spacy, pyahocorasick, rapidfuzz, fasttext-wheel: ``onmt.transforms``
imports every transform module at start-up), plus six. Left out: ctranslate2 (an optional import,
for an LM prior), tensorboard (its logging), flask and waitress (its server). One incompatibility
with torch >= 2.6 remains: ``torch.load`` defaults to ``weights_only=True`` and OpenNMT-py 3.5.1's
checkpoints hold an ``argparse.Namespace``, so loading one fails with "Weights only load failed ...
Unsupported global: GLOBAL argparse.Namespace was not an allowed global by default". The toolkit's
processes therefore run with ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (torch's own switch; the
checkpoints are the ones this script just made). Its successor eole (which accepts torch 2.13) was
not needed.

Data: the train split (every pair), pre-tokenized into pieces with the data set's own
``spm.model`` (after m3dgan's text normalisation), so the anchor sees the same subwords as our
models; vocabularies by ``onmt_build_vocab`` over those pieces (one per side, as our models have);
no validation set. Decoded pieces are joined back with the same ``spm.model``.

Model and training (OpenNMT-py's RNN defaults, ``onmt/opts.py``, unless said): ``encoder_type brnn``
(bidirectional, like our encoders; default ``rnn``), ``rnn_type LSTM``, ``layers 2``,
``global_attention general`` (Luong), ``input_feed 1``, ``dropout 0.3``, ``max_grad_norm 5``,
``param_init 0.1``; the sizes of our full-width text models: ``word_vec_size 128`` (our
``model.text_embed``), ``hidden_size 256`` (default 500; with ``brnn`` 128 units per direction, as
our ``model.text_gru``, and a 256-unit decoder, as our ``model.decoder_rnn``); ``optim adam`` with
``learning_rate 0.001`` (the opts help's recommended Adam rate; default sgd 1.0), no decay;
``batch_size 32``, ``batch_type sents``; ``seed`` 0; ``num_workers 0`` (no loader processes beside
the ``--threads`` budget; default 2); ``bucket_size 32768`` (default 262144 would read the
27.8k-pair corpus ~9 times before the first step). ``train_steps`` is huge: the process is stopped
(SIGTERM) at the budget and the last intact checkpoint (one every ``--save-every`` steps) is
evaluated. ``minutes`` is the wall-clock from launching ``onmt_train`` to writing that checkpoint;
``steps`` its step.

Decoding: ``onmt_translate`` with ``max_length`` = the longest training target in pieces + 1 (our
decoders' limit), ``length_penalty avg`` (default; our beam also divides by the length).
Greedy needs ``-random_sampling_topk 1``: with ``beam_size 1`` OpenNMT-py samples from the full
distribution by default (topk 0, temperature 1).

Outputs in ``--out``: ``data/`` (pieces, vocabularies), ``runs/opennmt-py/`` (config,
checkpoints, ``train.json``, hypotheses, ``scores.*.json``), ``logs/``, ``results.json``,
``results.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

import harness
import peer

from m3dgan.data import store
from m3dgan.data.build import task_dataset_root
from m3dgan.evaluate.text import _groups, decode_test
from m3dgan.metrics.bleu import corpus_bleu, corpus_chrf
from m3dgan.modalities.text.vocab import SubwordVocabulary, normalize

TOOLKIT, VERSION = "opennmt-py", "3.5.1"
# OpenNMT-py 3.5.1 checkpoints hold an argparse.Namespace: torch >= 2.6 refuses them by default
VENV = peer.ToolkitVenv(TOOLKIT, {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
CHECKPOINTS = "model_step_*.pt"
DEPS = [  # what onmt_build_vocab / onmt_train / onmt_translate import (see the docstring)
    "numpy==2.4.6",
    "configargparse==1.9.0",
    "pyyaml==6.0.4",
    "sacrebleu==2.6.0",
    "six==1.17.0",
    "pyonmttok==1.38.1",
    "spacy==3.8.18",
    "pyahocorasick==2.3.1",
    "rapidfuzz==3.14.6",
    "fasttext-wheel==0.9.2",
]
MODEL = {  # see the docstring for each setting's source
    "encoder_type": "brnn",
    "decoder_type": "rnn",
    "rnn_type": "LSTM",
    "layers": 2,
    "word_vec_size": 128,
    "hidden_size": 256,
    "global_attention": "general",
    "input_feed": 1,
    "dropout": 0.3,
    "max_grad_norm": 5,
    "param_init": 0.1,
    "optim": "adam",
    "learning_rate": 0.001,
    "batch_size": 32,
    "batch_type": "sents",
    "num_workers": 0,
    "bucket_size": 32768,
    "seed": 0,
}
BEAMS = {1: "greedy", 5: "beam 5"}
COLUMNS = [
    ("toolkit", "toolkit", "{}"),
    ("version", "version", "{}"),
    ("decoding", "decoding", "{}"),
    ("minutes", "minutes", "{:.1f}"),
    ("steps", "steps", "{}"),
    ("threads", "threads", "{}"),
    ("decoded", "sources", "{}"),
    ("bleu1", "BLEU-1", "{:.1f}"),
    ("bleu4", "BLEU-4", "{:.1f}"),
    ("chrf", "chrF", "{:.1f}"),
]


def setup(log: Path) -> None:
    """The toolkit's venv (idempotent): CPU torch pinned first, then the toolkit without deps."""
    if VENV.complete and (VENV.path / "bin" / "onmt_train").is_file():
        VENV.check_torch()
        print(f"{TOOLKIT} venv ready: {VENV.path} (torch {peer.TORCH})", flush=True)
        return
    pip = VENV.create(log)
    print(f"  pip install --no-deps {TOOLKIT}=={VERSION}", flush=True)
    harness.run(pip + ["--no-deps", f"{TOOLKIT}=={VERSION}"], log)
    print(f"  pip install {' '.join(DEPS)}", flush=True)
    harness.run(pip + DEPS, log)
    VENV.check_torch()
    harness.run([str(VENV.path / "bin" / "onmt_train"), "-h"], log, env=VENV.env(1))
    VENV.finish(f"{TOOLKIT}=={VERSION} torch=={peer.TORCH}")


def test_split() -> dict:
    """The en2fr test split as our evaluator reads its text: strings under ``<side>_text``."""
    test = store.load_split(task_dataset_root("en2fr"), "test")
    test["source_text"], test["target_text"] = list(test["source"]), list(test["target"])
    return test


def prepare(data: Path) -> dict:
    """Train pairs and the distinct test sources as pieces of our spm.model; vocabularies."""
    root = task_dataset_root("en2fr")
    info_path = data / "data.json"
    if info_path.is_file():
        return json.loads(info_path.read_text())
    data.mkdir(parents=True, exist_ok=True)
    sp = SubwordVocabulary.from_file(store.tokenizer_path(root)).sp
    pieces = lambda text: " ".join(sp.EncodeAsPieces(normalize(text)))  # noqa: E731
    train = store.load_split(root, "train")
    longest = 0
    for side, suffix in (("source", "src"), ("target", "tgt")):
        lines = [pieces(t) for t in train[side]]
        (data / f"train.{suffix}").write_text("".join(line + "\n" for line in lines))
        if side == "target":
            longest = max(len(line.split()) for line in lines)
    sources = list(_groups(test_split(), "text"))  # decode_test's order
    (data / "test.src").write_text("".join(pieces(s) + "\n" for s in sources))
    info = {"train_pairs": len(train["source"]), "test_sources": len(sources)}
    info["max_length"] = longest + 1  # our decoders' limit: longest training target + end mark
    info_path.write_text(json.dumps(info, indent=1))
    return info


def build_vocab(data: Path, log: Path) -> None:
    if (data / "vocab.tgt").is_file():
        return
    cfg = data / "vocab.yaml"
    cfg.write_text(json.dumps(_data_config(data), indent=1))  # JSON is YAML
    cmd = [str(VENV.path / "bin" / "onmt_build_vocab"), "-config", str(cfg), "-n_sample", "-1"]
    harness.run(cmd, log, env=VENV.env(1))


def _data_config(data: Path) -> dict:
    return {
        "save_data": str(data / "samples"),
        "src_vocab": str(data / "vocab.src"),
        "tgt_vocab": str(data / "vocab.tgt"),
        "overwrite": True,
        "data": {
            "corpus_1": {"path_src": str(data / "train.src"), "path_tgt": str(data / "train.tgt")}
        },
    }


def _last_logged_step(log: Path) -> int:
    """The last step onmt_train reported in ``log`` (its latest session: after the last ``$``)."""
    step = 0
    for line in log.read_text(errors="replace").split("\n$ ")[-1].splitlines():
        if " Step " in line and "/" in line:
            try:
                step = int(line.split(" Step ", 1)[1].split("/", 1)[0])
            except ValueError:
                continue
    return step


def train(args, data: Path, run: Path) -> dict:
    stats_path = run / "train.json"
    stats = peer.trained_before(run, stats_path, args.minutes, args.threads)
    if stats is not None:
        return stats
    cfg = {**_data_config(data), **MODEL}
    cfg.update(
        save_model=str(run / "model"),
        train_steps=100_000_000,
        save_checkpoint_steps=args.save_every,
        keep_checkpoint=3,
        report_every=50,
        valid_steps=100_000_000,
        gpu_ranks=[],
    )
    (run / "config.yaml").write_text(json.dumps(cfg, indent=1))
    log = args.out / "logs" / "train.log"
    cmd = [str(VENV.path / "bin" / "onmt_train"), "-config", str(run / "config.yaml")]
    print(f"training {TOOLKIT} for {args.minutes} min, {args.threads} threads", flush=True)
    start, stopped, _ = peer.train_for(cmd, args.minutes * 60, VENV.env(args.threads), log)
    last = peer.last_intact(run, CHECKPOINTS)
    if last is None:
        raise SystemExit(f"no checkpoint within {args.minutes} min; lower --save-every ({log})")
    step, path = last
    stats = {
        "steps": step,
        "checkpoint": path.name,
        "minutes": (path.stat().st_mtime - start) / 60,
        "budget_minutes": args.minutes,
        "process_minutes": (stopped - start) / 60,
        "last_logged_step": _last_logged_step(log),
        "threads": args.threads,
        "save_every": args.save_every,
        "batch_size": MODEL["batch_size"],
        "torch": VENV.torch_version(),
    }
    stats["steps_per_s"] = step / max(stats["minutes"] * 60, 1e-9)
    stats_path.write_text(json.dumps(stats, indent=1))
    return stats


def translate(args, data: Path, run: Path, info: dict, stats: dict, beam: int) -> Path:
    suffix = f".first{args.inputs}" if args.inputs else ""
    hyps = run / f"hyp.beam{beam}{suffix}.txt"
    if hyps.is_file():
        return hyps
    src = data / "test.src"
    if args.inputs:
        lines = src.read_text().splitlines(keepends=True)[: args.inputs]
        src = run / f"test{suffix}.src"
        src.write_text("".join(lines))
    partial = hyps.with_suffix(".part")
    cmd = [str(VENV.path / "bin" / "onmt_translate"), "-model", str(run / stats["checkpoint"])]
    cmd += ["-src", str(src), "-output", str(partial), "-gpu", "-1", "-seed", "0"]
    cmd += ["-beam_size", str(beam), "-batch_size", "32", "-max_length", str(info["max_length"])]
    if beam == 1:
        cmd += ["-random_sampling_topk", "1"]  # argmax; topk 0 would sample
    t0 = time.time()
    harness.run(cmd, args.out / "logs" / f"translate-beam{beam}.log", env=VENV.env(args.threads))
    partial.replace(hyps)
    (run / f"translate.beam{beam}{suffix}.json").write_text(
        json.dumps({"seconds": time.time() - t0, "threads": args.threads})
    )
    return hyps


class _Hypotheses:
    """Stands in for ``m3dgan.evaluate.generate.Outputs`` in ``decode_test``: the toolkit's
    (already decoded) output for each source string."""

    def __init__(self, by_source: dict[str, str]) -> None:
        self.tr = SimpleNamespace(source_spec=SimpleNamespace(kind="text"))
        self.by_source = by_source

    def texts(self, column, rows, size, references=None) -> list[str]:
        return [self.by_source[column[i]] for i in rows]


def score_outputs(test: dict, outputs: list[str]) -> dict:
    """BLEU-1/4 and chrF of ``outputs`` (one per distinct test source, in ``_groups`` order, the
    first ``len(outputs)`` of them) against the reference lists ``decode_test`` gives."""
    sources = list(_groups(test, "text"))[: len(outputs)]
    if len(sources) != len(outputs):
        raise SystemExit(f"{len(outputs)} outputs for {len(sources)} distinct test sources")
    adapter = _Hypotheses(dict(zip(sources, outputs, strict=True)))
    hyps, refs, _ = decode_test(adapter, test, inputs=len(outputs))
    bleu = corpus_bleu(hyps, refs, tokenize="13a")
    return {
        "decoded": len(hyps),
        "bleu1": bleu.bleu1,
        "bleu4": bleu.bleu4,
        "chrf": corpus_chrf(hyps, refs),
        "bleu_signature": bleu.signature,
        "bleu_brevity_penalty": bleu.brevity_penalty,
        "bleu_precisions": list(bleu.precisions),
        "examples": [
            {"source": s, "output": h, "references": r[:3]}
            for s, h, r in list(zip(sources, hyps, refs, strict=True))[:10]
        ],
    }


def score(run: Path, hyps_path: Path, stats: dict, beam: int) -> dict:
    out = run / f"scores.{hyps_path.stem.removeprefix('hyp.')}.json"
    if out.is_file():
        return json.loads(out.read_text())
    sp = SubwordVocabulary.from_file(store.tokenizer_path(task_dataset_root("en2fr"))).sp
    outputs = [sp.DecodePieces(line.split()) for line in hyps_path.read_text().splitlines()]
    result = {
        "toolkit": TOOLKIT,
        "version": VERSION,
        "torch": stats.get("torch"),
        "decoding": BEAMS[beam],
        "beam": beam,
        "minutes": stats["minutes"],
        "steps": stats["steps"],
        "threads": stats["threads"],
        "batch_size": stats["batch_size"],
        **score_outputs(test_split(), outputs),
    }
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    return result


def write_report(out: Path) -> str:
    run = out / "runs" / TOOLKIT
    results = [json.loads(p.read_text()) for p in sorted(run.glob("scores.*.json"))]
    if not results:
        return "no finished runs"
    results.sort(key=lambda r: (-r["decoded"], r["beam"]))
    md = harness.markdown_table(results, COLUMNS)
    meta = (
        f"en2fr test, distinct sources, all their references; BLEU (sacreBLEU 13a) and chrF by "
        f"m3dgan.metrics.bleu; torch {results[0].get('torch')}; minutes = onmt_train launch to the "
        f"evaluated checkpoint; model: {json.dumps(MODEL)}"
    )
    return harness.save_report(out, results, md, meta)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    peer.add_budget_arguments(
        p, "bench/results/nmt_anchor", 100, "decode only the first N distinct sources"
    )
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.setup:
        setup(args.out / "logs" / "setup.log")
        return
    if not args.report_only:
        started = time.time()
        setup(args.out / "logs" / "setup.log")
        data, run = args.out / "data", args.out / "runs" / TOOLKIT
        info = prepare(data)
        build_vocab(data, args.out / "logs" / "vocab.log")
        print(f"[{time.time() - started:6.0f}s] data ready: {info}", flush=True)
        stats = train(args, data, run)
        print(
            f"[{time.time() - started:6.0f}s] trained: {stats['steps']} steps in "
            f"{stats['minutes']:.1f} min",
            flush=True,
        )
        for beam in BEAMS:
            hyps = translate(args, data, run, info, stats, beam)
            score(run, hyps, stats, beam)
            print(f"[{time.time() - started:6.0f}s] {BEAMS[beam]} decoded and scored", flush=True)
    print(write_report(args.out))


if __name__ == "__main__":
    main()
