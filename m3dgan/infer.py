"""Translation API used by the CLI, the evaluator and the benchmark.

from m3dgan.infer import Translator
tr = Translator.from_checkpoint("runs/digits")
outs = tr.translate(tr.read_source("seven.png"), samples=5)          # random domains
outs = tr.translate(tr.read_source("seven.png"), reference=tr.read_reference("mnist_3.png"))

tr = Translator.from_checkpoint("runs/en2fr")                          # text sides
tr.decode(tr.translate(tr.encode_text("open file"), beam_size=4))      # -> ["ouvrir le fichier"]

tr = Translator.from_checkpoint("runs/tts")                            # speech target
mels = tr.translate(tr.encode_text("Hello there."), reference=tr.read_references(["angry.wav"]))
tr.to_waves(mels)                                                      # Griffin-Lim, 16 kHz
tr.translate(tr.encode_text("Hi."), token_weights=parse_token_weights("3:0.7,5:0.3", 10))

Files are read and written by each side's modality (``m3dgan.modalities``), whose module
docstrings give the input policies: text (empty or too long: ``InputError``, exit 2 from the CLI;
unknown characters: <unk> with a warning), audio (any rate and channel count, ends trimmed,
length limits) and images (read upright in their true tonal range, non-square ones
centre-cropped with a warning). Outputs are named after the input file's stem;
:func:`check_output_names` refuses inputs whose outputs would collide.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from m3dgan import checkpoint as ckpt
from m3dgan.atomic import make_folder
from m3dgan.audio import MelConfig
from m3dgan.core.model import M3DGAN
from m3dgan.device import resolve_device
from m3dgan.errors import CheckpointError, InputError
from m3dgan.modalities import Modality, ModalitySpec
from m3dgan.modalities.text.vocab import Vocabulary
from m3dgan.run_record import RunRecord


def output_stem(path: str | Path) -> str:
    """The name an input file's outputs start with: its file name without folder and suffix."""
    return Path(path).stem


# outputs per input with random codes when the caller does not say (``m3dgan translate``)
DEFAULT_SAMPLES = 4

# what set each output's domain → the tag in its file name (``Translator._write``)
OUTPUT_TAGS = {"reference": "ref", "tokens": "tok", "random": "z"}

# ``Translator._write``'s file names: <stem>_<tag><k><the target modality's suffix>
OUTPUT_NAME = rf"(?P<stem>.+)_(?:{'|'.join(OUTPUT_TAGS.values())})\d+\.[A-Za-z0-9]+"


def earlier_outputs(folder: Path, stems: list[str]) -> list[str]:
    """Names of files in ``folder`` that translating inputs of these ``stems`` writes (case is
    ignored, as ``check_output_names`` ignores it), sorted."""
    wanted = {s.casefold() for s in stems}
    if not folder.is_dir():
        return []
    matches = ((p.name, re.fullmatch(OUTPUT_NAME, p.name, re.IGNORECASE)) for p in folder.iterdir())
    return sorted(name for name, m in matches if m and m.group("stem").casefold() in wanted)


def check_output_names(paths: list[Path]) -> None:
    """InputError naming both inputs when two of them would write the same output files.

    Outputs are ``<stem>_<tag><k>.<ext>`` (:meth:`Translator.translate_file`), so two inputs
    with the same stem — ``a/digit.png`` and ``b/digit.png``, ``digit.png`` and ``digit.jpg``,
    or one file given twice — would overwrite each other's results. Stems are compared without
    case, as the file systems of macOS and Windows compare names. Checked before anything is
    read or written."""
    seen: dict[str, Path] = {}
    for path in paths:
        key = output_stem(path).casefold()
        if key in seen:
            raise InputError(
                f"inputs {seen[key]} and {path} would write the same output files "
                f"({output_stem(path)}_*): output names come from the file name without its "
                "folder and suffix; rename one, or translate them in separate runs with "
                "different --out folders"
            )
        seen[key] = path


