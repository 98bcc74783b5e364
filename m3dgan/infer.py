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

Text input policy: empty text and text longer than twice the longest training text are errors
(``InputError``, exit 2 from the CLI); characters the vocabulary lacks become <unk> with a
warning. Audio input policy (``m3dgan.audio.inputs``): any rate and channel count; silence at the
ends is trimmed; a source longer than twice the longest training utterance is an error, a longer
reference is cut with a warning; empty, silent or unreadable files are errors. Image input
policy (``m3dgan.modalities.image_io.read_image``): read upright and in its true tonal range; a
non-square image is centre-cropped (not squeezed) with a warning. Outputs are named after the
input file's stem; :func:`check_output_names` refuses inputs whose outputs would collide.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from m3dgan import checkpoint as ckpt
from m3dgan import paths
from m3dgan.atomic import write_text
from m3dgan.audio import MelConfig, mel_to_wave, save_wav
from m3dgan.audio.inputs import pad_mels, read_mels
from m3dgan.core.model import M3DGAN
from m3dgan.data.store import read_manifest
from m3dgan.device import resolve_device
from m3dgan.errors import CheckpointError, ConfigError, InputError, M3DGANError
from m3dgan.modalities import ModalitySpec
from m3dgan.modalities.image_io import read_image
from m3dgan.report.grid import save_image
from m3dgan.run_record import RunRecord


def output_stem(path: str | Path) -> str:
    """The name an input file's outputs start with: its file name without folder and suffix."""
    return Path(path).stem


