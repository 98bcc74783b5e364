"""The ablation row of joint CTC/attention decoding: one asr checkpoint with a CTC head
(``model.ctc_weight`` > 0) scored twice on the same test utterances, once as ``m3dgan evaluate``
decodes it (joint greedy search, λ = the checkpoint's ``model.ctc_weight``) and once with the
CTC head's weight in the search set to 0 (the attention decoder alone, as greedy decoding was
before joint decoding became the default).

    .venv/bin/python bench/asr_decoding.py bench/results/speech_goals/asr-60min/runs/asr-full \\
        --inputs 100 --out bench/results/asr_decoding/asr-60min.json

Prints a table and writes the two metric dicts (without examples) as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from m3dgan.errors import ConfigError
from m3dgan.evaluate import evaluate
from m3dgan.infer import Translator


def score(checkpoint: Path, inputs: int, joint: bool) -> dict:
    """``evaluate``'s asr metrics; with ``joint`` False the search ignores the CTC head."""
    load = Translator.from_checkpoint.__func__

    def attention_only(cls, *args, **kwargs):
        tr = load(cls, *args, **kwargs)
        if tr.model.generator.ctc is None:
            raise ConfigError(f"{checkpoint}: the model has no CTC head (model.ctc_weight = 0)")
        tr.model.generator.ctc_weight = 0.0
        return tr

    if not joint:
        Translator.from_checkpoint = classmethod(attention_only)
    try:
        out = evaluate(checkpoint, inputs=inputs, progress=False)
    finally:
        Translator.from_checkpoint = classmethod(load)
    out.pop("examples", None)
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("checkpoint", type=Path, help="an asr run folder or checkpoint file")
    p.add_argument("--inputs", type=int, default=50, help="test sentences (× 4 styles)")
    p.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = p.parse_args()
    rows = {name: score(args.checkpoint, args.inputs, joint) for name, joint in
            (("joint", True), ("attention only", False))}  # fmt: skip
    lines = ["| decoding | step | utterances | WER | CER |", "|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['step']} | {r['utterances']} | {r['wer']:.1%} | {r['cer']:.1%} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
