"""The training loop: data, model, optimizers, logging, checkpoints, resume.

Run folder layout::

    RUN_DIR/config.yaml        the full config of the run (edit a copy to start a variant)
    RUN_DIR/log.jsonl          one line of losses per ``log_every`` steps (loss curves)
    RUN_DIR/tb/                TensorBoard scalars and sample grids
    RUN_DIR/samples/           sample grids as PNG
    RUN_DIR/checkpoints/       safetensors + JSON sidecars (see ``m3dgan.checkpoint``)

Batches are a pure function of (seed, step): a resumed run sees exactly the batches an
uninterrupted run would have seen.
"""

from __future__ import annotations

import contextlib
import json
import resource
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from m3dgan import checkpoint as ckpt
from m3dgan.config import Config, config_from_dict, load_config
from m3dgan.core.model import M3DGAN
from m3dgan.core.objectives import get_objective
from m3dgan.core.step import TrainStep
from m3dgan.data.store import Manifest, load_split, read_manifest
from m3dgan.data.tensors import (
    batch_to_model,
    build_vocabularies,
    encode_split,
    side_specs,
)
from m3dgan.errors import ConfigError
from m3dgan.modalities import ModalitySpec
from m3dgan.report.samples import fixed_samples, write_samples
from m3dgan.tasks import get_task


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return device


def specs_from_manifest(
    task_name: str, manifest: Manifest, vocabs: dict | None = None, train: dict | None = None
) -> tuple[ModalitySpec, ModalitySpec]:
    task = get_task(task_name)
    for side, kind in (("source", task.source), ("target", task.target)):
        if manifest.kind(side) != kind:
            raise ConfigError(
                f"task {task_name!r} needs a {kind} {side}, data set {manifest.name!r} has {manifest.kind(side)}"
            )
    return side_specs(manifest, task.source, task.target, vocabs or {}, train or {})


def build_model(
    cfg: Config, manifest: Manifest, vocabs: dict | None = None, train: dict | None = None
) -> M3DGAN:
    source, target = specs_from_manifest(cfg.task, manifest, vocabs, train)
    return M3DGAN(source, target, get_objective(cfg.objective), cfg.model)


def batch_indices(
    n: int, batch_size: int, step: int, seed: int, rank: int = 0, world: int = 1
) -> torch.Tensor:
    """Indices of the global batch for ``step`` (a fresh permutation each epoch), this rank's share."""
    per_epoch = max(n // batch_size, 1)
    epoch, pos = divmod(step, per_epoch)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=gen)
    idx = perm[pos * batch_size : (pos + 1) * batch_size]
    return idx[rank::world]


def dataset_root(task_name: str) -> Path:
    from m3dgan.data.build import ensure_dataset

    return ensure_dataset(get_task(task_name).dataset)


@dataclass
class RunState:
    model: M3DGAN
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    noise: torch.Generator
    step: int = 0


def make_optimizers(model: M3DGAN, cfg: Config, device: torch.device):
    kw = {"lr": cfg.train.lr, "betas": (cfg.train.beta1, cfg.train.beta2)}
    fused = device.type in ("cuda", "cpu")  # one kernel per step instead of one per tensor
    opt_g = torch.optim.Adam(model.generator_parameters(), fused=fused, **kw)
    opt_d = torch.optim.Adam(model.discriminator_parameters(), fused=fused, **kw)
    return opt_g, opt_d


def save(
    run_dir: Path, state: RunState, cfg: Config, manifest: Manifest, vocabs: dict | None = None
) -> Path:
    meta = {
        "vocab": {side: v.to_dict() for side, v in (vocabs or {}).items()},
        "config": cfg.to_dict(),
        "task": cfg.task,
        "dataset": manifest.name,
        "source": vars(state.model.source_spec),
        "target": vars(state.model.target_spec),
        "domains": manifest.domains,
        "classes_count": len(manifest.classes),
    }
    return ckpt.save_checkpoint(
        run_dir,
        state.step,
        state.model,
        optimizers={"g": state.opt_g, "d": state.opt_d},
        rng={"noise": state.noise.get_state(), "torch": torch.get_rng_state()},
        meta=meta,
        keep=cfg.train.keep_checkpoints,
    )


def restore(state: RunState, checkpoint: ckpt.Checkpoint) -> None:
    checkpoint.load_model(state.model)
    checkpoint.restore_optimizer("g", state.opt_g)
    checkpoint.restore_optimizer("d", state.opt_d)
    state.noise.set_state(checkpoint.rng_state("noise"))
    torch.set_rng_state(checkpoint.rng_state("torch"))
    state.step = checkpoint.step


