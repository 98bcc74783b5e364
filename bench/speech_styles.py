"""How well simple classifiers tell espeak-ng speaking styles apart: the measurement behind the
four styles of the built-in ``speech`` corpus (see m3dgan/data/builtin/speech.py).

    OMP_NUM_THREADS=1 .venv/bin/python bench/speech_styles.py            # 18.5 min on 2 busy cores
    OMP_NUM_THREADS=1 .venv/bin/python bench/speech_styles.py --sentences 40 --quick

Every one of ``--sentences`` random fortunes sentences is rendered in every candidate style
(exactly as the builder renders: en-us+klatt5, 16 kHz, trimmed). Features: mean and standard
deviation over time of the normalised log-mel, standardised. The first half of the sentences
trains, the second half tests (unseen sentences). For every set of four candidates that holds a
neutral style it reports logistic-regression and nearest-centroid accuracy on the test mels and on
the same mels after mel → Griffin-Lim (32 iterations) → mel, with the classifier trained on clean
mels. ``--quick`` skips Griffin-Lim. Results: ``--out`` (JSON), the best sets printed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from m3dgan.audio import MelConfig, mel_to_wave, wave_to_mel
from m3dgan.data.builtin import espeak, fortunes, speech
from m3dgan.data.builtin.espeak import Style

CANDIDATES = (
    *speech.STYLES,  # neutral, cheerful, sad, soft
    Style("neutral_quiet", pitch=50, speed=165, amplitude=70),
    Style("cheerful_mild", pitch=75, speed=195, amplitude=110, pitch_range="high"),
    Style("sad_mild", pitch=30, speed=135, amplitude=80, pitch_range="low"),
    Style("angry", pitch=40, speed=190, amplitude=150, pitch_range="high"),
)


def features(mel: np.ndarray) -> np.ndarray:
    return np.concatenate([mel.mean(0), mel.std(0)])


def nearest_centroid(x: np.ndarray, y: np.ndarray, tests: list[np.ndarray], yt: np.ndarray):
    mu, sd = x.mean(0), x.std(0) + 1e-6
    centres = np.stack([((x[y == c] - mu) / sd).mean(0) for c in np.unique(y)])

    def accuracy(z: np.ndarray) -> float:
        d = ((((z - mu) / sd)[:, None] - centres[None]) ** 2).sum(-1)
        return float((d.argmin(1) == yt).mean())

    return [accuracy(z) for z in tests]


def evaluate(clean: np.ndarray, gl: np.ndarray | None, idx: list[int]) -> dict:
    """Train on the first half of the sentences' clean features, test on the second half."""
    n, half, k = clean.shape[0], clean.shape[0] // 2, len(idx)
    x = clean[:half][:, idx].reshape(-1, clean.shape[2])
    y = np.tile(np.arange(k), half)
    yt = np.tile(np.arange(k), n - half)
    tests = [clean[half:][:, idx].reshape(-1, clean.shape[2])]
    if gl is not None:
        tests.append(gl[half:][:, idx].reshape(-1, clean.shape[2]))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(x, y)
    logreg = [float(model.score(z, yt)) for z in tests]
    centroid = nearest_centroid(x, y, tests, yt)
    return {"logreg": logreg, "centroid": centroid}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="skip the Griffin-Lim round trip")
    parser.add_argument(
        "--out", type=Path, default=Path("bench/results/speech_styles/results.json")
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = MelConfig()
    sentences, _ = fortunes.collect_sentences()
    picked = random.Random(args.seed).sample(sentences, args.sentences)
    jobs = [(text, style) for text in picked for style in CANDIDATES]
    started = time.perf_counter()
    with ThreadPoolExecutor(speech.WORKERS) as pool:
        waves = list(
            tqdm(
                pool.map(lambda job: espeak.render(job[0], job[1], cfg), jobs),
                total=len(jobs),
                desc="espeak-ng",
            )
        )
    mels = [wave_to_mel(w, cfg) for w in waves]
    shape = (len(picked), len(CANDIDATES), -1)
    clean = np.stack([features(m.numpy()) for m in mels]).reshape(shape)
    gl = None
    if not args.quick:
        gl = np.stack(
            [
                features(wave_to_mel(mel_to_wave(m, cfg, iterations=32), cfg).numpy())
                for m in tqdm(mels, desc="Griffin-Lim")
            ]
        ).reshape(shape)
    seconds = np.array([len(w) / cfg.sample_rate for w in waves]).reshape(shape[:2])
    names = [s.name for s in CANDIDATES]
    rows = []
    for combo in itertools.combinations(range(len(CANDIDATES)), 4):
        if not any(names[i].startswith("neutral") for i in combo):
            continue
        rows.append({"styles": [names[i] for i in combo], **evaluate(clean, gl, list(combo))})
    key = -1 if gl is not None else 0
    rows.sort(key=lambda r: (-r["logreg"][key], -r["centroid"][key]))
    result = {
        "sentences": args.sentences,
        "seed": args.seed,
        "candidates": [s.to_dict() for s in CANDIDATES],
        "mean_seconds": dict(zip(names, seconds.mean(0).round(2).tolist(), strict=True)),
        "columns": "accuracy on [test mels, test mels after Griffin-Lim]",
        "sets": rows,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print("mean clip seconds:", result["mean_seconds"])
    for row in rows[:8]:
        print(
            "logreg",
            " ".join(f"{a:.3f}" for a in row["logreg"]),
            "| centroid",
            " ".join(f"{a:.3f}" for a in row["centroid"]),
            "|",
            ", ".join(row["styles"]),
        )


if __name__ == "__main__":
    main()
