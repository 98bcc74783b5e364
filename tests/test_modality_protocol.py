"""The Modality protocol is the whole contract between a modality and the rest of m3dgan.

A fourth modality, defined here and nowhere in ``m3dgan/``: fixed-length vectors of numbers,
stored as text files of whitespace-separated values. Registered like the built-in ones, it trains
through the library's own training step, saves a checkpoint with the run contract, and
translates files through ``Translator`` — alone (vector→vector) and beside the built-in
modalities on either side (vector→text, text→vector), which exercises its attention memory and
its summary for another modality's discriminator.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import TINY_OVERRIDES
from text_fixtures import TEXT_MODEL_OVERRIDES
from torch import nn
from torch.nn import functional as F

from m3dgan.atomic import write_text
from m3dgan.config import layered_config
from m3dgan.core.attention import Posterior
from m3dgan.core.model import M3DGAN
from m3dgan.core.state import RunState
from m3dgan.core.step import TrainStep
from m3dgan.errors import InputError
from m3dgan.infer import Translator
from m3dgan.modalities import (
    Modality,
    ModalitySpec,
    SequenceFeatures,
    modality_for,
    register_modality,
)
from m3dgan.modalities.registry import MODALITIES
from m3dgan.modalities.text.vocab import CharVocabulary
from m3dgan.report.samples import write_samples
from m3dgan.run_record import RunRecord
from m3dgan.run_state import save

DIM = 6


# -- the fourth modality -----------------------------------------------------------------------
class VectorFeatures(nn.Module):
    """A vector source as a one-position attention memory."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.out_dim = width

    def forward(self, h: torch.Tensor) -> SequenceFeatures:
        return SequenceFeatures(h[:, None], torch.ones(len(h), 1, dtype=torch.bool))


class VectorGenerator(nn.Module):
    def __init__(self, source: Modality, dim: int, z_dim: int, cfg) -> None:
        super().__init__()
        self.memory = source.build_memory(cfg)
        width = self.memory.out_dim if self.memory is not None else source.prenet_channels(cfg)
        self.net = nn.Sequential(
            nn.Linear(width + z_dim, 32), nn.LeakyReLU(0.2), nn.Linear(32, dim)
        )

    def forward(self, source, z, target=None) -> torch.Tensor:
        h = (self.memory(source) if self.memory is not None else source).pooled()
        return torch.tanh(self.net(h if z is None else torch.cat([h, z], -1)))


class VectorDiscriminator(nn.Module):
    def __init__(self, source: Modality, dim: int) -> None:
        super().__init__()
        self.summary = source.build_summary(16)
        self.net = nn.Sequential(nn.Linear(16 + dim, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))

    def forward(self, source, target) -> torch.Tensor:
        return self.net(torch.cat([self.summary(source), target], -1))


class VectorEncoder(nn.Module):
    def __init__(self, width: int, nz: int) -> None:
        super().__init__()
        self.net = nn.Linear(width, 2 * nz)

    def forward(self, h: torch.Tensor) -> Posterior:
        mu, logvar = self.net(h).chunk(2, -1)
        return Posterior(mu, logvar.clamp(-10, 10))


