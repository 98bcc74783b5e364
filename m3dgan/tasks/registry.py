"""The task registry. Adding a task = adding one ``Task`` entry (and its data builder)."""

from __future__ import annotations

from dataclasses import dataclass, field

from m3dgan.errors import ConfigError


@dataclass(frozen=True)
class Task:
    name: str
    source: str  # modality kind of S
    target: str  # modality kind of T
    dataset: str  # data set name understood by ``m3dgan.data.build.ensure_dataset``
    # names in m3dgan.evaluate.METRICS: realism | diversity | reference | text2image |
    # captioning | translation | tts | asr
    metrics: tuple[str, ...]
    description: str = ""
    defaults: dict = field(default_factory=dict)  # config overrides, "section.key" -> value
    # the task's recipe for one objective, over ``defaults`` (objective name -> overrides): a
    # switch that only some objectives take (a warm-up, the random branch's share) lives here,
    # so ``--objective mle`` on the same task still gets a config it accepts
    objective_defaults: dict = field(default_factory=dict)
    swap_sides: bool = False  # read the data set target→source (asr reads the tts corpus)


# issue 14's recipe for `full` on text targets (en2fr, emoji2text; docs/benchmarks.md, "Text at
# equal wall-clock"). The paper's setting: --set train.domain_reference=0
# train.adversarial_warmup=0 train.warmup_code=encoded train.stack_branches=false
# train.random_share=1 model.reference_cbhg_bank=0
TEXT_TARGET_FULL_RECIPE = {
    "train.domain_reference": 1.0,
    "train.adversarial_warmup": 0.9,
    "train.warmup_code": "zero",
    "train.stack_branches": True,
    "train.random_share": 0.5,
    "model.reference_cbhg_bank": 4,
}

# issue 14's caption encoder for text2emoji (every objective; docs/benchmarks.md, "text2emoji:
# what the caption encoder costs"): a bag of sentencepiece-piece embeddings (2,000 pieces learned
# from the training captions) instead of the CBHG over characters, and Adam at 1e-3. 10 min,
# `mle`, one thread, text2emoji-seen: named top-5 1.9 % and judge score 8.3 (2,098 steps)
# against 0.4 % and 2.8 (1,518 steps) for the CBHG on characters at the same rate. The paper's
# setting: --set model.text_encoder=cbhg --set model.subwords=0 --set train.lr=0.0002
CAPTION_ENCODER = {
    "model.text_encoder": "bag",
    "model.subwords": 2000,
    "train.lr": 1e-3,
}

# issue 14's recipe for `full` on text2emoji: text targets' recipe without its text-only key
# (a reference of the domain, so e carries the vendor and the caption the emoji; 90 % of the
# time L1 from e = 0; then both branches in one pass on half the batch each). The paper's
# setting: --set train.domain_reference=0 --set train.adversarial_warmup=0
# --set train.warmup_code=encoded --set train.stack_branches=false --set train.random_share=1
TEXT_TO_IMAGE_FULL_RECIPE = {
    k: v for k, v in TEXT_TARGET_FULL_RECIPE.items() if k != "model.reference_cbhg_bank"
}
# cvae-gan is adversarial from its first step: at 1e-3 its D won at step ~1,800 and every output
# became one flat colour (30 min, judge score 1.00); at BicycleGAN's 2e-4 it scored 116.5
# (text2emoji-seen) and 106.9 (text2emoji), bench/results/text2emoji-cvaegan-lr2e-4-30min-*
TEXT_TO_IMAGE_OBJECTIVE_DEFAULTS = {
    "full": TEXT_TO_IMAGE_FULL_RECIPE,
    "cvae-gan": {"train.lr": 2e-4},
}

# issue 13's recipe for `full` on tts (docs/benchmarks.md, "tts at 120 minutes"): durations from a
# learned alignment and all frames at once (model.speech_decoder=duration) read from espeak-ng's
# phonemes; both branches in one pass with the random branch on half the batch; length-bucketed
# batches with LayerNorm in the CBHG; the moving average of the generator side decodes. 120 min
# side by side, one thread each, full widths (bench/results/tts-duration-120min): phonemes
# WER / CER 52.0 / 17.1 % and style accuracy 92.5 %, characters 62.7 / 24.3 % and 25 % (its
# reference posterior collapsed); the paper's decoder had WER ≥ 99.9 % at 30 min, the duration
# decoder CER 70.9 against 82.4 % side by side at 15 min (half widths). The paper's setting:
# --set model.speech_decoder=attention --set model.text_frontend=characters
# --set train.stack_branches=false --set train.random_share=1 --set train.length_buckets=0
# --set model.cbhg_norm=batch --set train.ema_decay=0
TTS_FULL_RECIPE = {
    "model.speech_decoder": "duration",
    "model.text_frontend": "phonemes",
    "train.stack_branches": True,
    "train.random_share": 0.5,
    "train.length_buckets": 128,
    "model.cbhg_norm": "layer",
    "train.ema_decay": 0.999,
}

TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "digits",
            "image",
            "image",
            "digits",
            ("realism", "diversity"),
            "printed digits (many fonts, random colours, 32×32) → real handwritten MNIST digits",
            # issue 12's digits recipe: 30 min on 2 cores with AMX (8,620 steps × 16 measured,
            # realism 76.3 % with the moving average, 72.1 % with the live weights; the
            # paper-setting 2,000-step job reached 68.9 %). scripts/demo.sh trains 2,000 steps.
            defaults={"train.steps": 8000, "train.ema_decay": 0.999, "train.amp": True},
        ),
        Task(
            "edges2emoji",
            "image",
            "image",
            "edges2emoji",
            ("diversity", "reference"),
            "edge maps → colour emoji (Google / Twitter artwork, 64×64); the vendor is the domain",
            # issue 12's recipe, chosen by measurement (docs/benchmarks.md): 30 min on 2 cores
            # with AMX (bf16); where bf16 is emulated train.amp falls back to fp32 (~65 min, estimated
            # from 11.4 images/s measured with oneDNN capped at AVX2)
            defaults={
                "train.steps": 2800,
                "train.domain_reference": 0.5,
                "train.cross_domain": 0.5,
                "train.ema_decay": 0.999,
                "train.amp": True,
                "model.domain_discriminator": True,
            },
        ),
        Task(
            "edges2shoes",
            "image",
            "image",
            "edges2shoes",
            ("diversity",),
            "pix2pix edges2shoes (fetch with `m3dgan data fetch edges2shoes`)",
        ),
        Task(
            "night2day",
            "image",
            "image",
            "night2day",
            ("diversity",),
            "pix2pix night2day (fetch with `m3dgan data fetch night2day`)",
        ),
        Task(
            "text2emoji",
            "text",
            "image",
            "text2emoji",
            ("text2image",),
            "emoji names and keywords → 64×64 emoji artwork (Google / Twitter; z picks the style)",
            {"train.batch_size": 16, "train.sample_every": 250, **CAPTION_ENCODER},
            objective_defaults=TEXT_TO_IMAGE_OBJECTIVE_DEFAULTS,
        ),
        Task(
            "text2emoji-seen",
            "text",
            "image",
            "text2emoji-seen",
            ("text2image",),
            "text2emoji with every emoji seen in training; test = held-out captions of them",
            {"train.batch_size": 16, "train.sample_every": 250, **CAPTION_ENCODER},
            objective_defaults=TEXT_TO_IMAGE_OBJECTIVE_DEFAULTS,
        ),
        Task(
            "emoji2text",
            "image",
            "text",
            "emoji2text",
            ("captioning",),
            "64×64 emoji artwork → its name (characters; BLEU against all its captions)",
            {"train.batch_size": 32, "train.sample_every": 250, "train.lr": 5e-4},
            # en2fr's recipe (below), measured here too: 10 minutes side by side at full widths,
            # BLEU-4 / chrF 6.9 / 18.0 against 1.4 / 12.5 for the same switches without the
            # zero warm-up (bench/results/emoji2text-screen, docs/benchmarks.md)
            objective_defaults={"full": TEXT_TARGET_FULL_RECIPE},
        ),
        Task(
            "en2fr",
            "text",
            "text",
            "en2fr",
            ("translation",),
            "English → French phrases (emoji labels, CLDR names, gettext catalogs; subwords)",
            # length-bucketed batches (1.9x the mle steps of random batches in the same time)
            # with LayerNorm in the CBHG: BatchNorm's statistics tell a net trained on batches of
            # one length that length, which evaluation does not (10 min, mle: chrF 25.9 against
            # 19.6 for random batches with BatchNorm); a conv bank of 8 (1.43x the steps) and
            # Adam at 1e-3 (10 min, mle: chrF 40.5 against 25.4 for bank 16 at 5e-4;
            # docs/benchmarks.md, "Length buckets"). Then the CBHG itself gave way to two stacked
            # bidirectional GRU layers (OpenNMT-py's brnn encoder): 30 min, mle, side by side:
            # 1.33x the steps, BLEU-4 / chrF 32.1 / 53.3 against 28.7 / 52.0 (docs/benchmarks.md,
            # "A recurrent text encoder"); the CBHG keys stay for --set model.text_encoder=cbhg.
            # An EMA of the generator side's weights (0.999, as digits and edges2emoji) is what
            # evaluate and translate decode with: 15 min side by side, the same runs decoded with
            # the average and with the live weights, BLEU-4 27.4 against 25.7 (mle) and 25.7
            # against 24.4 (full; docs/benchmarks.md, "Weight averaging").
            # The paper's setting: --set model.text_encoder=cbhg --set train.length_buckets=0
            # --set model.cbhg_norm=batch --set model.cbhg_bank=16 --set train.ema_decay=0
            {
                "train.batch_size": 32,
                "train.sample_every": 250,
                "train.lr": 1e-3,
                "train.length_buckets": 128,
                "model.text_encoder": "brnn",
                "model.cbhg_norm": "layer",
                "model.cbhg_bank": 8,
                "train.ema_decay": 0.999,
            },
            # issue 14's recipe for `full` (TEXT_TARGET_FULL_RECIPE): the reference is another
            # sentence of the target's domain, so e cannot carry the sentence (the leak); the
            # first 90 % of the wall-clock budget (or of train.steps) trains by cross-entropy
            # from e = 0 (a step costs ~1.13× an `mle` step); then both branches in one pass, the
            # random branch on half the batch, a cheaper reference prenet
            objective_defaults={"full": TEXT_TARGET_FULL_RECIPE},
        ),
        Task(
            "tts",
            "text",
            "speech",
            "speech",
            ("tts",),
            "English sentences → speech (espeak-ng, 4 styles); a reference WAV or z sets the style",
            {"train.batch_size": 16, "train.sample_every": 250, "train.lr": 5e-4},
            # issue 13's recipe for `full` (TTS_FULL_RECIPE); the baselines keep the decoders
            # their names promise (`gst`, `mle`: the paper's attention decoder on characters)
            objective_defaults={"full": TTS_FULL_RECIPE},
        ),
        Task(
            "asr",
            "speech",
            "text",
            "speech",
            ("asr",),
            "speech → characters (the tts corpus read the other way round; WER/CER)",
            # issue 13's asr recipe (docs/benchmarks.md, "asr at 15 minutes: a recipe"): hybrid
            # CTC/attention (λ 0.3, ESPnet's; the memory at stride 2 so CTC can align) decoded
            # jointly, general attention, length-bucketed batches with LayerNorm in the text
            # reference's CBHG, Adam at 1e-3 and the moving average; for `full` also text
            # targets' recipe (TEXT_TARGET_FULL_RECIPE: a reference of the domain, the warm-up
            # from e = 0, both branches in one pass). 15 min, one thread: WER / CER 31.6 / 11.8 %
            # (1,098 steps) against 111.9 / 82.9 % (343 steps) for the paper's setting:
            # --set model.ctc_weight=0 --set model.speech_memory_stride=4
            # --set model.attention_score=additive --set train.length_buckets=0
            # --set model.cbhg_norm=batch --set train.lr=5e-4 --set train.ema_decay=0
            # (and for full: --set train.domain_reference=0 --set train.adversarial_warmup=0
            # --set train.warmup_code=encoded --set train.stack_branches=false
            # --set train.random_share=1 --set model.reference_cbhg_bank=0)
            {
                "train.batch_size": 16,
                "train.sample_every": 250,
                "train.lr": 1e-3,
                "train.length_buckets": 128,
                "train.ema_decay": 0.999,
                "model.ctc_weight": 0.3,
                "model.speech_memory_stride": 2,
                "model.attention_score": "general",
                "model.cbhg_norm": "layer",
            },
            objective_defaults={"full": TEXT_TARGET_FULL_RECIPE},
            swap_sides=True,
        ),
    )
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; available: {', '.join(TASKS)}")
    return TASKS[name]