# ``Translator._write``'s file names: <stem>_<ref|tok|z><k>.<png|txt|wav>
OUTPUT_NAME = r"(?P<stem>.+)_(?:ref|tok|z)\d+\.(?:png|txt|wav)"


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
    vocabularies, mel settings) and the device it runs on. ``step``: the checkpoint's step."""

    def __init__(
        self, model: M3DGAN, record: RunRecord, device: torch.device, step: int | None = None
    ) -> None:
        self.model, self.record, self.device, self.step = model.eval(), record, device, step
        self.cfg = record.config
        self.vocabs = record.vocabularies()

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto") -> Translator:
        """Load from a run folder (newest good checkpoint) or one checkpoint file."""
        checkpoint = ckpt.load_latest(Path(path))
        record = RunRecord.from_dict(checkpoint.meta, str(checkpoint.path))
        dev = resolve_device(device)
        model = M3DGAN.from_config(record.config, record.source, record.target)
        checkpoint.load_model(model)
        return cls(model.to(dev), record, dev, checkpoint.step)

    @property
    def source_spec(self) -> ModalitySpec:
        return self.model.source_spec

    @property
    def target_spec(self) -> ModalitySpec:
        return self.model.target_spec

    def encode_text(self, text: str, side: str = "source") -> torch.Tensor:
        """A string → ids [1, L] for a text side; see the module docstring for the policy."""
        spec = self.model.source_spec if side == "source" else self.model.target_spec
        if spec.kind != "text":
            raise InputError(f"this model's {side} is {spec.kind}, not text")
        vocab = self.vocabs[side]
        unknown = vocab.unknown(text) if isinstance(text, str) else []
        ids = vocab.encode_batch([text], max_len=2 * spec.size)
        if unknown:
            warnings.warn(
                f"characters unknown to the model's vocabulary become <unk>: {''.join(unknown)!r}",
                stacklevel=2,
            )
        return ids.to(self.device)

    def decode(self, ids: torch.Tensor) -> list[str]:
        """Output ids [N, L] → strings (text targets)."""
        return self.vocabs["target"].decode_batch(ids.cpu())

    @property
    def mel_config(self) -> MelConfig:
        """The mel settings of the data set the model was trained on (the checkpoint's
        ``audio``), used to read audio inputs and to vocode outputs.

        Checkpoints written before the settings were saved lack them; for those, the settings of
        the data set they name are read from its manifest if it is on this machine.

        Raises:
            CheckpointError: the model has no speech side, or the settings are missing (and the
                data set is not here) or damaged.
        """
        if "speech" not in (self.source_spec.kind, self.target_spec.kind):
            raise CheckpointError("this model has no speech side, so no mel settings")
        settings = self.record.audio
        where = "checkpoint sidecar"
        if not settings:
            settings, where = self._dataset_mel_settings(), "data set manifest"
        try:
            return MelConfig.from_dict(settings)
        except (ConfigError, TypeError) as exc:
            raise CheckpointError(f"{where} has damaged mel settings ({exc})") from exc

    def _dataset_mel_settings(self) -> dict:
        """Mel settings of the data set an older checkpoint names (see :attr:`mel_config`)."""
        name = self.record.dataset
        root = paths.dataset_dir(name) if name else None
        if root is not None and (root / "manifest.json").is_file():
            try:
                audio = read_manifest(root).audio
            except M3DGANError:
                audio = {}
            if audio:
                return audio
        raise CheckpointError(
            "the checkpoint lacks the mel settings of its speech data (it was saved before "
            f"m3dgan recorded them) and its data set {name!r} is not on this machine to read "
            "them from; build or fetch that data set, or resume the run for one step with "
            "this version to save them"
        )

    def to_waves(self, mels: torch.Tensor, iterations: int = 32) -> list[torch.Tensor]:
        """Generated mels [N, T, n_mels] → one waveform per row (cut at its own end)."""
        from m3dgan.modalities.speech import frame_lengths

        lengths = frame_lengths(mels, mels.shape[-1])
        waves = mel_to_wave(mels.float().cpu(), self.mel_config, iterations, lengths.cpu())
        hop = self.mel_config.hop_length
        return [w[: max(int(n) - 1, 1) * hop] for w, n in zip(waves, lengths, strict=True)]

    def read_source(self, path: str | Path) -> torch.Tensor:
        if self.source_spec.kind == "speech":
            mel = read_mels(path, self.mel_config, max_frames=2 * self.source_spec.size)
            return mel[None].to(self.device)
        if self.source_spec.kind == "text":
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"{path}: cannot read text ({exc})") from exc
            return self.encode_text(text, "source")
        return read_image(Path(path), self.source_spec.channels, self.source_spec.size).to(
            self.device
        )

    def read_reference(self, path: str | Path) -> torch.Tensor:
        if self.target_spec.kind == "speech":
            mel = read_mels(path, self.mel_config, max_frames=2 * self.target_spec.size, crop=True)
            return mel[None].to(self.device)
        if self.target_spec.kind == "text":
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"{path}: cannot read text ({exc})") from exc
            return self.encode_text(text, "target")
        return read_image(Path(path), self.target_spec.channels, self.target_spec.size).to(
            self.device
        )

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
        if beam_size < 1:
            raise InputError("beam size must be at least 1")

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

    def read_references(self, paths: list[Path]) -> torch.Tensor:
        """Reference files → one batch (text and speech references padded to a common length)."""
        if self.target_spec.kind == "speech":
            return pad_mels([self.read_reference(p)[0].cpu() for p in paths]).to(self.device)
        if self.target_spec.kind == "text":
            texts = []
            for path in paths:
                try:
                    texts.append(Path(path).read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError) as exc:
                    raise InputError(f"{path}: cannot read text ({exc})") from exc
            return (
                self.vocabs["target"].encode_batch(texts, 2 * self.target_spec.size).to(self.device)
            )
        return torch.cat([self.read_reference(p) for p in paths])

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
    ) -> list[Path]:
        """Translate one input file (an image, a UTF-8 text file, or audio for a speech source);
        write ``<stem>_ref<k>``, ``<stem>_tok<k>`` or ``<stem>_z<k>`` + ``.png|.txt|.wav`` into
        ``out_dir`` (``<stem>``: :func:`output_stem`; check a batch of inputs with
        :func:`check_output_names` first)."""
        return self._write(
            self.read_source(input_path),
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
            tag = "ref"
        elif token_weights is not None:
            outs = self.translate(source, token_weights=token_weights, **opts)
            tag = "tok"
        else:
            outs = self.translate(source, samples=samples, **opts)
            tag = "z"
        paths = []
        texts = self.decode(outs) if self.target_spec.kind == "text" else None
        waves = self.to_waves(outs) if self.target_spec.kind == "speech" else None
        for k in range(len(outs)):
            if waves is not None:
                path = Path(out_dir) / f"{stem}_{tag}{k}.wav"
                save_wav(path, waves[k], self.mel_config.sample_rate)
            elif texts is not None:
                path = Path(out_dir) / f"{stem}_{tag}{k}.txt"
                path.parent.mkdir(parents=True, exist_ok=True)
                write_text(path, texts[k] + "\n")  # atomic: a full disk is an OutputError
            else:
                path = Path(out_dir) / f"{stem}_{tag}{k}.png"
                save_image(outs[k], path)
            paths.append(path)
        return paths


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
