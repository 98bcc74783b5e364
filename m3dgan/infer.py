"""Translation API used by the CLI, the evaluator and the benchmark.

from m3dgan.infer import Translator
tr = Translator.from_checkpoint("runs/digits")
outs = tr.translate(tr.read_source("seven.png"), samples=5)          # random domains
outs = tr.translate(tr.read_source("seven.png"), reference=tr.read_reference("mnist_3.png"))
"""

from __future__ import annotations

from pathlib import Path

import torch

from m3dgan import checkpoint as ckpt
from m3dgan.config import Config, config_from_dict
from m3dgan.core.model import M3DGAN
from m3dgan.core.objectives import get_objective
from m3dgan.errors import CheckpointError
from m3dgan.modalities import ModalitySpec
from m3dgan.modalities.image_io import read_image
from m3dgan.report.grid import save_image
from m3dgan.train import resolve_device


class Translator:
    def __init__(self, model: M3DGAN, cfg: Config, meta: dict, device: torch.device) -> None:
        self.model, self.cfg, self.meta, self.device = model.eval(), cfg, meta, device

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto") -> Translator:
        """Load from a run folder (newest good checkpoint) or one checkpoint file."""
        checkpoint = ckpt.load_latest(Path(path))
        meta = checkpoint.meta
        try:
            cfg = config_from_dict(meta["config"])
            source, target = ModalitySpec(**meta["source"]), ModalitySpec(**meta["target"])
        except (KeyError, TypeError) as exc:
            raise CheckpointError(
                f"{checkpoint.path}: sidecar lacks model description ({exc})"
            ) from exc
        dev = resolve_device(device)
        model = M3DGAN(source, target, get_objective(cfg.objective), cfg.model)
        missing, unexpected = model.load_state_dict(checkpoint.model_state(), strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"{checkpoint.path}: weights do not match the model "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        return cls(model.to(dev), cfg, meta, dev)

    @property
    def source_spec(self) -> ModalitySpec:
        return self.model.source_spec

    @property
    def target_spec(self) -> ModalitySpec:
        return self.model.target_spec

    def read_source(self, path: str | Path) -> torch.Tensor:
        return read_image(Path(path), self.source_spec.channels, self.source_spec.size).to(
            self.device
        )

    def read_reference(self, path: str | Path) -> torch.Tensor:
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
    ) -> torch.Tensor:
        """One source [1, C, H, W] → outputs [N, C', H, W] in [-1, 1].

        With ``reference`` ([R, C', H, W]): one output per reference, in its domain.
        With ``token_weights`` ([N, num_tokens]): one output per weight row.
        Otherwise ``samples`` outputs from e ~ N(0, I) (seeded by ``seed`` for repeatability).
        """
        source = source.to(self.device)
        if reference is not None:
            return self.model.translate(
                source.expand(len(reference), -1, -1, -1), reference=reference.to(self.device)
            )
        if token_weights is not None:
            w = token_weights.to(self.device)
            return self.model.translate(source.expand(len(w), -1, -1, -1), token_weights=w)
        gen = torch.Generator(device=self.device)
        if seed is None:
            gen.seed()  # fresh randomness without touching the global RNG
        else:
            gen.manual_seed(seed)
        return self.model.translate(source.expand(samples, -1, -1, -1), generator=gen)

    def translate_file(
        self,
        input_path: str | Path,
        out_dir: str | Path,
        *,
        references: list[Path] | None = None,
        samples: int = 1,
        seed: int | None = None,
    ) -> list[Path]:
        """Translate one image file; write ``<stem>_ref<k>.png`` or ``<stem>_z<k>.png`` into ``out_dir``."""
        source = self.read_source(input_path)
        stem = Path(input_path).stem
        if references:
            refs = torch.cat([self.read_reference(p) for p in references])
            outs, tag = self.translate(source, reference=refs), "ref"
        else:
            outs, tag = self.translate(source, samples=samples, seed=seed), "z"
        paths = []
        for k, img in enumerate(outs):
            path = Path(out_dir) / f"{stem}_{tag}{k}.png"
            save_image(img, path)
            paths.append(path)
        return paths
