"""The training loop: data, model, optimizers, logging, checkpoints, resume, several processes.

Run folder layout::

    RUN_DIR/config.yaml        the full config of the run (edit a copy to start a variant)
    RUN_DIR/log.jsonl          one line of losses per ``log_every`` steps (loss curves), and one
                               line per divergence-guard event (``"event": "rollback"``)
    RUN_DIR/tb/                TensorBoard scalars and sample grids (off, with one warning,
                               once it cannot be written: see ``m3dgan.report.run_outputs``)
    RUN_DIR/samples/           sample grids as PNG (with train.ema_decay > 0: drawn with the
                               moving average of the generator side, m3dgan.core.ema)
    RUN_DIR/checkpoints/       safetensors + JSON sidecars (see ``m3dgan.checkpoint``)

Every file but TensorBoard's goes through ``m3dgan.atomic``: a full disk stops the run with an
OutputError (the CLI prints ``error: PATH: cannot write (no space left on device)`` and exits
with 2), and the checkpoints on disk stay as they were, so ``--resume`` goes on from the last one.

Batches are a pure function of (seed, step): a resumed run sees exactly the batches an
uninterrupted run would have seen. Under ``torchrun`` every process trains on its share of each
global batch (``m3dgan.distributed``) and only rank 0 writes into RUN_DIR.
"""

from __future__ import annotations

import contextlib
import json
import resource
import signal
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from m3dgan import checkpoint as ckpt
from m3dgan import distributed
from m3dgan.atomic import make_folder, write_text
from m3dgan.config import Config, TrainConfig, load_config
from m3dgan.core.model import M3DGAN
from m3dgan.core.objectives import get_objective
from m3dgan.core.state import RunState
from m3dgan.core.step import NonFiniteLossError, TrainStep
from m3dgan.core.switches import check_switches
from m3dgan.data.batching import batch_indices, row_lengths
from m3dgan.data.build import task_dataset_root
from m3dgan.data.pairing import TrainingPairs
from m3dgan.data.store import Manifest
from m3dgan.data.tensors import (
    batch_to_model,
    build_vocabularies,
    encode_split,
    side_specs,
    text_frontends,
)
from m3dgan.data.views import open_dataset
from m3dgan.device import deterministic_mode, native_bf16, resolve_device
from m3dgan.errors import ConfigError, M3DGANError, OutputError
from m3dgan.guard import DivergenceGuard, LossSpike, Rollback, SpikeDetector, TrainingDiverged
from m3dgan.modalities import ModalitySpec
from m3dgan.modalities.text.vocab import SPECIALS
from m3dgan.report.run_outputs import RunOutputs
from m3dgan.report.samples import fixed_samples
from m3dgan.run_record import RunRecord
from m3dgan.run_state import Snapshot, restore, save
from m3dgan.tasks import get_task


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
    return M3DGAN.from_config(cfg, source, target, len(manifest.domains))


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


def read_run_config(run_dir: Path, cfg: Config | None, resume: bool) -> tuple[Config, bool]:
    """The run's config, checked without writing anything (every process of a multi-process
    run calls this before any of them writes), and whether RUN_DIR/config.yaml must be written.

    On resume, ``cfg`` (if given) only carries a new ``train.steps``: it must lie beyond the
    run's newest checkpoint, or nothing would train and config.yaml would no longer describe the
    run, so it is refused before anything is written."""
    config_path = run_dir / "config.yaml"
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: --out must be a run folder, and this is a file")
    if resume:
        if not config_path.is_file():
            raise ConfigError(f"{run_dir}: nothing to resume (no config.yaml)")
        saved = load_config(config_path)
        at = ckpt.latest_step(run_dir)
        if cfg is not None and at is not None and cfg.train.steps <= at:
            raise ConfigError(
                f"{run_dir}: the run is already at step {at}; --steps {cfg.train.steps} would not "
                f"train (steps is the run's total, not a count to add); pass a --steps larger "
                f"than {at} to extend it"
            )
        if cfg is not None and cfg.train.steps != saved.train.steps:
            saved.train.steps = cfg.train.steps  # resuming may extend a run
            return saved, True
        return saved, False
    if ckpt.list_checkpoints(ckpt.checkpoint_dir(run_dir)):
        raise ConfigError(
            f"{run_dir} already holds checkpoints; pass --resume to continue it or choose another --out"
        )
    assert cfg is not None
    return cfg, True


