"""The metrics of ``m3dgan evaluate`` for the speech tasks (paper Table 2d–e).

- **tts** (text→speech): for ``inputs`` test sentences, one output per style with a reference
  utterance of that style *of another sentence* (so the reference carries style, not content),
  and one output from a random code. Every output goes through the vocoder and back
  (mel → Griffin-Lim → mel), as a listener would hear it, then:

  - intelligibility: WER/CER of the judge recognizer (``metrics.judge_asr``), trained only on
    real espeak-ng audio of the training split — next to its WER on real test audio and on
    real test audio through the same vocoder round trip (the ceiling for any TTS output);
  - style transfer accuracy: the style classifier (``metrics.style_classifier``, trained on real
    audio) names the style of each output; the target is the reference's style. A model without
    a reference encoder (``mle``, the Tacotron-like baseline) is scored against the same targets:
    it cannot follow them, which is the point of the comparison;
  - the decoded length relative to the real utterance of the same sentence and style, and the
    share of outputs that stopped before the frame limit.

  With ``audio_dir`` it also writes a page (``evaluate.speech_page``): the metrics, the paper's
  content–style swap grid (4 sentences × 4 reference styles), and every output of those
  sentences with its reference, its ground truth, the judge's transcript, its own scores and
  mel thumbnails, as WAVs and PNGs beside an index.html.
- **asr** (speech→text): every test utterance (``inputs`` sentences × their styles) decoded
  without a reference (e = 0), WER and CER with jiwer on normalised transcripts.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from tqdm import tqdm

from m3dgan.audio import load_audio
from m3dgan.audio.inputs import pad_mels
from m3dgan.errors import DataError
from m3dgan.evaluate.context import Evaluation
from m3dgan.evaluate.generate import Outputs
from m3dgan.evaluate.speech_page import PAGE_SENTENCES, Spoken, flat_notes, write_tts_page
from m3dgan.metrics.judge_asr import load_or_train_judge_asr
from m3dgan.metrics.speech_batches import vocoder_round_trip
from m3dgan.metrics.speech_scores import pocketsphinx_transcribe
from m3dgan.metrics.style_classifier import load_or_train_style_classifier
from m3dgan.metrics.transcript import wer_cer
from m3dgan.modalities.speech.frames import frame_lengths

TTS_BATCH = 16  # sentences synthesized at a time
ASR_BATCH = 32  # utterances recognised at a time
TTS_INPUTS = 50  # default test sentences spoken


def _sentences(test: dict) -> OrderedDict:
    """Sentence (its text) → {style index: row}, in test-split order."""
    groups: OrderedDict = OrderedDict()
    for i, text in enumerate(test["source_text"]):
        groups.setdefault(text, {})[int(test["domain"][i])] = i
    return groups


def _synthesize(outputs: Outputs, ids, rows: list[int], refs: torch.Tensor | None = None):
    """Outputs for the ``rows`` of the sentences ``ids`` (list of [T, n_mels] cpu tensors) and
    whether each stopped before the limit; with the references ``refs`` (one per row, padded
    together), else from random codes."""
    outs, stopped = [], []
    spec = outputs.tr.target_spec
    limit = 2 * spec.size
    sources = outputs.batches(ids, TTS_BATCH, rows)
    if refs is None:
        batches = ((src, None) for src in sources)
    else:
        batches = zip(sources, outputs.batches(refs, TTS_BATCH), strict=True)
    for src, ref in batches:
        mel = outputs.translate(src, ref)
        lengths = frame_lengths(mel, spec.channels)
        for row, n in zip(mel.float().cpu(), lengths.tolist(), strict=True):
            outs.append(row[:n])
            stopped.append(n < limit)
    return outs, stopped


def tts(ev: Evaluation) -> dict:
    """Text→speech: the first ``inputs`` (50) test sentences spoken in every style, each with a
    reference utterance of that style of another sentence, and once from a random code; every
    output heard through the vocoder round trip (mel → Griffin-Lim → mel).

    ``wer_tts_ref`` / ``cer_tts_ref`` (with references) and ``wer_tts_z`` / ``cer_tts_z`` (random
    codes): word and character error rates of the judge recognizer (trained on real training
    audio only) on the outputs, ≥ 0 (above 1 when it hears more words than were said), next to
    ``wer_real`` on real test audio and ``wer_vocoded`` on real audio through the same round
    trip (the ceiling for any output). ``wer_tts_ref_per_style`` / ``cer_tts_ref_per_style``:
    the same rates by the reference's style; ``wer_vocoded_per_style``: the judge on the same
    sentences' real audio in each style through the round trip (each style's ceiling).
    ``style_accuracy_tts`` (also per style): the share of
    outputs the style classifier (trained on real audio) names as their reference's style, in
    [0, 1], next to ``style_accuracy_real`` and ``style_accuracy_vocoded``. ``length_ratio``: the
    decoded length over the real utterance's (> 0; 1 = as long); ``seconds_by_reference_style``
    and ``level_by_reference_style``: mean duration and log-mel level of the outputs by their
    reference's style, next to the real ones; ``stopped`` / ``stopped_z``: the share of outputs
    that ended before the frame limit, in [0, 1]. With ``audio_dir``, ``listening_page``: the
    page of the first 4 sentences' outputs (``evaluate.speech_page``). Paper Table 2d.
    """
    outputs, test, tr, root = ev.outputs, ev.test, ev.tr, ev.root
    sentences = _sentences(test)
    styles = sorted({s for rows in sentences.values() for s in rows if s >= 0})
    names = ev.manifest.domains or [str(s) for s in range(max(styles) + 1)]
    full = [t for t, rows in sentences.items() if all(s in rows for s in styles)]
    if len(full) < 2 or len(styles) < 1:
        raise DataError("tts evaluation needs test sentences spoken in every style (2 or more)")
    chosen = full[: ev.inputs or TTS_INPUTS]
    judge = load_or_train_judge_asr(root, steps=ev.judge_steps, device="cpu", progress=ev.progress)
    style_judge = load_or_train_style_classifier(root, progress=ev.progress)
    frames = test["target"]

    # one row per (sentence, style): the reference is the next sentence's utterance in that style
    src_rows, ref_rows, texts, want = [], [], [], []
    for k, text in enumerate(chosen):
        other = chosen[(k + 1) % len(chosen)]
        for s in styles:
            src_rows.append(sentences[text][s])
            ref_rows.append(sentences[other][s])
            texts.append(text)
            want.append(s)
    refs = frames[torch.tensor(ref_rows)]
    bar = tqdm(total=2, desc="synthesizing", disable=not ev.progress)
    outs, stopped = _synthesize(outputs, test["source"], src_rows, refs)
    bar.update()
    z_rows = [sentences[t][styles[0]] for t in chosen]
    z_outs, z_stopped = _synthesize(outputs, test["source"], z_rows)
    bar.update()
    bar.close()

    def heard(mels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return vocoder_round_trip(pad_mels(mels), [len(m) for m in mels], tr.mel_config)

    mels, lengths = heard(outs)
    z_mels, z_lengths = heard(z_outs)
    heard_texts = judge.transcribe(mels, lengths)
    z_heard = judge.transcribe(z_mels, z_lengths)
    ref_wer = wer_cer(heard_texts, texts)
    z_wer = wer_cer(z_heard, list(chosen))
    predicted = style_judge.predict(mels, lengths)
    want_t = torch.tensor(want)
    real_lengths = frames.lengths[torch.tensor(src_rows)].float()
    real = frames[torch.tensor(src_rows)].float()  # the same sentence in the wanted style
    # the judge on the same sentences' real audio in each style, through the same round trip:
    # each style's own ceiling (a fast or quiet style is harder to hear even when real)
    real_mels = [r[: int(n)] for r, n in zip(real, real_lengths, strict=True)]
    real_heard = judge.transcribe(*heard(real_mels))

    def by_style(said: list[str], key: str) -> dict[str, float]:
        return {
            names[s]: wer_cer(
                [h for h, w in zip(said, want, strict=True) if w == s],
                [t for t, w in zip(texts, want, strict=True) if w == s],
            )[key]
            for s in styles
        }

    out = {
        "sentences": len(chosen),
        "styles": [names[s] for s in styles],
        "wer_tts_ref": ref_wer["wer"],
        "cer_tts_ref": ref_wer["cer"],
        "wer_tts_ref_per_style": by_style(heard_texts, "wer"),
        "cer_tts_ref_per_style": by_style(heard_texts, "cer"),
        "wer_vocoded_per_style": by_style(real_heard, "wer"),
        "wer_tts_z": z_wer["wer"],
        "cer_tts_z": z_wer["cer"],
        "wer_real": judge.info["test"]["wer"],
        "wer_vocoded": (judge.info.get("round_trip") or {}).get("wer"),
        "style_accuracy_tts": float((predicted == want_t).float().mean()),
        "style_accuracy_tts_per_style": {
            names[s]: float((predicted[want_t == s] == s).float().mean()) for s in styles
        },
        "style_accuracy_real": style_judge.info.get("test_accuracy"),
        "style_accuracy_vocoded": style_judge.info.get("round_trip_accuracy"),
        "length_ratio": float((lengths.float() / real_lengths).mean()),
        # does the reference change the output at all? Styles differ in speed and loudness, so
        # a model that follows its reference speaks longer for "sad" than for "cheerful" and
        # more quietly for "soft" — visible here even when the style judge cannot tell
        "seconds_by_reference_style": {
            names[s]: float(lengths[want_t == s].float().mean() / tr.mel_config.frames_per_second)
            for s in styles
        },
        "real_seconds_by_style": {
            names[s]: float(real_lengths[want_t == s].mean() / tr.mel_config.frames_per_second)
            for s in styles
        },
        "level_by_reference_style": {
            names[s]: _mean_level(mels[want_t == s], lengths[want_t == s]) for s in styles
        },
        "real_level_by_style": {
            names[s]: _mean_level(real[want_t == s], real_lengths[want_t == s].long())
            for s in styles
        },
        "stopped": sum(stopped) / len(stopped),
        "stopped_z": sum(z_stopped) / len(z_stopped),
        "examples": [
            {"text": t, "heard": h} for t, h in zip(texts[:8], heard_texts[:8], strict=True)
        ],
    }
    if ev.audio_dir is not None:
        said = _Said(src_rows, outs, heard_texts, predicted, lengths, stopped, want, ref_rows)
        z_named = style_judge.predict(z_mels, z_lengths)
        z_said = _Said(z_rows, z_outs, z_heard, z_named, z_lengths, z_stopped)
        out["listening_page"] = str(_listening_page(ev, out, chosen, styles, said, z_said))
    return out


@dataclass
class _Said:
    """Outputs and what the judges made of them, one entry per output: the test ``rows`` of
    the sentences said (the ground truth), the generated ``mels``, the judge's transcripts
    (``heard``), the style judge's answers (``named``), the lengths in frames after the
    vocoder round trip, whether each stopped by itself; with references, the wanted style and
    the reference's test row."""

    rows: list[int]
    mels: list[torch.Tensor]
    heard: list[str]
    named: torch.Tensor
    lengths: torch.Tensor
    stopped: list[bool]
    want: list[int] | None = None
    reference_rows: list[int] | None = None


