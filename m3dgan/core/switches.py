"""Which sides each technique switch applies to: one place that refuses a switch set for a task
it cannot act on, with a clean error, before any model is built (``M3DGAN.from_config``).

A switch that only one modality's nets read would otherwise be silently ignored elsewhere (a user
would train "with" label smoothing on images and never know it did nothing).
"""

from __future__ import annotations

from m3dgan.config import Config
from m3dgan.core.objectives import get_objective
from m3dgan.errors import ConfigError
from m3dgan.modalities import ModalitySpec


def check_switches(cfg: Config, source: ModalitySpec, target: ModalitySpec) -> None:
    """Raise ConfigError naming the key for a switch that does not apply to source → target.
    Only the sides' ``kind`` is read, so ``train`` calls this with the task's kinds before its
    data set is built or read. The rules:

    - ``model.attention_guide`` other than ``diagonal``: speech targets only, and not with
      ``model.speech_decoder=duration`` (which has no attention to guide);
    - ``model.speech_decoder`` other than ``attention``: speech targets only;
    - ``model.frame_layers`` other than 4, ``model.frame_dilation`` other than 1,
      ``model.frame_style_norm``, ``model.speech_postnet``: the duration decoder's frame stack
      (``model.speech_decoder=duration``) only; ``model.frame_style_norm`` also needs an
      objective with a code (not ``mle``);
    - ``model.decoder_own_inputs``, ``model.decoder_dropout``, ``model.attentional_hidden``,
      ``loss.label_smoothing``, ``loss.normalization``: text targets only;
    - ``model.ctc_weight``: speech → text only (CTC aligns text monotonically to speech), and
      only with ``model.speech_memory_stride=2`` (at stride 4 the memory has fewer positions per
      second than espeak speech has characters);
    - ``model.speech_memory_stride`` other than 4, ``model.source_stride`` other than 1,
      ``model.speech_memory_layers`` other than 1: speech sources only;
    - ``model.reference_stride`` other than 1: image and speech targets (text's reference
      prenet is a sequence net: ``model.reference_cbhg_bank`` makes it cheaper);
    - ``model.reference_cbhg_bank`` other than 0: text targets (the CBHG is text's prenet);
    - ``model.cbhg_norm`` other than ``batch``: tasks with a text side (only text has a CBHG);
    - ``model.text_encoder`` other than ``cbhg``, ``model.subwords`` above 0: tasks with a
      text side;
    - ``model.attention_score=general``: text outputs, and speech outputs whose decoder is the
      shared core (``model.speech_attention=content``; location-sensitive attention is additive,
      the duration decoder has no attention);
    - ``train.random_share`` below 1: objectives with a random branch;
    - ``train.warmup_code=zero``: objectives with an encoded branch, and only with a warm-up;
    - ``train.length_buckets`` above 0: tasks with a text or speech side (images have one size).
    """
    mc = cfg.model
    if target.kind != "speech" and mc.attention_guide != "diagonal":
        raise ConfigError(
            f"model.attention_guide={mc.attention_guide!r} guides speech outputs' "
            f"attention, not {target.kind} ones"
        )
    if mc.speech_decoder != "attention" and target.kind != "speech":
        raise ConfigError(
            f"model.speech_decoder={mc.speech_decoder!r} is a speech output's decoder; this "
            f"task's output is {target.kind}"
        )
    if mc.speech_decoder != "duration" or target.kind != "speech":
        for key, value, default in (
            ("model.frame_layers", mc.frame_layers, 4),
            ("model.frame_dilation", mc.frame_dilation, 1),
            ("model.frame_style_norm", mc.frame_style_norm, False),
            ("model.speech_postnet", mc.speech_postnet, 0),
        ):
            if value != default:
                raise ConfigError(
                    f"{key} shapes the frame stack of model.speech_decoder=duration; this "
                    f"task's output is {target.kind} with model.speech_decoder="
                    f"{mc.speech_decoder!r}"
                )
    if mc.frame_style_norm and not get_objective(cfg.objective).uses_z:
        raise ConfigError(
            f"model.frame_style_norm takes each LayerNorm's gain and bias from the style code; "
            f"{cfg.objective!r} has no code"
        )
    if mc.speech_decoder == "duration" and mc.attention_guide != "diagonal":
        raise ConfigError(
            "model.attention_guide guides the attention decoder; model.speech_decoder=duration "
            "has no attention (its aligner already learns the alignment)"
        )
    if target.kind != "text":
        for key, value in (
            ("model.decoder_own_inputs", mc.decoder_own_inputs),
            ("model.decoder_dropout", mc.decoder_dropout),
            ("model.attentional_hidden", mc.attentional_hidden),
            ("loss.label_smoothing", cfg.loss.label_smoothing),
            ("loss.normalization", cfg.loss.normalization != "tokens"),
        ):
            if value:
                raise ConfigError(f"{key} applies to text outputs, not {target.kind} ones")
    if mc.ctc_weight and (source.kind, target.kind) != ("speech", "text"):
        raise ConfigError(
            f"model.ctc_weight applies to speech → text tasks (asr): CTC aligns the text "
            f"monotonically to the speech; this task is {source.kind} → {target.kind}"
        )
    if mc.ctc_weight and mc.speech_memory_stride != 2:
        raise ConfigError(
            "model.ctc_weight needs model.speech_memory_stride=2: at stride 4 the speech "
            "memory has 15.6 positions per second, fewer than the 17–24 characters per "
            "second of espeak speech plus their repeats, so CTC could not align most "
            "utterances"
        )
    if source.kind != "speech":
        for key, value, default in (
            ("model.speech_memory_stride", mc.speech_memory_stride, 4),
            ("model.source_stride", mc.source_stride, 1),
            ("model.speech_memory_layers", mc.speech_memory_layers, 1),
        ):
            if value != default:
                raise ConfigError(f"{key} applies to speech sources; this one is {source.kind}")
    if mc.reference_stride != 1 and target.kind not in ("image", "speech"):
        raise ConfigError(
            f"model.reference_stride applies to image and speech targets; this one is {target.kind}"
        )
    if mc.reference_cbhg_bank and target.kind != "text":
        raise ConfigError(
            f"model.reference_cbhg_bank applies to text targets; this one is {target.kind}"
        )
    if mc.cbhg_norm != "batch" and "text" not in (source.kind, target.kind):
        raise ConfigError(
            f"model.cbhg_norm applies to the CBHG of text prenets; this task is "
            f"{source.kind} → {target.kind}, which has no text side"
        )
    if mc.text_encoder != "cbhg" and "text" not in (source.kind, target.kind):
        raise ConfigError(
            f"model.text_encoder={mc.text_encoder!r} is the body of text prenets; this task is "
            f"{source.kind} → {target.kind}, which has no text side"
        )
    if mc.subwords and "text" not in (source.kind, target.kind):
        raise ConfigError(
            f"model.subwords={mc.subwords} is the vocabulary of text sides; this task is "
            f"{source.kind} → {target.kind}, which has no text side"
        )
    if mc.attention_score != "additive":
        shared_core = target.kind == "text" or (
            target.kind == "speech"
            and mc.speech_attention == "content"
            and mc.speech_decoder == "attention"
        )
        if not shared_core:
            output = target.kind
            if target.kind == "speech":
                output += (
                    f" with model.speech_decoder={mc.speech_decoder!r} and "
                    f"model.speech_attention={mc.speech_attention!r}"
                )
            raise ConfigError(
                f"model.attention_score={mc.attention_score!r} applies to the attention of text "
                f"outputs and of speech outputs with model.speech_attention=content (Tacotron 2's "
                f"location-sensitive attention is additive); this task's output is {output}"
            )
    if cfg.train.warmup_code != "encoded":
        if not get_objective(cfg.objective).encoded_branch:
            raise ConfigError(
                f"train.warmup_code={cfg.train.warmup_code!r} sets the code of the encoded "
                f"branch during the warm-up; {cfg.objective!r} has no encoded branch"
            )
        if not cfg.train.adversarial_warmup:
            raise ConfigError(
                f"train.warmup_code={cfg.train.warmup_code!r} applies during "
                f"train.adversarial_warmup, which is 0 (no warm-up); without a warm-up set "
                f"train.warmup_code=encoded as well"
            )
    if cfg.train.random_share < 1 and not get_objective(cfg.objective).random_branch:
        raise ConfigError(
            f"train.random_share applies to objectives with a random branch; "
            f"{cfg.objective!r} has none"
        )
    if cfg.train.length_buckets and not {source.kind, target.kind} & {"text", "speech"}:
        raise ConfigError(
            f"train.length_buckets sorts rows by the length of their text and speech sides; "
            f"this task is {source.kind} → {target.kind}, whose rows all have one size"
        )
