"""The judge ASR: a small character CTC recogniser that scores how intelligible speech is.

The paper measures TTS intelligibility as the WER of a pretrained ASR on the synthesised speech.
The offline pretrained ASR here (pocketsphinx) misrecognises even real espeak-ng speech about half
the time, so it cannot tell a good TTS model from a bad one. The project therefore trains its own
judge, ONLY on real speech of the data set's TRAIN split (never on anything a model generated), and
reports its WER on real test speech (how good a judge it is) and on real test speech after the
vocoder round trip mel -> Griffin-Lim -> mel (the best WER any TTS output can get through it).

Model: mel [T, n_mels] -> two 1-D convolutions over time (kernel 5, stride 2 each: a GRU step
per 4 frames, 15.6 per second) -> a 3-layer bidirectional GRU (256 per direction) -> linear to
TWO sets of character + blank scores per GRU step, i.e. 31 CTC steps per second: comfortably
more than the 15-20 characters per second of fast speech (CTC needs a step per character and a
blank between repeated ones), at half the GRU cost of running it at 31 steps per second, which
matters on a CPU. Frames past each utterance's end are zeroed after every layer (with the
silence floor shifted to 0) and the GRUs run on packed sequences, so a transcript does not depend
on what else is in the batch. Greedy decoding: best class per step, repeats merged, blanks
dropped. Transcripts are modelled in the form
:func:`~m3dgan.metrics.transcript.normalise_transcript` gives them (lowercase letters, apostrophe,
space), the same form every WER here is computed on.

Training: CTC loss, AdamW with warm-up and cosine decay, utterances batched by similar length
(little padding), light SpecAugment (a few frequency bands and time spans masked per utterance)
so the judge does not depend on every detail of espeak-ng's rendering. Cached as
``paths.judges_dir()/<data set>-asr.safetensors`` + JSON sidecar (vocabulary, architecture,
recipe, training statistics, WER/CER), keyed by the sha256 of the data set's manifest, the recipe
and :data:`JUDGE_ASR_VERSION`. To train it ahead of time and print its scores::

    python -c "from m3dgan.metrics.judge_asr import main; main()" [DATA_ROOT] --steps 1500
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from tqdm import tqdm

from m3dgan import paths
from m3dgan.audio import PAD_VALUE
from m3dgan.data.store import read_manifest
from m3dgan.errors import DataError
from m3dgan.metrics import judge_cache
from m3dgan.metrics.speech_batches import (
    cached_round_trip,
    check_lengths,
    dataset_digest,
    length_sorted_batches,
    load_speech_split,
    round_trip_rows,
)
from m3dgan.metrics.transcript import normalise_transcript, wer_cer

JUDGE_ASR_VERSION = 1
BLANK = 0
ROUND_TRIP_LIMIT = 400  # test utterances for the vocoder ceiling (Griffin-Lim costs ~0.3 s each)


@dataclass
class AsrRecipe:
    """Training settings; part of the cache key, so changing them retrains."""

    steps: int = 1500  # ~15 min on one CPU thread
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup: int = 150
    clip_norm: float = 5.0
    seed: int = 0
    freq_masks: int = 2  # SpecAugment: bands of up to freq_mask_width mel bins per utterance
    freq_mask_width: int = 8
    time_masks: int = 2  # and spans of up to time_mask_width frames
    time_mask_width: int = 8
    conv_channels: int = 256
    hidden: int = 256
    layers: int = 3
    dropout: float = 0.1
    time_stride: int = 4  # frames per GRU step
    outputs_per_step: int = 2  # CTC steps per GRU step


class CharVocabulary:
    """Characters of normalised transcripts; id 0 is the CTC blank, characters are 1..n."""

    def __init__(self, chars: Sequence[str]):
        chars = list(chars)
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise DataError(f"a character vocabulary needs distinct single characters: {chars}")
        self.chars = chars
        self._ids = {c: i + 1 for i, c in enumerate(chars)}

    @classmethod
    def from_texts(cls, texts: Sequence[str]) -> CharVocabulary:
        return cls(sorted({c for t in texts for c in normalise_transcript(t)}))

    @property
    def size(self) -> int:
        """Number of classes including the blank."""
        return len(self.chars) + 1

    def encode(self, text: str) -> list[int]:
        """Ids of the normalised text; characters outside the vocabulary are dropped."""
        return [self._ids[c] for c in normalise_transcript(text) if c in self._ids]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[i - 1] for i in ids if 0 < i <= len(self.chars))


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Best path of each row of ``log_probs`` [B, T, V] over its first ``lengths[b]`` steps,
    repeats merged and blanks dropped (CTC's greedy decoding)."""
    best = log_probs.argmax(-1).cpu()
    out = []
    for row, n in zip(best, lengths.tolist(), strict=True):
        path = row[:n]
        keep = torch.ones_like(path, dtype=torch.bool)
        keep[1:] = path[1:] != path[:-1]
        out.append([int(i) for i in path[keep] if int(i) != BLANK])
    return out


