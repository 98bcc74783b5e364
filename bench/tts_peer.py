"""The outside peer for tts: Coqui TTS (``coqui-tts``, the maintained idiap fork) trained on our
built-in speech corpus for a fixed wall-clock budget and scored by OUR judges.

What it measures: how intelligible (and, when the model takes a reference, how well styled) the
speech of a well-known TTS toolkit is after ``--minutes`` of training with ``--threads`` intra-op
threads on the same training utterances our tts task sees, heard by the same judges as
``m3dgan evaluate`` (``m3dgan.evaluate.speech.tts``): the judge ASR's WER / CER
(``m3dgan.metrics.judge_asr``, trained only on real espeak audio) against the sentence, the style
classifier's accuracy against the reference's style (``m3dgan.metrics.style_classifier``), the
share of outputs that stop before the frame limit (2 x the longest training utterance, our
decoder's limit) and the output length over the real utterance's. Every distinct test sentence
is spoken in each of the 4 styles with, as reference, the next sentence's recording in that style
(``evaluate.speech.tts``'s pairing; ``--inputs N``: the first N sentences, pairing among them).
The peer's waveform (its own Griffin-Lim) becomes OUR log-mel (``m3dgan.audio.mel.wave_to_mel``,
the data set's settings) and goes to the judges; in our evaluator a model's mel goes through
mel -> Griffin-Lim -> mel, so both are heard after exactly one Griffin-Lim. The toolkit runs in
its own venv outside the repo; this script runs in ours, and m3dgan never imports the toolkit.

    PYTHONPATH=$PWD .venv/bin/python bench/tts_peer.py --setup    # the toolkit venv (once)
    PYTHONPATH=$PWD .venv/bin/python bench/tts_peer.py --minutes 30 --threads 2
        # -> bench/results/tts_peer (the defaults); every test sentence x 4 styles
    PYTHONPATH=$PWD .venv/bin/python bench/tts_peer.py --report-only
    # a smoke test: 1 minute, 1 thread, 200 training utterances, the first 4 test sentences
    PYTHONPATH=$PWD .venv/bin/python bench/tts_peer.py --minutes 1 --threads 1 --train-rows 200 \\
        --inputs 4 --save-every 5 --out /tmp/tts-peer-smoke

Disk: the training WAVs take ~1 GB (8.3 h at 16 kHz, 16 bit); a Tacotron2-DDC-GST checkpoint
(model + optimiser) 632 MB, a Glow-TTS one 344 MB, three kept (``save_n_checkpoints``).

A run killed mid-way is rerun with the same command: finished stages (waveforms, phonemes,
training, synthesis so far, scores) are kept; a training that did not finish starts again from
scratch, so the budget stays one uninterrupted session.

**Toolkit and recipe.** coqui-tts 0.28.0 (the latest release; Python >=3.10,<3.15), recipe
``recipes/ljspeech/tacotron2-DDC`` with Global Style Tokens switched on (``--model
tacotron2-ddc-gst``, the default): Tacotron2 with double-decoder consistency (a coarse second
decoder at r=6 that the issue's peers credit with aligning after ~1k steps instead of ~8k), and
GST (``use_gst``; coqui's defaults: 10 tokens, 4 heads, 256 dims) so that it takes a reference
recording and its style accuracy can be measured like ours. ``--model glow-tts`` runs the
``recipes/ljspeech/glow_tts`` recipe instead (monotonic alignment search: nothing to discover);
it takes no reference, so its style accuracy is "–" and its stopping is by construction ("–");
its recipe's batch 32, with ``mixed_precision`` off (a GPU feature; on in that recipe).
From the recipes: ``r`` 6 with ``gradual_training`` [[0, 6, 64], [10000, 4, 32], [50000, 3, 32],
[100000, 2, 32]] (the first stage: batch 64), ``double_decoder_consistency``, the recipe's audio
settings (``signal_norm`` off, ``log_func`` np.log, ``spec_gain`` 1, ``ref_level_db`` 20,
``preemphasis`` 0, ``mel_fmin`` 0, ``mel_fmax`` 8000), ``phoneme_cleaners`` with phoneme inputs
(``use_phonemes``, ``phoneme_language`` en-us; phonemizer ``espeak``: the system's espeak-ng
works in the venv, ~12 ms a sentence), coqui's optimiser defaults (RAdam, lr 1e-4, NoamLR with
4000 warm-up steps), no mixed precision. Changed for this corpus and machine: ``sample_rate``
16000 with ``fft_size``/``win_length`` 1024, ``hop_length`` 256, 80 mels (our settings,
``m3dgan.audio.config``; 22050 in the recipe); ``do_trim_silence`` off (our clips are trimmed);
``num_loader_workers`` 0 (no loader processes beside the ``--threads`` budget; 4 in the recipe);
``run_eval`` off and one held-out utterance (``eval_split_max_size`` 1: no evaluation passes
inside the budget); no test-sentence synthesis during training (``test_delay_epochs`` huge) and
no model logging (``log_model_step`` huge: Griffin-Lim audio in TensorBoard). The phoneme cache
is filled in the data stage (``bench/tts_peer_toolkit.py phonemes``), outside the budget.
``epochs`` is huge: the process is stopped (SIGTERM) at the budget and the last intact
checkpoint (``save_step`` = ``--save-every``) is evaluated. ``minutes`` is the wall-clock from
launching ``train_tts`` to writing that checkpoint; ``steps`` the optimiser updates it holds
(the trainer names ``checkpoint_N`` after the step counter it saves at, so N + 1).

**Synthesis** (``bench/tts_peer_toolkit.py synth``, in the toolkit venv): coqui's own
``model.synthesize`` with ``style_wav`` = the reference's test FLAC and ``use_griffin_lim``
(coqui's Griffin-Lim, 60 iterations, power 1.5; no neural vocoder: nothing can be downloaded),
``max_decoder_steps`` set so the frame limit equals ours. Coqui's Tacotron2 decoder stops at the
first step whose stop token passes 0.5 once ``t > inputs.shape[0] // 2``, where ``inputs`` is
[batch, time, dim]: with one sentence at a time that guard is ``t > 0``, so an untrained
stopnet "stops on its own" after two steps (12 frames at r=6); read the stop share together
with the length ratio.

**Install route** (``--setup``; venv ``~/.cache/m3dgan/bench-venvs/coqui-tts``):

1. ``pip install torch==2.13.0+cpu`` (the CPU wheel, from pip's find-links), pinned by a
   constraints file for every later install, and checked after each.
2. ``pip install coqui-tts==0.28.0`` without its ``cpu`` extra (its plain requirements hold no
   torch; ``pip install --dry-run`` showed no torch change).
3. ``import TTS`` then fails: "Coqui TTS requires the PyTorch and Torchaudio libraries but they
   were not found in your environment" (``TTS/__init__.py`` requires the torchaudio package,
   and, from torch 2.9, "the torchcodec library is required for audio IO"), and
   ``TTS.tts.utils.managers`` imports ``TTS.encoder.models.base_encoder``, which imports
   torchaudio, on every model's import path. No torchaudio 2.13 exists on PyPI ("Could not find
   a version that satisfies the requirement torchaudio==2.13.0 (from versions: ... 2.11.0,
   2.11.1)"); the newest, 2.11.1 (``Requires torch>=2.11``, so the constraint holds), is a CUDA
   build: ``import torchaudio`` fails with "OSError: Could not load this library:
   .../torchaudio/lib/_torchaudio.so" (``libc10_cuda.so: cannot open shared object file``).
   torchcodec 0.17.0 from PyPI is a CUDA build as well ("libnvrtc.so.13: cannot open shared
   object file").
4. So: ``pip install --no-deps torchaudio==2.11.1 torchcodec==0.17.0 six==1.17.0`` and the
   three compiled libraries in ``torchaudio/lib/`` are deleted: torchaudio's loader returns
   "not available" when a library file is absent (its documented behaviour for deployments
   without the extension) and torchaudio imports as Python only; Tacotron2 / Glow-TTS training
   and synthesis never call it (audio is read with soundfile and librosa). torchcodec stays
   installed but unimportable: coqui only checks that it is installed, and nothing on this path
   imports it. ``six``: ``TTS/tts/utils/text/punctuation.py`` imports it but coqui-tts does not
   declare it ("ModuleNotFoundError: No module named 'six'").
5. The venv is probed by importing the Tacotron2 and Glow-TTS models; torch must still be
   2.13.0+cpu.

**Data** (``<out>/data/``, the LJSpeech layout that coqui's ``ljspeech`` formatter reads:
``wavs/<id>.wav`` + ``metadata.csv`` ``id|text|text``): our data set stores only log-mels for
the train split (``audio/test/*.flac`` holds the test recordings), so the training waveforms are
made again the way the builder made them: ``m3dgan.data.builtin.espeak.render`` (espeak-ng,
``en-us+klatt5``, resampled to 16 kHz and trimmed) in the row's style
(``m3dgan.data.builtin.speech.STYLES[domain]``), in our venv; the first rows' mels are checked
against the stored ones. ``--train-rows N``: only the first N train rows (smoke tests).

Outputs in ``--out``: ``data/`` (wavs, metadata.csv, a phoneme cache per model: it holds token
ids), ``runs/<model>/`` (config.json, the trainer's folder with checkpoints, ``train.json``, ``synth/`` with the WAVs and
``outputs.jsonl``, ``scores*.json``), ``logs/``, ``results.json``, ``results.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import harness
import peer
import torch

from m3dgan import paths
from m3dgan.audio import load_audio, save_wav
from m3dgan.audio.config import MelConfig
from m3dgan.audio.inputs import pad_mels
from m3dgan.audio.mel import wave_to_mel
from m3dgan.data import store
from m3dgan.data.build import task_dataset_root
from m3dgan.data.builtin import espeak
from m3dgan.data.builtin.speech import STYLES, audio_file
from m3dgan.evaluate.speech import _sentences
from m3dgan.metrics import judge_cache
from m3dgan.metrics.judge_asr import JUDGE_ASR_VERSION, AsrRecipe, JudgeASR, judge_asr_path
from m3dgan.metrics.speech_batches import dataset_digest
from m3dgan.metrics.style_classifier import (
    STYLE_JUDGE_VERSION,
    StyleClassifier,
    StyleRecipe,
    style_judge_path,
)
from m3dgan.metrics.transcript import wer_cer

TOOLKIT, VERSION = "coqui-tts", "0.28.0"
VENV = peer.ToolkitVenv(TOOLKIT)
CHECKPOINTS = "*/checkpoint_*.pth"
DEFAULT_LR_WARMUP = 4000  # coqui's NoamLR warm-up steps (Tacotron2Config, GlowTTSConfig)
SHIMS = ["torchaudio==2.11.1", "torchcodec==0.17.0", "six==1.17.0"]  # --no-deps; see docstring
HELPER = Path(__file__).with_name("tts_peer_toolkit.py")
AUDIO = {  # the recipe's audio settings, at our sample rate and mel settings (docstring)
    "sample_rate": 16000,
    "resample": False,
    "fft_size": 1024,
    "win_length": 1024,
    "hop_length": 256,
    "num_mels": 80,
    "mel_fmin": 0.0,
    "mel_fmax": 8000.0,
    "do_trim_silence": False,
    "signal_norm": False,
    "spec_gain": 1.0,
    "log_func": "np.log",
    "ref_level_db": 20,
    "preemphasis": 0.0,
}
COMMON = {  # both models (docstring)
    "text_cleaner": "phoneme_cleaners",
    "use_phonemes": True,
    "phonemizer": "espeak",
    "phoneme_language": "en-us",
    "mixed_precision": False,
    "num_loader_workers": 0,
    "num_eval_loader_workers": 0,
    "run_eval": False,
    "eval_split_max_size": 1,
    "test_delay_epochs": 1_000_000_000,
    "test_sentences": [],
    "log_model_step": 1_000_000_000,
    "save_best_after": 1_000_000_000,
    "save_n_checkpoints": 3,
    "epochs": 1_000_000,
    "print_step": 25,
}
MODELS = {
    "tacotron2-ddc-gst": {
        "model": "tacotron2",
        "batch_size": 64,
        "eval_batch_size": 16,
        "r": 6,
        "gradual_training": [[0, 6, 64], [10000, 4, 32], [50000, 3, 32], [100000, 2, 32]],
        "double_decoder_consistency": True,
        "use_gst": True,
        "gst": {
            "gst_embedding_dim": 256,
            "gst_num_heads": 4,
            "gst_num_style_tokens": 10,
            "gst_use_speaker_embedding": False,
        },
    },
    "glow-tts": {"model": "glow_tts", "batch_size": 32, "eval_batch_size": 16},
}
REFERENCE = {"tacotron2-ddc-gst": True, "glow-tts": False}  # takes a style reference
COLUMNS = [
    ("toolkit", "toolkit", "{}"),
    ("version", "version", "{}"),
    ("model", "model", "{}"),
    ("minutes", "minutes", "{:.1f}"),
    ("steps", "steps", "{}"),
    ("threads", "threads", "{}"),
    ("train_rows", "train utterances", "{}"),
    ("lr_warmup", "lr warm-up steps", "{}"),
    ("outputs", "outputs", "{}"),
    ("wer", "WER", "{:.1%}"),
    ("cer", "CER", "{:.1%}"),
    ("style_accuracy", "style accuracy", "{:.1%}"),
    ("stopped", "stopped on their own", "{:.1%}"),
    ("length_ratio", "length ratio", "{:.2f}"),
]


def setup(log: Path) -> None:
    """The toolkit's venv (idempotent): CPU torch pinned first, then coqui-tts, then the
    torchaudio / torchcodec shims (see the docstring)."""
    if VENV.complete:
        VENV.check_torch()
        print(f"{TOOLKIT} venv ready: {VENV.path} (torch {peer.TORCH})", flush=True)
        return
    pip = VENV.create(log)
    print(f"  pip install {TOOLKIT}=={VERSION}", flush=True)
    harness.run(pip + [f"{TOOLKIT}=={VERSION}"], log)
    VENV.check_torch()
    print(f"  pip install --no-deps {' '.join(SHIMS)}", flush=True)
    harness.run(pip + ["--no-deps", *SHIMS], log)
    probe = "import importlib.util; print(importlib.util.find_spec('torchaudio').origin)"
    found = subprocess.run([str(VENV.python), "-c", probe], capture_output=True, text=True)
    where = Path(found.stdout.strip()).parent
    for lib in sorted((where / "lib").glob("*.so")):  # the CUDA-linked extension
        print(f"  removing {lib.name} (links libc10_cuda.so)", flush=True)
        lib.unlink()
    models = "import TTS.tts.models.tacotron2, TTS.tts.models.glow_tts, torchaudio"
    harness.run([str(VENV.python), "-c", models], log, env=VENV.env(1))
    VENV.finish(f"{TOOLKIT}=={VERSION} torch=={peer.TORCH} {' '.join(SHIMS)}")


def _render(job: tuple[str, int]):
    text, style = job
    return espeak.render(text, STYLES[style], MelConfig())


def prepare(data: Path, rows: int | None, threads: int) -> dict:
    """Training waveforms (espeak-ng again, as the builder made them) in the LJSpeech layout."""
    info_path = data / "data.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if info["train_rows_asked"] != rows:
            raise SystemExit(
                f"{data} holds {info['train_rows']} train rows (--train-rows "
                f"{info['train_rows_asked']}), not {rows}: use another --out or remove {data}"
            )
        return info
    root = task_dataset_root("tts")
    manifest = store.read_manifest(root)
    cfg = MelConfig.from_dict(manifest.audio)
    if cfg != MelConfig():
        raise SystemExit(f"{root}: mel settings {cfg} differ from the builder's {MelConfig()}")
    train = store.load_split(root, "train")
    n = len(train["source"]) if rows is None else min(rows, len(train["source"]))
    texts, styles = list(train["source"][:n]), [int(s) for s in train["domain"][:n]]
    if any("|" in t or "\n" in t for t in texts):
        raise SystemExit("a training sentence holds '|' or a newline: metadata.csv cannot")
    wavs = data / "wavs"
    wavs.mkdir(parents=True, exist_ok=True)
    print(f"rendering {n} training utterances with espeak-ng ({threads} at a time)", flush=True)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start, worst = time.time(), 0.0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for i, wave in enumerate(pool.map(_render, zip(texts, styles, strict=True))):
            if i < 3:  # the same audio as the data set's? (its mel, stored as float16)
                mel = wave_to_mel(wave, cfg)
                stored = train["target"][i].float()
                if mel.shape != stored.shape:
                    raise SystemExit(f"row {i}: {tuple(mel.shape)} frames, stored {stored.shape}")
                worst = max(worst, float((mel - stored).abs().max()))
            save_wav(wavs / f"train_{i:05d}.wav", wave, cfg.sample_rate)
    torch.set_num_threads(torch_threads)
    if worst > 0.01:
        raise SystemExit(f"espeak-ng renders differ from the stored mels (max |diff| {worst})")
    lines = [f"train_{i:05d}|{t}|{t}\n" for i, t in enumerate(texts)]
    (data / "metadata.csv").write_text("".join(lines))
    lengths = train["target"].lengths[:n]
    info = {
        "dataset": str(root),
        "train_rows": n,
        "train_rows_asked": rows,
        "render_seconds": time.time() - start,
        "max_abs_mel_diff_first_rows": worst,
        "longest_train_frames": int(train["target"].lengths.max()),
        "train_hours": float(lengths.sum()) / cfg.frames_per_second / 3600,
        "espeak": espeak.espeak_version(),
    }
    info_path.write_text(json.dumps(info, indent=1))
    return info


def model_config(args, data: Path, run: Path, info: dict) -> dict:
    cfg = {**COMMON, **MODELS[args.model]}
    cfg.update(
        run_name=args.model,
        audio=AUDIO,
        output_path=str(run),
        phoneme_cache_path=str(data / f"phoneme_cache-{args.model}"),  # token ids: per model
        datasets=[
            {
                "formatter": "ljspeech",
                "dataset_name": "m3dgan-speech",
                "meta_file_train": "metadata.csv",
                "path": str(data),
            }
        ],
        save_step=args.save_every,
    )
    if args.lr_warmup:  # NoamLR's warm-up (coqui's default: 4000 steps), scaled to the budget
        cfg["lr_scheduler_params"] = {"warmup_steps": args.lr_warmup}
    if args.model == "tacotron2-ddc-gst":  # our decoder's limit: 2 x the longest utterance
        cfg["max_decoder_steps"] = math.ceil(2 * info["longest_train_frames"] / cfg["r"])
    return cfg


def phonemize(args, data: Path, info: dict, log: Path) -> None:
    done = data / f"phonemes-{args.model}.done"
    if done.is_file():
        return
    cfg = model_config(args, data, data, info)
    cfg_path = data / f"phonemes-{args.model}.config.json"
    cfg_path.write_text(json.dumps(cfg, indent=1))
    shutil.rmtree(cfg["phoneme_cache_path"], ignore_errors=True)
    cmd = [str(VENV.python), str(HELPER), "phonemes", str(cfg_path)]
    harness.run(cmd, log, env=VENV.env(1))
    done.write_text("")


def train(args, data: Path, run: Path, info: dict) -> dict:
    stats_path = run / "train.json"
    stats = peer.trained_before(run, stats_path, args.minutes, args.threads)
    if stats is not None:
        return stats
    (run / "config.json").write_text(json.dumps(model_config(args, data, run, info), indent=1))
    log = args.out / "logs" / "train.log"
    cmd = [str(VENV.python), "-m", "TTS.bin.train_tts", "--config_path"]
    cmd.append(str(run / "config.json"))
    print(f"training {TOOLKIT} {args.model} for {args.minutes} min, {args.threads} threads")
    start, stopped, _ = peer.train_for(cmd, args.minutes * 60, VENV.env(args.threads), log)
    last = peer.last_intact(run, CHECKPOINTS)
    if last is None:
        raise SystemExit(f"no checkpoint within {args.minutes} min; lower --save-every ({log})")
    step, path = last
    stats = {
        "steps": step + 1,  # checkpoint_N is saved at step counter N, after its update
        "checkpoint": str(path.relative_to(run)),
        "minutes": (path.stat().st_mtime - start) / 60,
        "budget_minutes": args.minutes,
        "process_minutes": (stopped - start) / 60,
        "threads": args.threads,
        "save_every": args.save_every,
        "batch_size": MODELS[args.model]["batch_size"],
        "train_rows": info["train_rows"],
        "torch": VENV.torch_version(),
        "lr_warmup": args.lr_warmup or DEFAULT_LR_WARMUP,
    }
    stats["steps_per_s"] = stats["steps"] / max(stats["minutes"] * 60, 1e-9)
    stats_path.write_text(json.dumps(stats, indent=1))
    return stats


def test_jobs(model: str, inputs: int | None) -> tuple[list[dict], dict]:
    """What to say: every distinct test sentence (the first ``inputs``) in every style with the
    next sentence's recording in that style as reference (``evaluate.speech.tts``'s pairing), or
    once without a reference for a model that takes none; and what each job is compared with."""
    root = task_dataset_root("tts")
    test = store.load_split(root, "test")
    test["source_text"] = list(test["source"])
    sentences = _sentences(test)
    styles = sorted({s for rows in sentences.values() for s in rows if s >= 0})
    chosen = [t for t, rows in sentences.items() if all(s in rows for s in styles)]
    chosen = chosen[: inputs or None]
    jobs = []
    for k, text in enumerate(chosen):
        other = chosen[(k + 1) % len(chosen)]
        for s in styles if REFERENCE[model] else styles[:1]:
            row, ref = sentences[text][s], sentences[other][s]
            jobs.append(
                {
                    "id": f"s{k:04d}_{STYLES[s].name}",
                    "text": text,
                    "reference": str(root / audio_file(ref)) if REFERENCE[model] else None,
                    "style": s,
                    "real_frames": int(test["target"].lengths[row]),
                }
            )
    return jobs, {"root": str(root), "sentences": len(chosen)}


def synthesize(args, run: Path, stats: dict, info: dict) -> tuple[Path, list[dict]]:
    suffix = f".first{args.inputs}" if args.inputs else ""
    out = run / f"synth{suffix}"
    jobs, _ = test_jobs(args.model, args.inputs)
    out.mkdir(parents=True, exist_ok=True)
    jobs_path = out / "jobs.json"
    jobs_path.write_text(json.dumps(jobs, indent=1))
    done = out / "outputs.jsonl"
    if done.is_file() and len(done.read_text().splitlines()) == len(jobs):
        return out, jobs
    cmd = [str(VENV.python), str(HELPER), "synth", str(run / "config.json")]
    cmd[-1] = str((run / stats["checkpoint"]).parent / "config.json")  # the trainer's copy
    cmd += [str(run / stats["checkpoint"]), str(jobs_path), str(out)]
    cmd += ["--threads", str(args.threads)]
    cmd += ["--max-frames", str(2 * info["longest_train_frames"])]
    t0 = time.time()
    harness.run(cmd, args.out / "logs" / f"synth{suffix}.log", env=VENV.env(args.threads))
    (out / "synth.json").write_text(json.dumps({"seconds": time.time() - t0}))
    return out, jobs


def _cached_judges(root: Path) -> tuple[JudgeASR, StyleClassifier]:
    """The judges as ``evaluate`` loads them, from the cache only: training them here would
    take the machine for a quarter of an hour; ``evaluate`` (or judge_asr's main) trains them."""
    name = store.read_manifest(root).name
    digest = dataset_digest(root)
    asr = judge_cache.try_load(
        judge_asr_path(name),
        {
            "version": JUDGE_ASR_VERSION,
            "dataset": name,
            "manifest_sha256": digest,
            "recipe": asdict(AsrRecipe()),
        },
        lambda arch: JudgeASR(**arch),
        "judge ASR",
    )
    style = judge_cache.try_load(
        style_judge_path(name),
        {
            "version": STYLE_JUDGE_VERSION,
            "dataset": name,
            "manifest_sha256": digest,
            "recipe": asdict(StyleRecipe()),
        },
        lambda arch: StyleClassifier(**arch),
        "style judge",
    )
    if asr is None or style is None:
        raise SystemExit(
            f"the judges of {root} are not cached ({paths.judges_dir()}); train them first, "
            "e.g. with `m3dgan evaluate` on a tts run or "
            "`python -c 'from m3dgan.metrics.judge_asr import main; main()'`"
        )
    return asr, style


def score(args, run: Path, out: Path, jobs: list[dict], stats: dict) -> dict:
    scores_path = run / f"scores{out.name.removeprefix('synth')}.json"
    if scores_path.is_file():
        return json.loads(scores_path.read_text())
    torch.set_num_threads(args.threads)
    root = task_dataset_root("tts")
    cfg = MelConfig.from_dict(store.read_manifest(root).audio)
    asr, style_judge = _cached_judges(root)
    records = {}
    for line in (out / "outputs.jsonl").read_text().splitlines():
        record = json.loads(line)
        records[record["id"]] = record
    mels = [wave_to_mel(load_audio(out / f"{j['id']}.wav", cfg.sample_rate), cfg) for j in jobs]
    lengths = torch.tensor([len(m) for m in mels])
    padded = pad_mels(mels)
    texts = [j["text"] for j in jobs]
    heard = asr.transcribe(padded, lengths)
    rates = wer_cer(heard, texts)
    want = torch.tensor([j["style"] for j in jobs])
    real = torch.tensor([j["real_frames"] for j in jobs]).float()
    stopped = [records[j["id"]]["stopped"] for j in jobs]
    result = {
        "toolkit": TOOLKIT,
        "version": VERSION,
        "model": args.model,
        "torch": stats.get("torch"),
        "minutes": stats["minutes"],
        "steps": stats["steps"],
        "threads": stats["threads"],
        "batch_size": stats["batch_size"],
        "train_rows": stats["train_rows"],
        "lr_warmup": stats.get("lr_warmup", DEFAULT_LR_WARMUP),
        "outputs": len(jobs),
        "sentences": len(set(texts)),
        "wer": rates["wer"],
        "cer": rates["cer"],
        "wer_real": asr.info["test"]["wer"],
        "wer_vocoded": (asr.info.get("round_trip") or {}).get("wer"),
        "style_accuracy": None,
        "stopped": None if None in stopped else sum(stopped) / len(stopped),
        "length_ratio": float((lengths.float() / real).mean()),
        "synth_seconds_per_output": sum(records[j["id"]]["seconds"] for j in jobs) / len(jobs),
        "examples": [{"text": t, "heard": h} for t, h in list(zip(texts, heard, strict=True))[:8]],
    }
    if REFERENCE[args.model]:
        predicted = style_judge.predict(padded, lengths)
        result["style_accuracy"] = float((predicted == want).float().mean())
        result["style_accuracy_per_style"] = {
            STYLES[s].name: float((predicted[want == s] == s).float().mean())
            for s in sorted(set(want.tolist()))
        }
        result["style_accuracy_real"] = style_judge.info.get("test_accuracy")
    scores_path.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    return result


def write_report(out: Path) -> str:
    results = [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/scores*.json"))]
    if not results:
        return "no finished runs"
    for r in results:  # runs from before --lr-warmup had coqui's default
        r.setdefault("lr_warmup", DEFAULT_LR_WARMUP)
    results.sort(key=lambda r: (r["model"], -r["outputs"]))
    md = harness.markdown_table(results, COLUMNS)
    first = results[0]
    meta = (
        f"speech test split, each sentence in every style with a reference of the next sentence "
        f"(a model without a reference input: once, style '–'); WER/CER by the judge ASR "
        f"(m3dgan.metrics.judge_asr; on real test audio {first['wer_real']:.1%}, after mel -> "
        f"Griffin-Lim -> mel {first['wer_vocoded'] or float('nan'):.1%}), style accuracy by the "
        f"style classifier, both on our log-mels of the peer's Griffin-Lim WAVs; stopped: "
        f"outputs that ended before 2 x the longest training utterance ('–': a model that "
        f"always stops, by its durations); length ratio: output frames / real frames of the "
        f"same sentence and style; torch {first.get('torch')}; minutes = train_tts launch to "
        f"the evaluated checkpoint; steps = optimiser updates in it"
    )
    return harness.save_report(out, results, md, meta)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    peer.add_budget_arguments(
        p, "bench/results/tts_peer", 50, "speak only the first N distinct sentences"
    )
    p.add_argument("--model", choices=sorted(MODELS), default="tacotron2-ddc-gst")
    p.add_argument("--train-rows", type=int, default=None, help="train on the first N rows")
    p.add_argument(
        "--lr-warmup",
        type=int,
        default=None,
        help=f"NoamLR warm-up steps (coqui's default {DEFAULT_LR_WARMUP}; at ~13 s a step on one "
        "thread, 120 minutes are ~500 steps, where the default rate is still 1/8 of its peak); "
        "a run with another warm-up needs its own --out",
    )
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.setup:
        setup(args.out / "logs" / "setup.log")
        return
    if not args.report_only:
        started = time.time()
        setup(args.out / "logs" / "setup.log")
        data, run = args.out / "data", args.out / "runs" / args.model
        info = prepare(data, args.train_rows, args.threads)
        phonemize(args, data, info, args.out / "logs" / "phonemes.log")
        print(f"[{time.time() - started:6.0f}s] data ready: {info}", flush=True)
        stats = train(args, data, run, info)
        print(
            f"[{time.time() - started:6.0f}s] trained: {stats['steps']} steps in "
            f"{stats['minutes']:.1f} min",
            flush=True,
        )
        out, jobs = synthesize(args, run, stats, info)
        print(f"[{time.time() - started:6.0f}s] {len(jobs)} outputs synthesized", flush=True)
        score(args, run, out, jobs, stats)
        print(f"[{time.time() - started:6.0f}s] scored", flush=True)
    print(write_report(args.out))


if __name__ == "__main__":
    main()
