"""Run configuration: plain dataclasses, saved as YAML into every run folder.

Defaults follow the paper (§4) and, where it is silent, BicycleGAN's published settings
(λ_rec = 10, λ_kl = 0.01, λ_lat = 0.5, LSGAN, Adam 2e-4 with β1 = 0.5, nz = 8).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from m3dgan.atomic import write_text
from m3dgan.errors import ConfigError
from m3dgan.tasks import get_task


class YamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that reads every float YAML 1.2 writes: ``1e-4``, ``5E-5``, ``1.0e5``.

    PyYAML resolves plain scalars by YAML 1.1's rules, where a float needs a dot and a signed
    exponent, so ``1e-4`` (the usual way to write a learning rate) would be the *string*
    ``'1e-4'``. This loader's float pattern also takes an exponent without a dot or without a
    sign; everything else resolves exactly as in ``SafeLoader`` (which is left untouched). Every
    YAML the project reads from a user goes through :func:`load_yaml`.
    """


_FLOAT_1_2 = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
# a copy of SafeLoader's table with the float pattern swapped in place (the order of the
# resolvers for a first character decides between int, float and timestamp, so it is kept)
YamlLoader.yaml_implicit_resolvers = {
    first: [
        (tag, _FLOAT_1_2 if tag == "tag:yaml.org,2002:float" else pattern)
        for tag, pattern in resolvers
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(text: str) -> Any:
    """Parse YAML text safely (no object construction), with YAML 1.2's floats."""
    return yaml.load(text, Loader=YamlLoader)  # safe: YamlLoader is a SafeLoader


@dataclass
class ModelConfig:
    nz: int = 8  # size of the Gaussian reference embedding: KL and z ~ N(0, I) live here
    num_tokens: int = 10  # universal token layer: number of learned tokens (paper: 10)
    token_heads: int = 4  # heads of the token layer's multi-head attention
    domain_dim: int = 64  # size of the domain embedding (weighted sum of tokens) fed to G
    ref_channels: list[int] = field(default_factory=lambda: [64, 64, 128, 128])  # Enc_r convs
    ref_gru: int = 128  # Enc_r GRU units; its last state is the reference embedding
    prenet_channels: list[int] = field(default_factory=lambda: [32, 32])  # M_in for images
    gen_blocks: int = 6  # residual blocks down and up (paper: 6 + 6)
    gen_channels: int = 32  # channels after the first down block; doubled per level
    gen_max_channels: int = 128
    disc_channels: int = 64
    disc_layers: int = 3
    # how the image generator doubles the resolution: "deconv" (a 4×4 stride-2 transposed conv,
    # the paper's deconv2d) | "resize" (nearest-neighbour ×2, then a 3×3 conv: no checkerboard;
    # Odena et al. 2016, "Deconvolution and checkerboard artifacts")
    upsample: str = "deconv"
    # normalisation in the image discriminators: "instance" (PatchGAN as in pix2pix/BicycleGAN)
    # | "spectral" (spectral norm on every conv weight, no instance norm; Miyato et al. 2018)
    disc_norm: str = "instance"
    # D_enc with one output per domain of the data set (StarGAN v2's multi-task discriminator):
    # a real target is judged by its domain's output, an encoded fake by its reference's, so an
    # output in the wrong domain reads as fake. Needs domain labels; image targets
    domain_discriminator: bool = False
    # -- text (paper §4, appendix §7; Tacotron's encoder and decoder) --
    text_embed: int = 128  # character / subword embedding size
    text_prenet: list[int] = field(default_factory=lambda: [256, 128])  # FC layers before CBHG
    cbhg_bank: int = 16  # K: Conv1D bank widths 1..K
    cbhg_channels: int = 128  # units of each bank conv, projections and highway layers
    cbhg_highway: int = 4  # highway layers
    # normalisation after each CBHG conv: "batch" (BatchNorm, Tacotron's and the paper's) |
    # "layer" (LayerNorm over the channels of each position: nothing read from the rest of the
    # batch, so length-bucketed batches cannot leak their length; m3dgan.modalities.text.nets)
    cbhg_norm: str = "batch"
    # the body of a text prenet after its FC layers: "cbhg" (Tacotron's, the paper's: conv bank,
    # highways, one bidirectional GRU) | "brnn" (not the paper's: two stacked bidirectional GRU
    # layers and nothing else, as OpenNMT-py's default ``encoder_type brnn`` with ``layers 2``;
    # the cbhg_* keys are then unread) | "bag" (not the paper's: one position-wise linear layer,
    # so the pooled sentence vector is a bag of token embeddings, fastText's; for captions).
    # m3dgan.modalities.text.nets
    text_encoder: str = "cbhg"
    # the units of a text side whose data set reads it as characters: 0 (characters, the
    # paper's) | N > 256 (a sentencepiece unigram model of about N pieces, a soft limit, trained
    # on that side's training text when the run starts and saved in its checkpoint; OpenNMT-py
    # and fairseq learn theirs from the training data the same way). A data set with its own
    # subword model (en2fr) refuses it. m3dgan.data.tensors.build_vocabularies
    subwords: int = 0
    text_gru: int = 128  # units per direction of the encoder's bidirectional GRU
    decoder_attention_rnn: int = 256  # attention RNN: 2-layer residual GRU
    decoder_rnn: int = 256  # decoder RNN: GRU
    # -- speech (paper §4: mel frames through the shared sequential decoder; Tacotron's settings) --
    frames_per_step: int = 3  # mel frames the decoder predicts per step (Tacotron's r)
    # FC layers over the previous frame
    frame_prenet: list[int] = field(default_factory=lambda: [256, 128])
    frame_dropout: float = 0.5  # prenet dropout, kept on at inference too (Tacotron's finding)
    speech_attention: str = "location"  # location-sensitive + input feeding | content (parallel)
    guided_attention: float = 1.0  # weight of the diagonal attention prior (0: off; see decoder)
    # what the guided attention of speech outputs measures distance from: "diagonal" (Tachibana
    # et al. 2018) | "learned" (a monotonic alignment from an aligner trained with the
    # forward-sum loss, RAD-TTS; m3dgan.modalities.speech.align)
    attention_guide: str = "diagonal"
    # the speech target's decoder: "attention" (the paper's: Tacotron-style, frame after frame,
    # attention over the source) | "duration" (not the paper's: durations from a learned
    # alignment, all frames at once, FastSpeech 2 / RAD-TTS; m3dgan.modalities.speech.duration_decoder)
    speech_decoder: str = "attention"
    # the duration decoder's frame stack (model.speech_decoder=duration): how many residual
    # convs of kernel 5 run over the regulated frames, and how their dilation grows: 1 (every
    # conv dilation 1: 4 convs see 17 frames, 0.27 s) | 2 (conv i has dilation 2^i, as in
    # WaveNet: 4 convs see 61 frames, 0.98 s, with the same multiply-adds; timed 1.00 against
    # 0.92 s a tts full step, 2 threads: bench/results/step_time_tts_switches)
    frame_layers: int = 4
    frame_dilation: int = 1
    # the duration decoder's frame stack: False (each conv's LayerNorm has its own learned gain
    # and bias; z reaches the frames only through the regulated memory) | True (style-adaptive
    # LayerNorm, Meta-StyleSpeech's SALN: each LayerNorm's gain and bias are linear in z, so
    # the style code acts on every layer). Objectives with a code (z) only
    frame_style_norm: bool = False
    # the duration decoder's postnet: 0 (none) | C channels: 5 convs of kernel 5 (C wide, the
    # last back to the mels) predict a residual that refines the frames, trained by L1 before
    # and after it (Tacotron 2's postnet: C = 512, tanh; LayerNorm here, not BatchNorm, so a
    # row does not depend on its batch)
    speech_postnet: int = 0
    source_attention: bool = True  # sequence outputs attend over the source (False: the paper's
    # single global source embedding, kept for the ablation that shows what it loses)
    # how the shared attention-RNN decoder (text outputs; speech outputs with
    # speech_attention=content) scores memory positions: "additive" (Bahdanau et al. 2015,
    # Tacotron's, whose decoder the paper follows; v·tanh(W q + U m) builds a [B, T, M, 256]
    # tensor per teacher-forced pass) | "general" (Luong et al. 2015, OpenNMT-py's default
    # global_attention: (W q)·(U m) scaled by 1/sqrt(256), one batched matmul;
    # m3dgan.modalities.sequence_decoder)
    attention_score: str = "additive"
    # text outputs: dropout p on the source memory states the decoder attends over and on the
    # decoder's [state, context] features before the vocabulary layer, in training only
    # (OpenNMT-py applies its dropout 0.3 to the attentional output and between RNN layers);
    # 0: none (the paper's decoder; its prenet dropout 0.2 stays either way)
    decoder_dropout: float = 0.0
    # text outputs: what the vocabulary layer reads. 0: the decoder's [state, context]
    # (decoder_rnn + memory width, z included; the paper's decoder, as Tacotron's) | H: Luong's
    # attentional hidden state h̃ = tanh(W_c [state; context]) of H units (Luong et al. 2015,
    # eq. 5; OpenNMT-py's global attention output, H = its hidden size), a smaller input for the
    # step's largest matmul (vocabulary × width)
    attentional_hidden: int = 0
    # text outputs: share of teacher-forced decoder inputs replaced, in training, by the decoder's
    # own greedy predictions from a first pass (parallel scheduled sampling, Duckworth et al.
    # 2019), so the decoder learns to go on from its own mistakes; 0: plain teacher forcing
    decoder_own_inputs: float = 0.0
    # speech → text (asr): hybrid CTC/attention (Watanabe et al. 2017; ESPnet's mtlalpha, which
    # its recipes set to about 0.3). λ in [0, 1): a CTC head on the speech memory, the text loss
    # becomes (1 − λ) · attention cross-entropy + λ · CTC, and beam search scores hypotheses
    # with (1 − λ) · log p_att + λ · log p_ctc (CTC prefix scores). 0: attention only. Needs a
    # speech source whose memory is long enough: model.speech_memory_stride 2
    ctc_weight: float = 0.0
    # time stride of a speech *source*'s attention memory (m3dgan.modalities.speech.nets
    # SpeechMemory): 4 (two stride-2 convs, 15.6 positions/s at 62.5 frames/s) | 2 (the second
    # conv keeps the time resolution: 31.25 positions/s, enough for CTC on speech of about
    # 15 characters/s)
    speech_memory_stride: int = 4
    # stride of the first conv of a speech *source*'s prenet (asr), on time and frequency: 1 (the
    # paper: the prenet keeps full resolution) | 2 (a quarter of the positions for the prenet's
    # second conv and the memory's convs, whose strides then make up model.speech_memory_stride)
    source_stride: int = 1
    # bidirectional GRU layers of a speech source's memory (SpeechMemory, asr): 1 (as before) |
    # more (ESPnet's encoders and the judge ASR stack 3 or more)
    speech_memory_layers: int = 1
    # stride of the first conv of the *reference* prenet (M_in in front of Enc_r), on both axes
    # of an image and on time and frequency of a mel: 1 (the paper: the prenet keeps full
    # resolution) | 2 (a quarter of the positions for the prenet's second conv and all of Enc_r,
    # as GST's reference encoder, whose every conv has stride 2). Image and speech targets
    reference_stride: int = 1
    # K of the Conv1D bank (widths 1..K) in the *reference* prenet of a text target: 0 = the
    # source prenet's cbhg_bank (the paper: one prenet shape). Enc_r runs twice in a ``full``
    # step (on R, and on the random output for latent regression), and the bank is most of its
    # cost: K = 16 sums to 136 kernel taps per channel pair, K = 4 to 10. Text targets
    reference_cbhg_bank: int = 0
    # TTS text front end (m3dgan.modalities.text.frontend), for the text source of a text →
    # speech task only: cleaners "none" (the data set's text, as before) | "basic" (lower case)
    # | "english" (numbers, ordinals, currency, percentages and common abbreviations spelled
    # out, then lower case); inputs "characters" | "phonemes" (IPA from espeak-ng, en-us)
    text_cleaners: str = "none"
    text_frontend: str = "characters"


@dataclass
class LossConfig:
    gan_mode: str = "lsgan"  # lsgan | vanilla | hinge
    lambda_rec: float = 10.0
    lambda_kl: float = 0.01
    lambda_lat: float = 0.5
    lambda_1: float = 1.0  # weight of L_VAE-GAN in L_all (eq. 8)
    lambda_2: float = 1.0  # weight of L_lat-GAN
    lambda_3: float = 1.0  # weight of the distance regularization
    dist_form: str = "hinge"  # hinge (bounded, default) | mode-seeking (MSGAN's 1/(ratio+ε))
    dist_tau: float = 0.1  # hinge: ratio of output to code distance above which L_dist is 0
    # DiffAugment policies applied to every image the discriminators judge, real and fake, in
    # both updates (m3dgan.core.augment): "" (off, the paper) or a comma list of
    # color, translation, cutout (Zhao et al. 2020 use all three)
    diffaugment: str = ""
    # matching-aware discriminators (GAN-INT-CLS, Reed et al. 2016; not in the paper): weight of a
    # third discriminator term that scores a real target beside *another row's* source as fake,
    # so D must check that the output fits its source, not only that it looks real, and G cannot
    # ignore the source (text2emoji's samples did: the reference and z set the whole image).
    # 0: off (the paper). Reed et al. weigh the wrong pair and the fake as half each
    mismatch: float = 0.0
    # text outputs: label smoothing ε of the reconstruction cross-entropy (Szegedy et al. 2016;
    # OpenNMT and fairseq use 0.1): (1 − ε) · NLL + ε · mean over the vocabulary of −log p
    label_smoothing: float = 0.0
    # text outputs: what the reconstruction cross-entropy is averaged over. "tokens": the batch's
    # real tokens (every token weighs the same within a batch); "sentences": summed over a row's
    # tokens, averaged over the rows (OpenNMT-py's default `normalization sents`), so a long
    # sentence weighs more than a short one whatever the batch holds, which matters when batches
    # hold sentences of one length (train.length_buckets). About the mean length times larger
    normalization: str = "tokens"


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 16
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    seed: int = 0
    log_every: int = 25
    sample_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = False  # mixed precision (bf16 on CPU, fp16/bf16 on CUDA)
    channels_last: bool = True  # NHWC layout: faster on CUDA (tensor cores) and, here, on CPU
    compile: bool = False  # torch.compile the generator and discriminators
    # bitwise-repeatable runs (torch.use_deterministic_algorithms; slower on GPU)
    deterministic: bool = False
    # divergence guard: a NaN/Inf loss rolls back to the last checkpoint with the learning rate
    # multiplied by rollback_lr_factor, at most max_rollbacks times per run, then stops the run
    max_rollbacks: int = 3
    rollback_lr_factor: float = 0.5
    # the same rollback when the reconstruction loss's last ~5 steps average more than
    # spike_factor × its ~100-step average (a finite spike; m3dgan.guard.SpikeDetector); 0: off
    spike_factor: float = 0.0
    # wall-clock budget: stop (with a checkpoint) once training has taken this many minutes over
    # all sessions of the run, even before train.steps (0: no budget, train.steps decides)
    max_minutes: float = 0.0
    # what one training example is made of (m3dgan.data.pairing): domain_reference is the
    # probability that the reference R is another sample of the target's domain showing other
    # content instead of the target itself (0: the paper's R = T; from such a sample the encoder
    # can carry the domain only); cross_domain: probability of pairing T with the source of the same
    # content in another domain (edges of the other vendor's drawing), so S does not tell it
    domain_reference: float = 0.0
    cross_domain: float = 0.0
    # decay of an exponential moving average of the generator side's weights (prenets, E_att,
    # G), which the training samples, translate and evaluate then use; 0: off. In [0, 1); with
    # the warm-up min(ema_decay, (1 + k) / (10 + k)) at update k (m3dgan.core.ema). StarGAN v2
    # uses 0.999
    ema_decay: float = 0.0
    # the first share of the run (of train.max_minutes when set, else of train.steps) trains the
    # generator side on reconstruction + KL only, with no discriminator and no random branch (an
    # mle-cost step), then the objective's full step takes over: MLE pre-training of the
    # generator, as text GANs do (SeqGAN, Yu et al. 2017). 0: the paper (adversarial from step 1)
    adversarial_warmup: float = 0.0
    # the code G gets during that warm-up. "encoded": e ~ q(e | R), with the KL term (the whole
    # encoded branch); "zero": e = 0, the code translate uses without a reference, and no Enc_r
    # pass and no KL: the step costs what an ``mle`` step costs, and G pre-trains on the code it
    # is tested with. Enc_r starts training when the objective's full step takes over
    warmup_code: str = "encoded"
    # run the encoded and the random branch through G as one batch of 2B (one decoding loop per
    # step for text and speech outputs instead of two); the same function row by row, except that
    # the decoders' dropout masks are drawn in another order. false: one pass per branch
    stack_branches: bool = False
    # the share of each batch's rows (the first round(share · B), at least one) that the random
    # branch takes (G(S, z_s), D_rand, the latent regression and the distance term); the encoded
    # branch keeps every row. 1: the paper (both branches on the whole batch); BicycleGAN's
    # official code splits each batch in halves (0.5). In (0, 1]
    random_share: float = 1.0
    # length buckets (m3dgan.data.batching): each epoch's shuffled rows are taken in pools of
    # this many batches, and each pool is sorted by the length of the text and speech sides
    # before it is cut into batches, so a batch's rows have similar lengths and carry less
    # padding (OpenNMT-py's bucket_size, fairseq's batching by size). 0: random batches (the
    # paper's and our default); no effect on image-only tasks
    length_buckets: int = 0


@dataclass
class Config:
    task: str = "digits"
    objective: str = "full"
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path) -> None:
        """Write as YAML, atomically (``m3dgan.atomic``; OutputError when the disk is full)."""
        write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(str(k) for k in set(data) - set(known))  # YAML keys need not be strings
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{where}.{name}")
        else:
            kwargs[name] = _coerce(value, default, f"{where}.{name}")
    return cls(**kwargs)


def _coerce(value: Any, default: Any, where: str) -> Any:
    """Accept a value of the default's type (ints where floats are expected too)."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, list):
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(f"{where}: expected a list of integers, got {value!r}")
        return value
    if not isinstance(value, type(default)) or isinstance(value, bool) != isinstance(default, bool):
        raise ConfigError(f"{where}: expected {type(default).__name__}, got {value!r}")
    return value


# Ranges the types alone do not express; a value outside them would fail deep inside training.
# other ints must be >= 1
_AT_LEAST_ZERO = {
    "model.cbhg_highway",
    "model.attentional_hidden",
    "model.speech_postnet",
    "model.reference_cbhg_bank",
    "model.subwords",
    "train.keep_checkpoints",
    "train.max_rollbacks",
    "train.length_buckets",
}
_ANY_INT = {"train.seed"}
_CHOICES = {
    "loss.gan_mode": ("lsgan", "vanilla", "hinge"),
    "loss.dist_form": ("hinge", "mode-seeking"),
    "model.upsample": ("deconv", "resize"),
    "model.disc_norm": ("instance", "spectral"),
    "model.attention_guide": ("diagonal", "learned"),
    "model.speech_decoder": ("attention", "duration"),
    "model.frame_dilation": (1, 2),
    "model.text_cleaners": ("none", "basic", "english"),  # m3dgan.modalities.text.frontend
    "model.text_frontend": ("characters", "phonemes"),
    "model.speech_memory_stride": (4, 2),
    "model.reference_stride": (1, 2),
    "model.source_stride": (1, 2),
    "model.cbhg_norm": ("batch", "layer"),
    "model.text_encoder": ("cbhg", "brnn", "bag"),
    "model.attention_score": ("additive", "general"),
    "train.warmup_code": ("encoded", "zero"),
    "loss.normalization": ("tokens", "sentences"),
}
_UNIT_INTERVAL = {
    "train.beta1",
    "train.beta2",
    "train.ema_decay",
    "train.adversarial_warmup",
    "model.ctc_weight",
    "model.decoder_dropout",
}  # [0, 1)
_PROBABILITY = {
    "train.cross_domain",
    "train.domain_reference",
    "model.decoder_own_inputs",
    "loss.label_smoothing",
}  # [0, 1]
_SHARE = {"train.random_share"}  # (0, 1]
_POSITIVE_FLOAT = {"train.lr"}  # other floats (loss weights, tau) must be finite and >= 0


DIFFAUGMENT_POLICIES = ("color", "translation", "cutout")  # m3dgan.core.augment


def diffaugment_policy(spec: str) -> tuple[str, ...]:
    """``"color,translation"`` → ``("color", "translation")``; ``""`` → ``()`` (off).

    Raises ConfigError for an unknown policy."""
    names = tuple(p.strip() for p in spec.split(",") if p.strip())
    unknown = [p for p in names if p not in DIFFAUGMENT_POLICIES]
    if unknown:
        raise ConfigError(
            f"config.loss.diffaugment: unknown policy {unknown}; "
            f"choose from {list(DIFFAUGMENT_POLICIES)}"
        )
    return names


def _check_ranges(cfg: Config) -> None:
    diffaugment_policy(cfg.loss.diffaugment)
    for section in ("model", "loss", "train"):
        for f in fields(getattr(cfg, section)):
            where, value = f"{section}.{f.name}", getattr(getattr(cfg, section), f.name)
            _check_value(where, value)
    if cfg.model.domain_dim % cfg.model.token_heads:
        raise ConfigError(
            f"config.model.domain_dim ({cfg.model.domain_dim}) must be divisible by "
            f"model.token_heads ({cfg.model.token_heads})"
        )
    if cfg.model.text_cleaners != "none" or cfg.model.text_frontend != "characters":
        task = get_task(cfg.task)
        if (task.source, task.target) != ("text", "speech"):
            raise ConfigError(
                f"config.model.text_cleaners / model.text_frontend apply to the text source of a "
                f"text → speech task; task {cfg.task!r} is {task.source} → {task.target}, so "
                f"leave them at 'none' / 'characters'"
            )
    if 0 < cfg.model.subwords <= 256:
        raise ConfigError(
            f"config.model.subwords: expected 0 (characters) or more than 256 pieces (the 256 "
            f"byte pieces of unseen characters come first), got {cfg.model.subwords}"
        )
    if not 0 <= cfg.train.seed < 2**32:
        raise ConfigError(f"config.train.seed must be in [0, 2**32), got {cfg.train.seed}")
    device = cfg.train.device
    if device != "auto":
        try:
            import torch  # here, so reading a config (``m3dgan --help``, tasks) needs no torch

            torch.device(device)
        except (RuntimeError, ValueError) as exc:
            raise ConfigError(
                f"config.train.device: {device!r} is not a device (auto | cpu | cuda | cuda:N)"
            ) from exc


def _check_value(where: str, value: Any) -> None:
    bad = None
    if where in _CHOICES:
        if value not in _CHOICES[where]:
            bad = f"one of {list(_CHOICES[where])}"
    elif isinstance(value, (bool, str)) or where in _ANY_INT:
        return
    elif isinstance(value, int):
        low = 0 if where in _AT_LEAST_ZERO else 1
        if value < low:
            bad = f">= {low}"
    elif isinstance(value, float):
        if where in _UNIT_INTERVAL:
            if not 0.0 <= value < 1.0:
                bad = "in [0, 1)"
        elif where in _PROBABILITY:
            if not 0.0 <= value <= 1.0:
                bad = "a probability in [0, 1]"
        elif where in _SHARE:
            if not 0.0 < value <= 1.0:
                bad = "a share in (0, 1]"
        elif not math.isfinite(value) or value < 0 or (where in _POSITIVE_FLOAT and value == 0):
            bad = "a finite number > 0" if where in _POSITIVE_FLOAT else "a finite number >= 0"
    elif isinstance(value, list) and (not value or min(value) < 1):
        bad = "a non-empty list of integers >= 1"
    if bad:
        raise ConfigError(f"config.{where}: expected {bad}, got {value!r}")


def config_from_dict(data: dict[str, Any]) -> Config:
    cfg = _build(Config, data, "config")
    _check_ranges(cfg)
    return cfg


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings a YAML config file names (a nested mapping), checked like a whole config.

    An empty file is an error (a config names at least one setting); so are unknown keys and
    bad values, each named with the file's path."""
    path = Path(path)
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such config file") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: is a directory, not a config file") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc})") from exc
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from exc
    if data is None:
        raise ConfigError(f"{path}: empty config file (no settings in it)")
    try:
        config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return data