def out_of_time(tc: TrainConfig, train_seconds: float) -> bool:
    """Whether the run has used its wall-clock budget ``train.max_minutes`` (0: none)."""
    return tc.max_minutes > 0 and train_seconds >= tc.max_minutes * 60.0


def warming_up(tc: TrainConfig, step: int, train_seconds: float) -> bool:
    """Whether this step is in the run's ``train.adversarial_warmup`` share: of the wall-clock
    budget when ``train.max_minutes`` is set, else of ``train.steps``."""
    if not tc.adversarial_warmup:
        return False
    if tc.max_minutes > 0:
        return train_seconds < tc.adversarial_warmup * tc.max_minutes * 60.0
    return step < tc.adversarial_warmup * tc.steps


def check_train_config(tc: TrainConfig, world: int) -> None:
    """Settings that would only fail (or hang a process group) later."""
    if tc.batch_size < 1 or tc.batch_size % world:
        raise ConfigError(
            f"train.batch_size={tc.batch_size} is the global batch, split over {world} "
            f"process(es): it must be a positive multiple of {world}"
        )
    if not 0 < tc.rollback_lr_factor <= 1:
        raise ConfigError(f"train.rollback_lr_factor={tc.rollback_lr_factor} must be in (0, 1]")
    if tc.max_rollbacks < 0:
        raise ConfigError(f"train.max_rollbacks={tc.max_rollbacks} must be >= 0")
    if tc.spike_factor != 0 and not tc.spike_factor > 1:
        raise ConfigError(f"train.spike_factor={tc.spike_factor} must be 0 (off) or above 1")


def check_run_config(cfg: Config, world_size: int = 1) -> None:
    """Refuse a config that cannot train, from the config and the task alone: an unknown
    objective, training settings that do not fit ``world_size`` processes, or a switch that does
    not apply to the task's modalities. It runs before a data set is built (minutes) or a run
    folder is made, and for ``train --print-config``; what needs the data (a subword model too
    small for its characters, say) is refused when the run reads it.

    Raises:
        ConfigError: naming the setting and why it cannot apply.
    """
    get_objective(cfg.objective)
    check_train_config(cfg.train, world_size)
    # switches read only the sides' kinds, which the task knows (build_model checks again)
    task = get_task(cfg.task)
    check_switches(cfg, ModalitySpec(task.source, 0, 0), ModalitySpec(task.target, 0, 0))


def train(
    cfg: Config | None,
    run_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    data_root: Path | None = None,
    device: str | None = None,
) -> Path:
    """Train (or resume) a run; returns the path of the last checkpoint.

    ``device`` (``--device``) is where this session trains; None: the config's
    ``train.device``. The device belongs to the machine, not to the run, so on resume it
    overrides the saved ``train.device`` for this session only: config.yaml keeps the device the
    run was started with (as its record of the run), and the device used is printed and written
    to RUN_DIR/train_stats.json.

    Under torchrun (``WORLD_SIZE`` > 1) every process calls this with the same arguments; they
    join one process group for the run and leave it on return."""
    run_dir = Path(run_dir)
    cfg, config_changed = read_run_config(run_dir, cfg, resume)
    tc = cfg.train
    requested = device or tc.device
    device = resolve_device(requested)
    check_run_config(cfg, distributed.world_from_env()[1])
    with distributed.session(device) as dist, deterministic_mode(tc.deterministic):
        if dist.is_main:
            notes = [f"asked for {requested!r}"] if requested != str(dist.device) else []
            if requested != tc.device:
                notes.append(f"this session only: config.yaml keeps train.device={tc.device!r}")
            print(f"device: {dist.device}" + (f" ({'; '.join(notes)})" if notes else ""))
            folder_existed = run_dir.is_dir()
            make_folder(run_dir)
            if config_changed:
                cfg.save(run_dir / "config.yaml")
            root = data_root or task_dataset_root(cfg.task)  # may build it: one process does
        dist.barrier()
        if not dist.is_main:
            root = data_root or task_dataset_root(cfg.task)
        try:
            session = _Run(cfg, run_dir, dist, root, progress)
        except M3DGANError:
            # refused before the first step (a switch the data set cannot take, say): a new run
            # leaves no config.yaml behind, so a fixed command starts it again in the same folder
            if dist.is_main and not resume:
                _forget_refused_start(run_dir, folder_existed)
            raise
        return session.run(resume)


