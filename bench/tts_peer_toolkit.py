"""The toolkit side of ``bench/tts_peer.py``: runs in the coqui-tts venv, never in ours.

    python tts_peer_toolkit.py phonemes CONFIG            # fill the phoneme cache (espeak-ng)
    python tts_peer_toolkit.py synth CONFIG CHECKPOINT JOBS OUT --threads T --max-frames F

``phonemes`` phonemizes every sample of the config's data sets into its ``phoneme_cache_path``
the way coqui's training data loader does (``PhonemeDataset``), so that this cost is paid in the
data stage and not inside the training budget. ``synth`` loads a checkpoint and speaks each job
of JOBS (a JSON list of ``{"id", "text", "reference"}``; the reference is a recording whose style
a GST model copies, or null), Griffin-Lim only (no neural vocoder), writing ``OUT/<id>.wav`` and
one JSON line per job to ``OUT/outputs.jsonl``: the output's frames, the decoder's reduction
factor and whether it stopped before the frame limit ``--max-frames``. Jobs already in
``outputs.jsonl`` are skipped, so an interrupted synthesis resumes.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import soundfile as sf
import torch
from TTS.config import load_config
from TTS.tts.datasets import load_tts_samples
from TTS.tts.datasets.dataset import PhonemeDataset
from TTS.tts.models import setup_model
from TTS.tts.utils.text.tokenizer import TTSTokenizer


def phonemes(config_path: str) -> None:
    config = load_config(config_path)
    train, held = load_tts_samples(
        config,
        eval_split=True,
        eval_split_max_size=config.eval_split_max_size,
        eval_split_size=config.eval_split_size,
    )
    tokenizer, config = TTSTokenizer.init_from_config(config)
    cache = Path(config.phoneme_cache_path)
    cache.mkdir(parents=True, exist_ok=True)
    samples = train + held
    dataset = PhonemeDataset(samples, tokenizer, str(cache))  # the folder exists: lazy
    start = time.time()
    for i in range(len(dataset)):
        dataset[i]
    print(f"phonemized {len(samples)} samples in {time.time() - start:.0f} s into {cache}")


def synth(args) -> None:
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    model = setup_model(config)
    model.load_checkpoint(config, args.checkpoint, eval=True)
    tacotron = hasattr(model, "decoder") and hasattr(model.decoder, "max_decoder_steps")
    r = model.decoder.r if tacotron else 1
    if tacotron:
        model.decoder.max_decoder_steps = math.ceil(args.max_frames / r)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    done_path = out / "outputs.jsonl"
    done = set()
    if done_path.is_file():
        done = {json.loads(line)["id"] for line in done_path.read_text().splitlines() if line}
    jobs = json.loads(Path(args.jobs).read_text())
    sample_rate = model.ap.sample_rate
    with open(done_path, "a") as log:
        for job in jobs:
            if job["id"] in done:
                continue
            start = time.time()
            kwargs = {"style_wav": job["reference"]} if job.get("reference") else {}
            with torch.inference_mode():
                result = model.synthesize(job["text"], use_griffin_lim=True, **kwargs)
            frames = int(result["outputs"]["model_outputs"].shape[1])
            sf.write(out / f"{job['id']}.wav", result["wav"], sample_rate, subtype="PCM_16")
            record = {
                "id": job["id"],
                "frames": frames,
                "r": r,
                "stopped": (frames < math.ceil(args.max_frames / r) * r) if tacotron else None,
                "seconds": time.time() - start,
            }
            log.write(json.dumps(record) + "\n")
            log.flush()
    print(f"synthesized {len(jobs) - len(done)} of {len(jobs)} jobs into {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    ph = sub.add_parser("phonemes")
    ph.add_argument("config")
    sy = sub.add_parser("synth")
    sy.add_argument("config")
    sy.add_argument("checkpoint")
    sy.add_argument("jobs")
    sy.add_argument("out")
    sy.add_argument("--threads", type=int, default=1)
    sy.add_argument("--max-frames", type=int, required=True)
    args = p.parse_args()
    if args.command == "phonemes":
        phonemes(args.config)
    else:
        synth(args)


if __name__ == "__main__":
    main()