def _listening_page(ev: Evaluation, metrics: dict, chosen, styles, said: _Said, z_said: _Said):
    """The page of the first ``PAGE_SENTENCES`` sentences' outputs (``evaluate.speech_page``)."""
    tr, test = ev.tr, ev.test
    names = ev.manifest.domains or [str(s) for s in range(max(styles) + 1)]
    n, per = min(PAGE_SENTENCES, len(chosen)), len(styles)
    frames = test["target"]

    def spoken(name: str, made_with: str, heard: _Said, i: int) -> Spoken:
        row = heard.rows[i]
        text, truth_style = test["source_text"][row], names[int(test["domain"][row])]
        errors = wer_cer([heard.heard[i]], [text])
        named = names[int(heard.named[i])]
        if heard.want is not None:
            wanted = names[heard.want[i]]
            named += " ✓" if named == wanted else f" (wanted {wanted})"
        length = float(heard.lengths[i])
        return Spoken(
            name=name,
            text=text,
            made_with=made_with,
            mel=heard.mels[i],
            truth=frames[row].float(),
            truth_name=f"truth_{chosen.index(text)}_{truth_style}",
            truth_style=truth_style,
            heard=heard.heard[i],
            scores={
                "WER": errors["wer"],
                "CER": errors["cer"],
                "style judge": named,
                "seconds": length / tr.mel_config.frames_per_second,
                "length / ground truth": length / int(frames.lengths[row]),
                "stopped by itself": "yes" if heard.stopped[i] else "no (frame limit)",
            },
        )

    by_reference = []
    for i in range(n * per):
        k, style = i // per, names[styles[i % per]]
        item = spoken(f"grid_{k}_{style}", f"a {style} reference", said, i)
        item.reference = frames[said.reference_rows[i]].float()
        item.reference_name = f"reference_{k}_{style}"
        item.reference_text = chosen[(k + 1) % len(chosen)]
        by_reference.append(item)
    by_code = [spoken(f"z_{k}", "a random code", z_said, k) for k in range(n)]
    notes = {
        "checkpoint": tr.record.where,
        "step": tr.step,
        "objective": tr.cfg.objective,
        "weights": tr.weights,
        "seed": ev.outputs.seed,
        **flat_notes(metrics),
    }
    title = f"m3dgan evaluate: {ev.task.name} / {tr.cfg.objective}"
    style_names = [names[s] for s in styles]
    return write_tts_page(
        tr, ev.audio_dir, title, notes, chosen[:n], style_names, by_reference, by_code
    )