def load_config(path: Path) -> Config:
    """A YAML config file as a whole config (settings it does not name: built-in defaults)."""
    return config_from_dict(read_config_file(path))


def _merge(into: dict[str, Any], settings: dict[str, Any]) -> None:
    for key, value in settings.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def layered_config(
    task: str | None = None,
    objective: str | None = None,
    config_file: Path | None = None,
    flags: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
) -> Config:
    """The config of a new run, each layer over the one before:

    built-in defaults < the task's defaults (``m3dgan.tasks``) < the task's recipe for the
    objective (``Task.objective_defaults``) < the ``--config`` file <
    flags (``--steps``, ``--batch-size``, ``--device``: ``flags`` maps ``train.<key>`` to a
    value, ``None`` = not given) < ``--set`` overrides.

    The task and objective are the arguments if given, else the file's, else the defaults.
    Raises ConfigError for an unknown task, key or bad value (naming the file or override).
    """
    file_data = read_config_file(config_file) if config_file else {}
    defaults = Config()
    task = task or file_data.get("task") or defaults.task
    objective = objective or file_data.get("objective") or defaults.objective
    data = defaults.to_dict()
    recipe = get_task(task)
    for key, value in {**recipe.defaults, **recipe.objective_defaults.get(objective, {})}.items():
        section, leaf = key.split(".")
        data[section][leaf] = value
    _merge(data, file_data)
    data["task"], data["objective"] = task, objective
    for key, value in (flags or {}).items():
        if value is not None:
            section, leaf = key.split(".")
            data[section][leaf] = value
    return apply_overrides(config_from_dict(data), overrides or [])


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``section.key=value`` overrides (value parsed as YAML), e.g. ``train.lr=1e-4``."""
    data = cfg.to_dict()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        node, path = data, []
        *parents, leaf = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                hint = _valid_keys(node, path, part, sections=True)
                raise ConfigError(f"override {item!r}: no section {part!r}; {hint}")
            node = node[part]
            path.append(part)
        if leaf not in node:
            hint = _valid_keys(node, path, leaf, sections=False)
            raise ConfigError(f"override {item!r}: unknown key {key!r}; {hint}")
        try:
            node[leaf] = load_yaml(raw)
        except (yaml.YAMLError, RecursionError) as exc:
            problem = " ".join(str(exc).split())  # YAML's message spans lines; the CLI prints one
            raise ConfigError(f"override {item!r}: value is not valid YAML ({problem})") from exc
    return config_from_dict(data)


def _valid_keys(node: dict[str, Any], path: list[str], wrong: str, sections: bool) -> str:
    """What a mistyped override could have meant: the sections, or the keys of its section."""
    where = ".".join(path)
    subsections = [k for k, v in node.items() if isinstance(v, dict)]
    if sections and subsections:
        names = subsections
        text = f"sections{f' of {where}' if where else ''}: {', '.join(names)}"
    elif sections:
        names = []
        text = f"{where} has no sections; its keys: {', '.join(node)}"
    else:
        names = list(node)
        if where:
            text = f"valid keys of {where}: {', '.join(names)}"
        else:
            plain = [k for k in node if k not in subsections]
            text = f"valid keys: {', '.join(plain)}; sections (section.key=...): {', '.join(subsections)}"
    close = difflib.get_close_matches(wrong, names, n=1)
    return text + (f" (did you mean {close[0]!r}?)" if close else "")