def _zero_past(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``x`` [B, C, T] with the steps at or past ``lengths[b]`` set to zero."""
    inside = torch.arange(x.shape[-1])[None, :] < lengths[:, None]
    return x * inside[:, None, :].to(x)


class JudgeASR(nn.Module):
    """Mel spectrograms -> per-step character log-probabilities (CTC)."""

    def __init__(
        self,
        chars: Sequence[str],
        n_mels: int = 80,
        conv_channels: int = 256,
        hidden: int = 256,
        layers: int = 3,
        dropout: float = 0.1,
        time_stride: int = 4,
        outputs_per_step: int = 2,
    ):
        super().__init__()
        if time_stride not in (2, 4) or outputs_per_step not in (1, 2, 4):
            raise ValueError("time_stride must be 2 or 4 and outputs_per_step 1, 2 or 4")
        self.vocab = CharVocabulary(chars)
        self.config = {
            "n_mels": n_mels,
            "conv_channels": conv_channels,
            "hidden": hidden,
            "layers": layers,
            "dropout": dropout,
            "time_stride": time_stride,
            "outputs_per_step": outputs_per_step,
        }
        self.time_stride, self.outputs_per_step = time_stride, outputs_per_step
        self.convs = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(channels, conv_channels, 5, stride=stride, padding=2),
                nn.BatchNorm1d(conv_channels),
                nn.GELU(),
            )
            for channels, stride in ((n_mels, 2), (conv_channels, time_stride // 2))
        )
        self.rnn = nn.GRU(
            conv_channels,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(2 * hidden, self.vocab.size * outputs_per_step)
        self.info: dict = {}

    def arch(self) -> dict:
        return {"chars": self.vocab.chars, **self.config}

    def steps(self, lengths: torch.Tensor) -> torch.Tensor:
        """GRU steps of utterances of ``lengths`` frames (each conv with stride s: ceil(T / s))."""
        for conv in self.convs:
            lengths = (lengths - 1) // conv[0].stride[0] + 1
        return lengths

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """CTC steps of utterances of ``lengths`` frames."""
        return self.steps(lengths) * self.outputs_per_step

    def forward(
        self, mels: torch.Tensor, lengths: torch.Tensor, packed: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``mels`` float [B, T, n_mels] with ``lengths`` [B] -> (log-probabilities
        [B, CTC steps, classes], CTC lengths [B]).

        ``packed=True`` runs the GRUs over each row's real steps only, so a row's result does not
        depend on the batch; training passes False: on a CPU the backward pass of packed GRUs is
        3-4x slower, and length-bucketed batches leave only a few silent padding frames.
        """
        lengths = lengths.cpu()
        # shift the silence floor (PAD_VALUE = -1) to 0 and zero everything past each row's end
        # after every layer: a row then sees exactly the zero padding it would see alone
        x = _zero_past(mels.transpose(1, 2) - PAD_VALUE, lengths)
        for conv in self.convs:
            lengths = (lengths - 1) // conv[0].stride[0] + 1
            x = _zero_past(conv(x), lengths)
        x = x.transpose(1, 2)
        steps = lengths
        if packed:
            seq = pack_padded_sequence(x, steps, batch_first=True, enforce_sorted=False)
            y, _ = pad_packed_sequence(self.rnn(seq)[0], batch_first=True, total_length=x.shape[1])
        else:
            y = self.rnn(x)[0]
        logits = self.out(self.dropout(y))  # [B, T', classes * outputs_per_step]
        logits = logits.reshape(len(x), -1, self.vocab.size)
        return F.log_softmax(logits.float(), dim=-1), steps * self.outputs_per_step

    @torch.no_grad()
    def transcribe(
        self, frames: Any, lengths: torch.Tensor | list[int], batch_size: int = 32
    ) -> list[str]:
        """Greedy transcripts of every row of ``frames`` (SpeechFrames or padded mels)."""
        lengths = check_lengths(lengths, len(frames))
        self.eval()
        device = next(self.parameters()).device
        texts: list[str] = [""] * len(lengths)
        for index, mels, lens in length_sorted_batches(frames, lengths, batch_size):
            log_probs, out_lens = self(mels.to(device), lens.to(device))
            for row, ids in zip(index.tolist(), greedy_decode(log_probs, out_lens), strict=True):
                texts[row] = self.vocab.decode(ids)
        return texts


def spec_augment(
    mels: torch.Tensor, lengths: torch.Tensor, recipe: AsrRecipe, gen: torch.Generator
) -> torch.Tensor:
    """Mask random mel bands and time spans of each utterance with its own mean level (a
    masked band then carries no information, without looking like an edge)."""
    b, t, m = mels.shape
    mask = torch.zeros(b, t, m, dtype=torch.bool)
    bins, steps = torch.arange(m), torch.arange(t)
    for _ in range(recipe.freq_masks):
        width = torch.randint(0, recipe.freq_mask_width + 1, (b,), generator=gen)
        start = (torch.rand(b, generator=gen) * (m - width + 1)).long()
        band = (bins[None] >= start[:, None]) & (bins[None] < (start + width)[:, None])
        mask |= band[:, None, :]
    for _ in range(recipe.time_masks):
        width = torch.randint(0, recipe.time_mask_width + 1, (b,), generator=gen)
        width = torch.minimum(width, lengths // 5)  # never hide more than a fifth per mask
        start = (torch.rand(b, generator=gen) * (lengths - width + 1)).long()
        span = (steps[None] >= start[:, None]) & (steps[None] < (start + width)[:, None])
        mask |= span[:, :, None]
    inside = steps[None] < lengths[:, None]  # padding stays silence
    mask &= inside[..., None]
    valid = inside.to(mels)[..., None]
    mean = (mels * valid).sum((1, 2), keepdim=True) / (valid.sum(1, keepdim=True) * m)
    return torch.where(mask.to(mels.device), mean.expand_as(mels), mels)


def _bucketed_batches(lengths: torch.Tensor, batch_size: int, gen: torch.Generator):
    """Endless batches of rows of similar length: sort by length with random tie-breaking,
    cut into batches, visit the batches in random order; then again (a new epoch)."""
    while True:
        noise = torch.rand(len(lengths), generator=gen) * 8  # ~8-frame jitter: new mixes per epoch
        order = torch.argsort(lengths.float() + noise)
        batches = list(torch.split(order, batch_size))
        for i in torch.randperm(len(batches), generator=gen).tolist():
            yield batches[i]


def _lr_at(step: int, recipe: AsrRecipe) -> float:
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    progress = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
    return recipe.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def train_judge_asr(
    frames: Any,
    lengths: torch.Tensor | list[int],
    texts: Sequence[str],
    recipe: AsrRecipe | None = None,
    *,
    model: JudgeASR | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> JudgeASR:
    """Train a judge with CTC on ``frames`` (SpeechFrames or padded [N, T, n_mels] mels of REAL
    speech), ``lengths`` and their ``texts``; ``recipe.steps`` batches. ``model`` continues
    training an existing judge (its vocabulary is kept). ``judge.info`` gets the training
    statistics: ``losses`` (mean CTC loss per 50 steps), ``train_seconds``, ``skipped`` (rows
    whose transcript is longer than their CTC steps allow, left out)."""
    recipe = recipe or AsrRecipe()
    lengths = check_lengths(lengths, len(frames))
    if len(texts) != len(lengths):
        raise DataError(f"{len(lengths)} utterances but {len(texts)} transcripts")
    torch.manual_seed(recipe.seed)
    gen = torch.Generator().manual_seed(recipe.seed)
    n_mels = frames[torch.tensor([0])].shape[-1]
    if model is None:
        model = JudgeASR(
            CharVocabulary.from_texts(texts).chars,
            n_mels,
            recipe.conv_channels,
            recipe.hidden,
            recipe.layers,
            recipe.dropout,
            recipe.time_stride,
            recipe.outputs_per_step,
        )
    model = model.to(device).train()
    targets = [torch.tensor(model.vocab.encode(t), dtype=torch.int64) for t in texts]
    target_lengths = torch.tensor([len(t) for t in targets])
    # CTC needs a step per character plus a blank between repeated characters
    repeats = torch.tensor([int((t[1:] == t[:-1]).sum()) if len(t) else 0 for t in targets])
    usable = (target_lengths > 0) & (target_lengths + repeats <= model.output_lengths(lengths))
    rows = torch.nonzero(usable).flatten()
    if len(rows) == 0:
        raise DataError("no utterance is long enough for its transcript; cannot train a judge ASR")
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    batches = _bucketed_batches(lengths[rows], recipe.batch_size, gen)
    losses, window = [], []
    start = time.perf_counter()
    bar = tqdm(range(recipe.steps), desc="judge ASR", disable=not progress)
    with torch.enable_grad():
        for step in bar:
            index = rows[next(batches)]
            lens = lengths[index]
            mels = torch.as_tensor(frames[index])[:, : int(lens.max())].float()
            mels = spec_augment(mels, lens, recipe, gen)
            log_probs, out_lens = model(mels.to(device), lens.to(device), packed=False)
            tgt = torch.cat([targets[i] for i in index.tolist()])
            loss = F.ctc_loss(
                log_probs.transpose(0, 1),
                tgt.to(device),
                out_lens,
                target_lengths[index],
                blank=BLANK,
                zero_infinity=True,
            )
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, recipe)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_norm)
            opt.step()
            window.append(float(loss.detach()))
            if len(window) == 50 or step == recipe.steps - 1:
                losses.append(round(sum(window) / len(window), 4))
                window = []
                bar.set_postfix(ctc=losses[-1])
    model.info = {
        "steps": recipe.steps,
        "losses": losses,
        "train_seconds": round(time.perf_counter() - start, 1),
        "train_size": len(rows),
        "skipped": int(len(lengths) - len(rows)),
        "threads": torch.get_num_threads(),
    }
    return model.eval()


@torch.no_grad()
def ctc_loss_of(
    judge: JudgeASR, frames: Any, lengths: torch.Tensor | list[int], texts: Sequence[str]
) -> float:
    """Mean CTC loss of the judge (eval mode, no masking) on labelled speech: a training
    diagnostic that, unlike WER, moves from the very first steps."""
    lengths = check_lengths(lengths, len(frames))
    judge.eval()
    device = next(judge.parameters()).device
    total, count = 0.0, 0
    for index, mels, lens in length_sorted_batches(frames, lengths, 32):
        targets = [torch.tensor(judge.vocab.encode(texts[i])) for i in index.tolist()]
        log_probs, out_lens = judge(mels.to(device), lens.to(device))
        loss = F.ctc_loss(
            log_probs.transpose(0, 1),
            torch.cat(targets).to(device),
            out_lens,
            torch.tensor([len(t) for t in targets]),
            blank=BLANK,
            reduction="sum",
            zero_infinity=True,
        )
        total, count = total + float(loss), count + len(index)
    return total / max(count, 1)


def evaluate_judge_asr(
    judge: JudgeASR, frames: Any, lengths: torch.Tensor | list[int], texts: Sequence[str]
) -> dict:
    """WER/CER (:func:`~m3dgan.metrics.transcript.wer_cer`) of the judge's transcripts."""
    return wer_cer(judge.transcribe(frames, lengths), list(texts))


def judge_asr_path(dataset_name: str) -> Path:
    return paths.judges_dir() / f"{dataset_name}-asr.safetensors"


def load_or_train_judge_asr(
    data_root: Path | str,
    *,
    steps: int | None = None,
    recipe: AsrRecipe | None = None,
    round_trip: bool = True,
    round_trip_limit: int | None = ROUND_TRIP_LIMIT,
    device: str | torch.device = "cpu",
    progress: bool = False,
    retrain: bool = False,
) -> JudgeASR:
    """The cached judge ASR of the speech data set at ``data_root``, trained if needed.

    ``steps`` overrides ``recipe.steps``. ``judge.info`` holds the sidecar: ``arch`` (with the
    vocabulary), ``recipe``, ``train`` (training statistics: loss curve, seconds, threads),
    ``test`` (WER/CER on real test speech as stored) and ``round_trip`` (on real test speech
    after mel -> Griffin-Lim -> mel: the ceiling for TTS output, on ``round_trip_limit`` test
    utterances drawn with a fixed seed, all when None; None when ``round_trip=False``).
    """
    root = Path(data_root)
    recipe = recipe or AsrRecipe()
    if steps is not None:
        recipe = AsrRecipe(**{**asdict(recipe), "steps": steps})
    name = read_manifest(root).name
    expected = {
        "version": JUDGE_ASR_VERSION,
        "dataset": name,
        "manifest_sha256": dataset_digest(root),
        "recipe": asdict(recipe),
    }
    weights = judge_asr_path(name)
    if not retrain:
        cached = judge_cache.try_load(weights, expected, lambda arch: JudgeASR(**arch), "judge ASR")
        if cached is not None and (not round_trip or cached.info["round_trip"] is not None):
            return cached.to(device)
    train = load_speech_split(root, "train")
    if train.texts is None:
        raise DataError(f"{root}: the judge ASR needs a text side (what each utterance says)")
    judge = train_judge_asr(
        train.frames, train.lengths, train.texts, recipe, device=device, progress=progress
    )
    test = load_speech_split(root, "test")
    meta: dict = {
        **expected,
        "arch": judge.arch(),
        "train": judge.info,
        "test": evaluate_judge_asr(judge, test.frames, test.lengths, test.texts),
        "round_trip": None,
    }
    if round_trip:
        rows = round_trip_rows(len(test.lengths), round_trip_limit)
        mels, lengths = cached_round_trip(root, test, rows, progress=progress)
        texts = [test.texts[i] for i in rows.tolist()]
        meta["round_trip"] = evaluate_judge_asr(judge, mels, lengths, texts)
    judge_cache.save(judge, weights, meta)
    judge.info = meta
    return judge


def main(argv: list[str] | None = None) -> None:
    """Train (or load) the judge ASR of a speech data set and print its WER/CER."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_root", nargs="?", default=str(paths.dataset_dir("speech")))
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--no-round-trip", action="store_true")
    args = parser.parse_args(argv)
    judge = load_or_train_judge_asr(
        args.data_root,
        steps=args.steps,
        round_trip=not args.no_round_trip,
        progress=True,
        retrain=args.retrain,
    )
    info = judge.info
    train = info["train"]
    print(
        f"judge ASR: {train['steps']} steps on {train['train_size']} utterances in "
        f"{train['train_seconds']} s ({train['threads']} threads)"
    )
    print(f"  real test speech:               {info['test']}")
    if info["round_trip"] is not None:
        print(f"  test speech after Griffin-Lim:  {info['round_trip']}")