class _StopRequest:
    """SIGTERM / Ctrl-C ask the loop to checkpoint and stop instead of dying mid-step."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, object] = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def prepare_run(run_dir: Path, cfg: Config | None, resume: bool) -> Config:
    """Write or read RUN_DIR/config.yaml; refuse to overwrite a run by accident."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.yaml"
    has_checkpoints = bool(ckpt.list_checkpoints(ckpt.checkpoint_dir(run_dir)))
    if resume:
        if not config_path.is_file():
            raise ConfigError(f"{run_dir}: nothing to resume (no config.yaml)")
        saved = load_config(config_path)
        if cfg is not None and cfg.train.steps != saved.train.steps:
            saved.train.steps = cfg.train.steps  # resuming may extend a run
            saved.save(config_path)
        return saved
    if has_checkpoints:
        raise ConfigError(
            f"{run_dir} already holds checkpoints; pass --resume to continue it or choose another --out"
        )
    assert cfg is not None
    cfg.save(config_path)
    return cfg


def train(
    cfg: Config | None,
    run_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    data_root: Path | None = None,
) -> Path:
    """Train (or resume) a run; returns the path of the last checkpoint."""
    run_dir = Path(run_dir)
    cfg = prepare_run(run_dir, cfg, resume)
    get_objective(cfg.objective)
    tc = cfg.train
    device = resolve_device(tc.device)
    root = data_root or dataset_root(cfg.task)
    manifest = read_manifest(root)
    train_split, test_split = load_split(root, "train"), load_split(root, "test")
    vocabs = build_vocabularies(root, manifest, train_split)
    train_split, test_split = encode_split(train_split, vocabs), encode_split(test_split, vocabs)

    torch.manual_seed(tc.seed)
    model = build_model(cfg, manifest, vocabs, train_split).to(device)
    if tc.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if tc.compile:
        # in place (nn.Module.compile), so parameter names and checkpoints stay the same
        for part in (model.generator, model.disc_enc, model.disc_rand):
            if part is not None:
                part.compile()
    opt_g, opt_d = make_optimizers(model, cfg, device)
    noise = torch.Generator(device=device).manual_seed(tc.seed + 1)
    state = RunState(model, opt_g, opt_d, noise)
    if resume and ckpt.list_checkpoints(ckpt.checkpoint_dir(run_dir)):
        restore(state, ckpt.load_latest(run_dir))
    amp_dtype = torch.bfloat16 if tc.amp else None
    step_fn = TrainStep(model, opt_g, opt_d, cfg.loss, autocast_dtype=amp_dtype, generator=noise)

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir / "tb"))
    fixed = fixed_samples(test_split, device)
    n = len(train_split["label"])
    bar = tqdm(
        total=tc.steps,
        initial=state.step,
        disable=not progress,
        desc=f"{cfg.task}/{cfg.objective}",
        unit="step",
        dynamic_ncols=True,
    )
    last_path = None
    images_seen, t0 = 0, time.perf_counter()
    with _StopRequest() as stop, open(run_dir / "log.jsonl", "a") as log:
        model.train()
        while state.step < tc.steps and not stop.requested:
            idx = batch_indices(n, tc.batch_size, state.step, tc.seed)
            source = batch_to_model(train_split["source"][idx], device, tc.channels_last)
            target = batch_to_model(train_split["target"][idx], device, tc.channels_last)
            logs = step_fn(source, target)
            state.step += 1
            images_seen += len(idx)
            bar.update(1)
            if state.step % tc.log_every == 0 or state.step == tc.steps:
                rate = images_seen / (time.perf_counter() - t0)
                logs["images_per_s"] = rate
                bar.set_postfix(
                    {
                        k: f"{v:.3g}"
                        for k, v in logs.items()
                        if k in ("loss_D", "loss_G", "rec", "lat")
                    }
                )
                for key, value in logs.items():
                    writer.add_scalar(f"train/{key}", value, state.step)
                log.write(json.dumps({"step": state.step, **logs}) + "\n")
                log.flush()
            if state.step % tc.sample_every == 0 or state.step == tc.steps:
                write_samples(model, fixed, run_dir, state.step, writer, vocabs)
                model.train()
            if state.step % tc.checkpoint_every == 0 or state.step == tc.steps:
                last_path = save(run_dir, state, cfg, manifest, vocabs)
        if stop.requested:
            last_path = save(run_dir, state, cfg, manifest, vocabs)
            bar.write(
                f"stopped at step {state.step}; checkpoint saved to {last_path}. Resume with --resume."
            )
    bar.close()
    writer.close()
    _write_stats(run_dir, images_seen, time.perf_counter() - t0, state.step, device)
    return last_path or ckpt.resolve(run_dir)


def _write_stats(
    run_dir: Path, images: int, seconds: float, step: int, device: torch.device
) -> None:
    """Throughput and peak memory of this session of the run (benchmarks read this file)."""
    stats = {
        "step": step,
        "images": images,
        "seconds": round(seconds, 2),
        "images_per_s": images / seconds if seconds > 0 else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        stats["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    (run_dir / "train_stats.json").write_text(json.dumps(stats, indent=1))


def config_for_task(task_name: str, objective: str, base: Config | None = None) -> Config:
    cfg = base or Config()
    data = cfg.to_dict()
    data["task"], data["objective"] = task_name, objective
    for key, value in get_task(task_name).defaults.items():
        section, leaf = key.split(".")
        data[section][leaf] = value
    return config_from_dict(data)