class Translator:
    """A trained model ready to translate: its weights, its :class:`RunRecord` (config, sides,
    vocabularies, mel settings), the modality of each side with its codec (``source``,
    ``target``: they read input files and write outputs) and the device it runs on. ``step``:
    the checkpoint's step. ``weights``: which weights the generator side carries, ``"ema"``
    (the moving average a run with ``train.ema_decay`` > 0 keeps, ``m3dgan.core.ema``) or
    ``"live"`` (the optimizer's).

    Raises CheckpointError when a side's codec (a vocabulary, the mel settings) is missing or
    damaged."""

    def __init__(
        self,
        model: M3DGAN,
        record: RunRecord,
        device: torch.device,
        step: int | None = None,
        weights: str = "live",
    ) -> None:
        self.model, self.record, self.device, self.step = model.eval(), record, device, step
        self.weights = weights
        self.cfg = record.config
        self.source: Modality = record.modality("source")
        self.target: Modality = record.modality("target")
        # each text side's vocabulary: its modality's codec (decoded once, from the record)
        self.vocabs: dict[str, Vocabulary] = {
            side: m.codec
            for side, m in (("source", self.source), ("target", self.target))
            if isinstance(m.codec, Vocabulary)
        }

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str = "auto", use_ema: bool = True
    ) -> Translator:
        """Load from a run folder (newest good checkpoint) or one checkpoint file.

        ``use_ema``: the generator side gets the checkpoint's moving average of its weights
        when it has one (runs with ``train.ema_decay`` > 0; ``weights`` is then ``"ema"``);
        False, or a checkpoint without one: the live weights (``"live"``).

        Raises CheckpointError for a damaged checkpoint or weights of another model."""
        checkpoint = ckpt.load_latest(Path(path))
        record = RunRecord.from_dict(checkpoint.meta, str(checkpoint.path))
        dev = resolve_device(device)
        model = M3DGAN.from_config(
            record.config, record.source, record.target, len(record.domains)
        )
        checkpoint.load_model(model)
        weights = "ema" if use_ema and checkpoint.load_ema(model) else "live"
        return cls(model.to(dev), record, dev, checkpoint.step, weights)

    @property
    def source_spec(self) -> ModalitySpec:
        return self.model.source_spec

    @property
    def target_spec(self) -> ModalitySpec:
        return self.model.target_spec

    @property
    def has_code(self) -> bool:
        """Whether the objective has a latent code (pix2pix has none: one output per source,
        references and random codes do not apply)."""
        return self.model.attention is not None

    def check_beam_size(self, beam_size: int) -> None:
        """InputError for a beam size below 1, or above 1 for a target without beam search."""
        if beam_size < 1:
            raise InputError(f"beam size must be at least 1, got {beam_size}")
        if beam_size > 1 and not self.target.beam_search:
            raise InputError(
                f"beam search applies to text outputs; this model's target is {self.target.kind}"
            )

    def check_token_layer(self) -> None:
        """InputError when the objective has no token layer to weight."""
        if not self.has_code or self.model.attention.tokens is None:
            raise InputError(f"objective {self.cfg.objective!r} has no token layer to weight")

    def _side(self, side: str) -> Modality:
        if side not in ("source", "target"):
            raise ValueError(f"side must be 'source' or 'target', not {side!r}")
        return self.source if side == "source" else self.target

    def encode_text(self, text: str, side: str = "source") -> torch.Tensor:
        """A string → ids [1, L] for a text side (see ``modalities/text/modality.py`` for the
        policy); InputError for a side that is not text."""
        return self._side(side).from_text(text).to(self.device)

    def decode(self, ids: torch.Tensor) -> list[str]:
        """Output ids [N, L] → strings (text targets)."""
        return self.target.decode(ids)

    @property
    def mel_config(self) -> MelConfig:
        """The mel settings of the data set the model was trained on, used to read audio inputs
        and to vocode outputs (CheckpointError without a speech side)."""
        for side in (self.source, self.target):
            if isinstance(side.codec, MelConfig):
                return side.codec
        raise CheckpointError("this model has no speech side, so no mel settings")

    def to_waves(self, mels: torch.Tensor, iterations: int = 32) -> list[torch.Tensor]:
        """Generated mels [N, T, n_mels] → one waveform per row (cut at its own end)."""
        return self.target.to_waves(mels, iterations)

    def read_source(self, path: str | Path) -> torch.Tensor:
        """An input file → a batch of one source sample on the model's device."""
        return self.source.read(Path(path), "source").to(self.device)

    def read_reference(self, path: str | Path) -> torch.Tensor:
        """A reference file (a sample of the target modality) → a batch of one."""
        return self.target.read(Path(path), "reference").to(self.device)

    def read_references(self, paths: list[Path]) -> torch.Tensor:
        """Reference files → one batch (text and speech references padded to a common length)."""
        return self.target.read_batch([Path(p) for p in paths], "reference").to(self.device)

    @torch.no_grad()
    def translate(
        self,
        source: torch.Tensor,
        *,
        reference: torch.Tensor | None = None,
        samples: int = 1,
        token_weights: torch.Tensor | None = None,
        seed: int | None = None,
        beam_size: int = 1,
        style_scale: float = 1.0,
    ) -> torch.Tensor:
        """One source [1, ...] → N outputs: images [N, C', H, W] in [-1, 1], text ids [N, L]
        (turn them into strings with :meth:`decode`; ``beam_size`` > 1 uses beam search), or
        mels [N, T, n_mels] (turn them into audio with :meth:`to_waves`). ``style_scale``
        multiplies the domain embedding.

        With ``reference`` ([R, C', H, W]): one output per reference, in its domain.
        With ``token_weights`` ([N, num_tokens]): one output per weight row.
        Otherwise ``samples`` outputs from e ~ N(0, I) (seeded by ``seed`` for repeatability).
        """
        source = source.to(self.device)
        self.check_beam_size(beam_size)
        if token_weights is not None:
            self.check_token_layer()

        def rows(n: int) -> torch.Tensor:
            return source.expand(n, *source.shape[1:])

        opts = dict(beam_size=beam_size, style_scale=style_scale)
        if seed is not None:
            torch.manual_seed(seed)  # the speech decoder's prenet dropout stays on when decoding
        if reference is not None:
            return self.model.translate(
                rows(len(reference)), reference=reference.to(self.device), **opts
            )
        if token_weights is not None:
            w = token_weights.to(self.device)
            return self.model.translate(rows(len(w)), token_weights=w, **opts)
        gen = torch.Generator(device=self.device)
        if seed is None:
            gen.seed()  # fresh randomness without touching the global RNG
        else:
            gen.manual_seed(seed)
        return self.model.translate(rows(samples), generator=gen, **opts)

    def translate_file(
        self,
        input_path: str | Path,
        out_dir: str | Path,
        *,
        references: list[Path] | None = None,
        samples: int = 1,
        seed: int | None = None,
        beam_size: int = 1,
        token_weights: torch.Tensor | None = None,
        style_scale: float = 1.0,
        source: torch.Tensor | None = None,
    ) -> list[Path]:
        """Translate one input file (an image, a UTF-8 text file, or audio for a speech source);
        write ``<stem>_ref<k>``, ``<stem>_tok<k>`` or ``<stem>_z<k>`` + the target modality's
        ``file_suffix`` (``.png``, ``.txt``, ``.wav``) into ``out_dir`` (``<stem>``: :func:`output_stem`; check a batch of inputs with
        :func:`check_output_names` first). ``source``: the file as :meth:`read_source` already
        read it (the file is then not read again)."""
        return self._write(
            self.read_source(input_path) if source is None else source,
            output_stem(input_path),
            out_dir,
            references,
            samples,
            seed,
            beam_size,
            token_weights,
            style_scale,
        )

    def translate_text(
        self,
        text: str,
        out_dir: str | Path,
        *,
        name: str = "text",
        references: list[Path] | None = None,
        samples: int = 1,
        seed: int | None = None,
        beam_size: int = 1,
        token_weights: torch.Tensor | None = None,
        style_scale: float = 1.0,
    ) -> list[Path]:
        """Like :meth:`translate_file` for a string given directly (``--text``)."""
        source = self.encode_text(text, "source")
        return self._write(
            source, name, out_dir, references, samples, seed, beam_size, token_weights, style_scale
        )

    def _write(
        self,
        source,
        stem,
        out_dir,
        references,
        samples,
        seed,
        beam_size,
        token_weights=None,
        style_scale=1.0,
    ) -> list[Path]:
        opts = dict(beam_size=beam_size, style_scale=style_scale, seed=seed)
        if references:
            refs = self.read_references(references)
            outs = self.translate(source, reference=refs, **opts)
            tag = OUTPUT_TAGS["reference"]
        elif token_weights is not None:
            outs = self.translate(source, token_weights=token_weights, **opts)
            tag = OUTPUT_TAGS["tokens"]
        else:
            outs = self.translate(source, samples=samples, **opts)
            tag = OUTPUT_TAGS["random"]
        make_folder(out_dir)
        stems = [Path(out_dir) / f"{stem}_{tag}{k}" for k in range(len(outs))]
        return self.target.write(outs, stems)


def parse_token_weights(spec: str, num_tokens: int) -> torch.Tensor:
    """``"3:0.7,5:0.3"`` → token weights [1, num_tokens] (tokens not named weigh 0). Weights are
    used as given — the token layer's own weights sum to 1, so sums far from 1 also change the
    style's strength, like ``style_scale``."""
    weights = torch.zeros(1, num_tokens)
    items = [item for item in spec.replace(" ", "").split(",") if item]
    if not items:
        raise InputError("token weights are empty; write them as INDEX:WEIGHT,... e.g. 3:0.7,5:0.3")
    for item in items:
        index, sep, value = item.partition(":")
        try:
            k, w = int(index), float(value)
        except ValueError:
            k, w = -1, float("nan")
        if not sep or not 0 <= k < num_tokens or not w == w or w < 0:
            raise InputError(
                f"bad token weight {item!r}: write INDEX:WEIGHT with 0 <= INDEX < {num_tokens} "
                "and WEIGHT >= 0, e.g. 3:0.7,5:0.3"
            )
        weights[0, k] = w
    return weights