def _forget_refused_start(run_dir: Path, folder_existed: bool) -> None:
    """Undo what a new run wrote before it was refused: its config.yaml, and its folder when
    this run made it and nothing else is in it."""
    (run_dir / "config.yaml").unlink(missing_ok=True)
    if not folder_existed and not any(run_dir.iterdir()):
        run_dir.rmdir()


def build_state(
    cfg: Config,
    manifest: Manifest,
    device: torch.device,
    vocabs: dict | None = None,
    train_split: dict | None = None,
) -> RunState:
    """A fresh run: seeded weights (the same in every process), optimizers, noise generator."""
    tc = cfg.train
    torch.manual_seed(tc.seed)
    model = build_model(cfg, manifest, vocabs, train_split).to(device)
    if tc.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if tc.compile:
        # in place (nn.Module.compile), so parameter names and checkpoints stay the same
        for part in (model.generator, model.disc_enc, model.disc_rand):
            if part is not None:
                part.compile()
    return RunState.create(model, cfg, device)


class _Run:
    """One session of a run (fresh or resumed) in this process."""

    def __init__(
        self, cfg: Config, run_dir: Path, dist: distributed.Distributed, root: Path, progress: bool
    ) -> None:
        self.cfg, self.run_dir, self.dist, self.progress = cfg, run_dir, dist, progress
        self.precision = "fp32"  # "bf16" once run() finds train.amp usable on this device
        self.manifest, splits = open_dataset(root, swap=get_task(cfg.task).swap_sides)
        train_split, test_split = splits["train"], splits["test"]
        vocabs = build_vocabularies(
            root, self.manifest, train_split, text_frontends(cfg), cfg.model.subwords
        )
        if cfg.model.subwords and dist.is_main:
            for side in self.manifest.text_sides():
                print(
                    f"model.subwords={cfg.model.subwords}: the {side} text reads as "
                    f"{vocabs[side].size - len(SPECIALS)} sentencepiece pieces (a unigram model "
                    f"of its {len(set(train_split[side])):,} distinct training texts, trained "
                    "now and saved in every checkpoint)"
                )
        self.train_split = encode_split(train_split, vocabs)
        self.test_split = encode_split(test_split, vocabs)
        self.state = build_state(cfg, self.manifest, dist.device, vocabs, self.train_split)
        tc = cfg.train
        task = get_task(cfg.task)
        # the sort key of train.length_buckets (m3dgan.data.batching); None: random batches
        self.lengths = (
            row_lengths(self.train_split, (task.source, task.target)) if tc.length_buckets else None
        )
        self.pairs = TrainingPairs(
            self.train_split["label"],
            self.train_split["domain"],
            tc.domain_reference,
            tc.cross_domain,
            dataset=f"data set {self.manifest.name!r}",
        )
        if tc.domain_reference and self.pairs.one_domain and dist.is_main:
            print(
                f"note: data set {self.manifest.name!r} has no domain labels: "
                f"train.domain_reference={tc.domain_reference:g} draws each reference from the "
                "whole training split (one domain)",
                file=sys.stderr,
            )
        if self.state.model.domain_outputs and bool((self.train_split["domain"] < 0).any()):
            raise ConfigError(
                f"model.domain_discriminator needs a domain label on every training row; data "
                f"set {self.manifest.name!r} has rows without one"
            )
        self.record = RunRecord.for_dataset(
            cfg, self.state.model.source_spec, self.state.model.target_spec, self.manifest, vocabs
        )
        # each side's modality with its codec, as inference will have it (draws the samples)
        self.source, self.target = self.record.modality("source"), self.record.modality("target")

    def save(self) -> Path | None:
        if not self.dist.is_main:
            return None
        return save(self.run_dir, self.state, self.record)

    def run(self, resume: bool) -> Path:
        cfg, tc, dist, state = self.cfg, self.cfg.train, self.dist, self.state
        has_checkpoint = bool(ckpt.list_checkpoints(ckpt.checkpoint_dir(self.run_dir)))
        if resume and has_checkpoint:
            restore(state, ckpt.load_latest(self.run_dir), self.record)
            # config.yaml's rate × the guard's scale: lowering train.lr there takes effect
            state.set_lr(tc.lr)
            if state.step >= tc.steps and dist.is_main:
                print(
                    f"the run is already at step {state.step} of train.steps={tc.steps}: nothing "
                    f"to train; pass --steps N (N > {state.step}) to extend it",
                    file=sys.stderr,
                )
        guard = DivergenceGuard(self.run_dir, tc.lr, tc.rollback_lr_factor, tc.max_rollbacks)
        if not has_checkpoint:
            guard.initial = Snapshot.take(state)
        amp_dtype = torch.bfloat16 if tc.amp and native_bf16(dist.device) else None
        if tc.amp and amp_dtype is None and dist.is_main:
            print(
                "note: train.amp=true, but this CPU has no native bf16 (AVX512-BF16 or AMX), "
                "where emulated bf16 trains about 11x slower; training in fp32",
                file=sys.stderr,
            )
        self.precision = "bf16" if amp_dtype is not None else "fp32"
        step_fn = TrainStep(
            state,
            cfg.loss,
            autocast_dtype=amp_dtype,
            dist=dist,
            stack_branches=tc.stack_branches,
            random_share=tc.random_share,
            warmup_code=tc.warmup_code,
        )
        out = RunOutputs(self.run_dir, dist.is_main)
        bar = tqdm(
            total=tc.steps,
            initial=state.step,
            disable=not self.progress or not dist.is_main,
            desc=f"{cfg.task}/{cfg.objective}",
            unit="step",
            dynamic_ncols=True,
        )
        try:
            last_path = self._loop(step_fn, guard, out, bar)
        finally:
            bar.close()
            out.close()
        dist.barrier()  # rank 0's last checkpoint is on disk before any process returns
        # nothing trained (a finished run resumed): the newest checkpoint, named like save()'s
        return last_path or ckpt.resolve(self.run_dir).with_suffix(".safetensors")

    def _loop(
        self, step_fn: TrainStep, guard: DivergenceGuard, out: RunOutputs, bar
    ) -> Path | None:
        tc, dist, state, device = self.cfg.train, self.dist, self.state, self.dist.device
        fixed = fixed_samples(self.test_split, device) if dist.is_main else None
        n = len(self.train_split["label"])
        last_path = None
        images_seen, t0 = 0, time.perf_counter()
        spikes = SpikeDetector(tc.spike_factor)
        was_warming_up = warming_up(tc, state.step, state.train_seconds)  # says when it ends
        with _StopRequest() as stop:
            state.model.train()
            stopped = out_of_budget = False
            session_start, seconds_before = time.perf_counter(), state.train_seconds
            while state.step < tc.steps:
                # every process must leave at the same step (one may not have seen the signal)
                if dist.any_true(stop.requested):
                    stopped = True
                    break
                # (no extra all-reduce per step when there is no budget)
                if tc.max_minutes and dist.any_true(out_of_time(tc, state.train_seconds)):
                    out_of_budget = True
                    break
                # S and R are drawn for the global batch, then sliced like the batch itself, so
                # N processes make the examples one process makes
                everyone = batch_indices(
                    n,
                    tc.batch_size,
                    state.step,
                    tc.seed,
                    lengths=self.lengths,
                    buckets=tc.length_buckets,
                )
                rows = self.pairs.draw(everyone, tc.seed, state.step).share(dist.rank, dist.world)
                idx = rows.target
                split, cl = self.train_split, tc.channels_last
                source = batch_to_model(split["source"][rows.source], device, cl)
                target = batch_to_model(split["target"][idx], device, cl)
                reference = (
                    None
                    if rows.reference_is_target
                    else batch_to_model(split["target"][rows.reference], device, cl)
                )
                domain = split["domain"][idx].to(device) if state.model.domain_outputs else None
                # (one all-reduce per step only while a time-measured warm-up can still be on)
                warmup = warming_up(tc, state.step, state.train_seconds)
                if warmup and tc.max_minutes:
                    warmup = dist.any_true(warmup)
                if was_warming_up and not warmup and dist.is_main:
                    bar.write(
                        f"step {state.step}: the adversarial warm-up "
                        f"(train.adversarial_warmup={tc.adversarial_warmup:g}) is over; "
                        "the whole objective trains from here"
                    )
                was_warming_up = warmup
                try:
                    logs = step_fn(source, target, reference, domain, warmup=warmup)
                    spiked = spikes.spiked(logs.get("rec", 0.0))
                    if tc.spike_factor and dist.any_true(spiked):
                        raise LossSpike(spikes.describe() if spiked else "a loss spike on a peer")
                except (NonFiniteLossError, LossSpike) as exc:
                    self._roll_back(guard, exc, out, bar)
                    spikes.reset()
                    continue
                state.step += 1
                state.train_seconds = seconds_before + time.perf_counter() - session_start
                images_seen += tc.batch_size
                bar.update(1)
                if state.step % tc.log_every == 0 or state.step == tc.steps:
                    logs = dist.mean(logs)
                    # training samples (images, sentences, utterances) a second, global batch
                    logs["samples_per_s"] = images_seen / (time.perf_counter() - t0)
                    shown = ("loss_D", "loss_G", "rec", "lat")
                    bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items() if k in shown})
                    out.scalars(state.step, logs)
                if dist.is_main and (state.step % tc.sample_every == 0 or state.step == tc.steps):
                    self._samples(out, fixed)
                if state.step % tc.checkpoint_every == 0 or state.step == tc.steps:
                    last_path = self.save() or last_path
            trained = state.train_seconds > seconds_before  # this session took a step
            if stopped or (out_of_budget and trained):
                last_path = self.save() or last_path
                if dist.is_main:
                    why = (
                        f"train.max_minutes={tc.max_minutes:g} reached"
                        if out_of_budget
                        else "stopped"
                    )
                    bar.write(
                        f"{why} at step {state.step}; checkpoint saved to {last_path}. "
                        "Resume with --resume."
                    )
            elif out_of_budget and dist.is_main:
                bar.write(
                    f"the run has already trained {state.train_seconds / 60:.1f} min of "
                    f"train.max_minutes={tc.max_minutes:g}: nothing to train; raise it to go on"
                )
        if dist.is_main:
            _write_stats(
                self.run_dir,
                images_seen,
                time.perf_counter() - t0,
                state.step,
                device,
                dist.world,
                self.precision,
                ended="stopped" if stopped else ("budget" if out_of_budget else "steps"),
            )
        return last_path

    def _samples(self, out: RunOutputs, fixed: dict) -> None:
        """This step's sample grids, drawn with the moving average of the generator side when
        the run keeps one (the weights translate and evaluate use), else the live weights."""
        state = self.state
        weights: contextlib.AbstractContextManager = contextlib.nullcontext()
        if state.ema is not None:
            weights = state.ema.swapped_in(state.model)
        with weights:
            out.samples(state.step, state.model, fixed, self.source, self.target)
        state.model.train()

    def _roll_back(
        self, guard: DivergenceGuard, error: NonFiniteLossError | LossSpike, out: RunOutputs, bar
    ) -> None:
        """Divergence guard (``m3dgan.guard``): restore, log, and checkpoint the restored state
        so that its lowered learning rate survives a later --resume."""
        try:
            event: Rollback = guard.roll_back(self.state, error)
        except TrainingDiverged:
            with contextlib.suppress(OutputError):  # a full disk must not hide why the run ends
                out.record({"step": self.state.step + 1, "event": "diverged", "reason": str(error)})
            raise
        self.dist.barrier()  # every process has read the checkpoint before rank 0 rewrites it
        self.save()
        out.record(event.record())
        if out.writer is not None:
            out.writer.add_scalar("train/rollback_lr", event.lr_after, event.failed_step)
        if self.dist.is_main:
            bar.write(event.message(), file=sys.stderr)
        bar.n = self.state.step
        bar.refresh()


def _write_stats(
    run_dir: Path,
    images: int,
    seconds: float,
    step: int,
    device: torch.device,
    world: int = 1,
    precision: str = "fp32",
    ended: str = "steps",
) -> None:
    """Throughput and peak memory of this session of the run (benchmarks read this file);
    ``samples`` are global-batch training samples (all processes: images, sentences or
    utterances; ``images`` / ``images_per_s`` repeat them under their first names, which older
    benchmark readers use), memory is rank 0's. ``ended``: why the
    session ended: ``"steps"`` (train.steps reached), ``"budget"`` (train.max_minutes) or
    ``"stopped"`` (a signal: the run is not finished, ``--resume`` goes on)."""
    stats = {
        "step": step,
        "ended": ended,
        "samples": images,
        "seconds": round(seconds, 2),
        "samples_per_s": images / seconds if seconds > 0 else None,
        "images": images,
        "images_per_s": images / seconds if seconds > 0 else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "processes": world,
        "precision": precision,  # what train.amp gave on this machine (bf16 | fp32)
    }
    if device.type == "cuda":
        stats["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    write_text(run_dir / "train_stats.json", json.dumps(stats, indent=1))