class VectorModality(Modality):
    kind = "vector"
    file_suffix = ".vec"

    def build_prenet(self, cfg) -> nn.Module:
        return nn.Sequential(nn.Linear(self.spec.channels, 16), nn.LeakyReLU(0.2))

    def prenet_channels(self, cfg) -> int:
        return 16

    def build_reference_encoder(self, cfg) -> nn.Module:
        return VectorEncoder(16, cfg.nz)

    def build_generator(self, source: Modality, z_dim: int, cfg) -> nn.Module:
        return VectorGenerator(source, self.spec.channels, z_dim, cfg)

    def build_discriminator(self, source: Modality, cfg) -> nn.Module:
        return VectorDiscriminator(source, self.spec.channels)

    def build_memory(self, cfg) -> nn.Module:
        return VectorFeatures(16)

    def build_summary(self, dim: int) -> nn.Module:
        return nn.Linear(self.spec.channels, dim)

    def reconstruction_loss(self, output, real) -> torch.Tensor:
        return F.l1_loss(output.float(), real.float())

    def read(self, path: Path, role: str = "source") -> torch.Tensor:
        values = [float(v) for v in Path(path).read_text().split()]
        if len(values) != self.spec.channels:
            raise InputError(f"{path}: {len(values)} values, the model takes {self.spec.channels}")
        return torch.tensor([values])

    @staticmethod
    def as_text(row: torch.Tensor) -> str:
        return " ".join(f"{v:.4f}" for v in row.tolist())

    def write(self, outputs: torch.Tensor, stems: list[Path]) -> list[Path]:
        # atomically (no partial file; a full disk is an OutputError), as the protocol asks
        return [
            write_text(f"{stem}{self.file_suffix}", self.as_text(row) + "\n")
            for row, stem in zip(outputs, stems, strict=True)
        ]

    def describe_output(self, path: Path) -> str:
        return Path(path).read_text().strip()

    def sample_text(self, sample: torch.Tensor) -> str:
        return self.as_text(sample)

    def write_sample_panel(
        self, columns, source, source_batch, folder, name, writer=None, step=0, headers=None
    ):
        """Training samples (``m3dgan train`` writes them every ``train.sample_every`` steps)."""
        lines = []
        for i in range(len(source_batch)):
            lines.append(f"source: {source.sample_text(source_batch[i])}")
            lines += [f"  {column}: {self.as_text(batch[i])}" for column, batch in columns]
        return write_text(Path(folder) / f"{name}.txt", "\n".join(lines) + "\n")


@pytest.fixture(autouse=True)
def vector_registered():
    """Registered as a new modality is (one line); unregistered after each test."""
    register_modality(VectorModality)
    yield
    MODALITIES.pop("vector")


# -- data: each vector is its source's mirror image, shifted by its domain's offset ----------
def vector_pairs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sources, targets, domains): target = -source / 2 ± 0.5 (domain 0: +, domain 1: −)."""
    gen = torch.Generator().manual_seed(seed)
    source = torch.rand(n, DIM, generator=gen) - 0.5
    domain = torch.randint(0, 2, (n,), generator=gen)
    target = -0.5 * source + torch.where(domain[:, None] == 0, 0.5, -0.5)
    return source, target, domain


def train(source_spec, target_spec, batches, objective="cvae-gan", steps=300, model_overrides=()):
    """``steps`` steps of the library's own training step on ``batches(k)``."""
    tiny = [o for o in TINY_OVERRIDES if o.startswith("model.")]
    cfg = layered_config("digits", objective, overrides=[*tiny, *model_overrides, "train.lr=3e-3"])
    torch.manual_seed(0)
    model = M3DGAN.from_config(cfg, source_spec, target_spec)
    state = RunState.create(model, cfg, torch.device("cpu"))
    step = TrainStep(state, cfg.loss)
    logs = [step(*batches(k)) for k in range(steps)]
    return cfg, state, logs


