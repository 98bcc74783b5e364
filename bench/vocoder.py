"""Griffin-Lim speed and quality: the project's batched torch vocoder against librosa's.

For one real espeak-ng clip (cut to 2.5 s, 16 kHz) and a batch of 16 such clips: seconds per
call (best of ``--repeats``, after a warm-up), and the spectral convergence of the rebuilt audio
against the original (‖|S| − |Ŝ|‖ / ‖|S|‖; the mel projection alone loses some, shown as the
"mel only" row). librosa's ``griffinlim`` on the same magnitudes gives the speed reference.
Prints a table and writes ``results.json`` + ``results.md`` to ``--out``.

    python bench/vocoder.py --out bench/results/vocoder
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from m3dgan.audio import (
    MelConfig,
    load_audio,
    mel_to_linear,
    mel_to_wave,
    spectral_convergence,
    stft_magnitude,
    wave_to_mel,
)

TEXT = "The quick brown fox jumps over the lazy dog near the quiet river bank."


def clip(seconds: float, cfg: MelConfig) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.wav"
        subprocess.run(["espeak-ng", "-v", "en-us+klatt5", "-w", str(path), TEXT], check=True)
        wave = load_audio(path, cfg.sample_rate)
    return wave[: int(seconds * cfg.sample_rate)]


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, librosa's numba compilation)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=Path("bench/results/vocoder"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iterations", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = MelConfig()
    wave = torch.from_numpy(clip(2.5, cfg))
    mel = wave_to_mel(wave, cfg)
    reference = stft_magnitude(wave[None], cfg)
    rows = []

    def sc(rebuilt: torch.Tensor) -> float:
        return spectral_convergence(reference, stft_magnitude(rebuilt[None].float(), cfg))

    ours = mel_to_wave(mel, cfg, args.iterations)
    rows.append(
        {
            "vocoder": "m3dgan (torch, fast Griffin-Lim)",
            "batch": 1,
            "seconds": best_time(lambda: mel_to_wave(mel, cfg, args.iterations), args.repeats),
            "spectral_convergence": sc(ours),
        }
    )
    batch = mel[None].expand(16, -1, -1).contiguous()
    rows.append(
        {
            "vocoder": "m3dgan (torch, fast Griffin-Lim)",
            "batch": 16,
            "seconds": best_time(lambda: mel_to_wave(batch, cfg, args.iterations), 2),
            "spectral_convergence": None,
        }
    )
    import librosa

    linear = mel_to_linear(mel[None], cfg)[0].numpy() ** 1.2

    def with_librosa() -> np.ndarray:
        return librosa.griffinlim(
            linear,
            n_iter=args.iterations,
            hop_length=cfg.hop_length,
            win_length=cfg.win_length,
            n_fft=cfg.n_fft,
            random_state=0,
        )

    rows.append(
        {
            "vocoder": "librosa.griffinlim (same magnitudes)",
            "batch": 1,
            "seconds": best_time(with_librosa, args.repeats),
            # not comparable: librosa's frames and ours are not aligned sample for sample
            "spectral_convergence": None,
        }
    )
    rows.append(
        {
            "vocoder": "mel only (no phase recovery)",
            "batch": 1,
            "seconds": None,
            "spectral_convergence": spectral_convergence(reference, mel_to_linear(mel[None], cfg)),
        }
    )
    head = "| vocoder | batch | seconds per call | spectral convergence |\n|---|---|---|---|"
    lines = [head]
    for r in rows:
        sec = "–" if r["seconds"] is None else f"{r['seconds']:.3f}"
        scv = "–" if r["spectral_convergence"] is None else f"{r['spectral_convergence']:.3f}"
        lines.append(f"| {r['vocoder']} | {r['batch']} | {sec} | {scv} |")
    load = os.getloadavg()[0]
    note = (
        f"2.5 s clip at 16 kHz, {args.iterations} iterations, {args.threads} thread(s), "
        f"load average {load:.1f} on {os.cpu_count()} cores when it ran."
    )
    md = "\n".join(lines) + "\n\n" + note + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"rows": rows, "note": note}, indent=1))
    (args.out / "results.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