def _mean_level(mels: torch.Tensor, lengths: torch.Tensor) -> float:
    """Mean normalised log-mel value over real frames (higher = louder)."""
    keep = torch.arange(mels.shape[1])[None] < lengths[:, None]
    return float(mels[keep].mean())


def asr(ev: Evaluation) -> dict:
    """Speech→text: every test utterance of the first ``inputs`` test sentences (all by
    default; each in all its styles) decoded at the prior's mean, greedy or beam search. ``wer``
    and ``cer``: word and character error rates (jiwer, on normalised transcripts), ≥ 0 (above 1
    when the output has more words than the truth); where the data set keeps the test audio
    (``audio/test/<row>.flac``), ``pocketsphinx_wer`` and ``pocketsphinx_cer`` of pocketsphinx on
    the same audio as an outside reference point (None otherwise). Paper Table 2e."""
    outputs, test = ev.outputs, ev.test
    sentences: OrderedDict = OrderedDict()
    for i, text in enumerate(test["target_text"]):
        sentences.setdefault(text, []).append(i)
    keys = list(sentences)[: ev.inputs or None]
    rows = [i for k in keys for i in sentences[k]]
    hyps = outputs.texts(test["source"], rows, ASR_BATCH)
    refs = [test["target_text"][i] for i in rows]
    scores = wer_cer(hyps, refs)
    sphinx: dict = {}
    files = [ev.root / "audio" / "test" / f"{i:05d}.flac" for i in rows]
    if all(f.is_file() for f in files):
        waves = [load_audio(f, ev.tr.mel_config.sample_rate) for f in files]
        sphinx = wer_cer(pocketsphinx_transcribe(waves, progress=ev.progress), refs)
    return {
        "utterances": len(rows),
        "wer": scores["wer"],
        "cer": scores["cer"],
        "pocketsphinx_wer": sphinx.get("wer"),
        "pocketsphinx_cer": sphinx.get("cer"),
        "examples": [
            {"reference": r, "hypothesis": h} for r, h in zip(refs[:8], hyps[:8], strict=True)
        ],
    }