def test_fourth_modality_trains_saves_and_translates(tmp_path):
    spec = ModalitySpec("vector", DIM, 1)
    data_s, data_t, _ = vector_pairs(512, seed=0)

    def batches(k: int):
        idx = torch.arange(k * 16, k * 16 + 16) % len(data_s)
        return data_s[idx], data_t[idx]

    cfg, state, logs = train(spec, spec, batches)
    assert logs[-1]["rec"] < 0.5 * logs[0]["rec"]

    # the run contract: a checkpoint of the fourth modality reloads through the public API
    record = RunRecord(config=cfg, source=spec, target=spec, dataset="vectors")
    state.step = 300
    save(tmp_path / "run", state, record)
    tr = Translator.from_checkpoint(tmp_path / "run")
    assert isinstance(tr.source, VectorModality) and tr.step == 300

    # the training samples, as the trainer writes them (report.samples)
    fixed = {"source": data_s[:3], "target": data_t[:3], "references": data_t[3:6]}
    panel = write_samples(tr.model, fixed, tmp_path / "run", 300, tr.source, tr.target)
    lines = panel.read_text().splitlines()
    assert panel.name == "step_00000300.txt" and lines[0].startswith("source: ")
    assert [line.split(":")[0].strip() for line in lines[1:9]] == [
        "truth", "ref=truth", "ref0", "ref1", "ref2", "z0", "z1", "z2"
    ]

    # files in, files out; the reference sets the domain (its offset), as in the paper
    test_s, test_t, test_d = vector_pairs(8, seed=1)
    (tmp_path / "in.vec").write_text(" ".join(map(str, test_s[0].tolist())))
    refs = []
    for d in (0, 1):
        k = int((test_d == d).nonzero()[0])
        refs.append(tmp_path / f"ref{d}.vec")
        refs[-1].write_text(" ".join(map(str, test_t[k].tolist())))
    written = tr.translate_file(tmp_path / "in.vec", tmp_path / "out", references=refs)
    assert [p.name for p in written] == ["in_ref0.vec", "in_ref1.vec"]
    outs = [tr.target.read(p) for p in written]
    mirror = -0.5 * test_s[0]
    offsets = [float((out[0] - mirror).mean()) for out in outs]
    assert offsets[0] > 0.2 and offsets[1] < -0.2, offsets
    assert len(tr.translate_file(tmp_path / "in.vec", tmp_path / "z", samples=3)) == 3
    (tmp_path / "bad.vec").write_text("1 2 3")
    with pytest.raises(InputError, match="bad.vec: 3 values"):
        tr.read_source(tmp_path / "bad.vec")


def test_fourth_modality_beside_text_on_either_side(tmp_path):
    """vector→text uses the vector's attention memory (the text decoder attends over it) and
    its summary (the text discriminator's condition); text→vector uses the text prenet's states
    through the vector generator."""
    words = ["up", "down"]
    vocab = CharVocabulary.build(words)
    ids = vocab.encode_batch(words)
    text = ModalitySpec("text", vocab.size, ids.shape[1])
    vector = ModalitySpec("vector", DIM, 1)
    data_s, _, domain = vector_pairs(256, seed=2)

    def vector_to_text(k: int):
        idx = torch.arange(k * 16, k * 16 + 16) % len(data_s)
        return data_s[idx], ids[domain[idx]]

    text_model = [o for o in TEXT_MODEL_OVERRIDES if o.startswith("model.")]
    cfg, state, logs = train(
        vector, text, vector_to_text, objective="full", steps=40, model_overrides=text_model
    )
    model = state.model
    assert hasattr(model.generator, "vector_memory")
    assert all(torch.isfinite(torch.tensor(list(row.values()))).all() for row in logs)
    record = RunRecord(
        config=cfg, source=vector, target=text, dataset="vectors", vocab={"target": vocab.to_dict()}
    )
    tr = Translator(model, record, torch.device("cpu"), 40)
    (tmp_path / "v.vec").write_text(" ".join(["0.1"] * DIM))
    written = tr.translate_file(tmp_path / "v.vec", tmp_path / "out", samples=2)
    assert [p.suffix for p in written] == [".txt", ".txt"]
    assert all(set(p.read_text().strip()) <= set("updown") for p in written)

    def text_to_vector(k: int):
        idx = torch.arange(k * 16, k * 16 + 16) % len(data_s)
        return ids[domain[idx]], data_s[idx]

    cfg, state, _ = train(text, vector, text_to_vector, steps=20, model_overrides=text_model)
    model = state.model
    record = RunRecord(
        config=cfg, source=text, target=vector, dataset="vectors", vocab={"source": vocab.to_dict()}
    )
    tr = Translator(model, record, torch.device("cpu"), 20)
    written = tr.translate_text("up", tmp_path / "out2", name="t", samples=2)
    assert [p.name for p in written] == ["t_z0.vec", "t_z1.vec"]
    assert tr.target.read(written[0]).shape == (1, DIM)


def test_registry_names_unknown_kinds():
    with pytest.raises(ValueError, match="unknown modality 'smell'.*vector"):
        modality_for(ModalitySpec("smell", 1, 1))
