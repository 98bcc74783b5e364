"""Run configuration: plain dataclasses, saved as YAML into every run folder.

Defaults follow the paper (§4) and, where it is silent, BicycleGAN's published settings
(λ_rec = 10, λ_kl = 0.01, λ_lat = 0.5, LSGAN, Adam 2e-4 with β1 = 0.5, nz = 8).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from m3dgan.errors import ConfigError


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
    # -- text (paper §4, appendix §7; Tacotron's encoder and decoder) --
    text_embed: int = 128  # character / subword embedding size
    text_prenet: list[int] = field(default_factory=lambda: [256, 128])  # FC layers before CBHG
    cbhg_bank: int = 16  # K: Conv1D bank widths 1..K
    cbhg_channels: int = 128  # units of each bank conv, projections and highway layers
    cbhg_highway: int = 4  # highway layers
    text_gru: int = 128  # units per direction of the encoder's bidirectional GRU
    decoder_attention_rnn: int = 256  # attention RNN: 2-layer residual GRU
    decoder_rnn: int = 256  # decoder RNN: GRU
    source_attention: bool = True  # sequence outputs attend over the source (False: the paper's
    # single global source embedding, kept for the ablation that shows what it loses)


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
    channels_last: bool = False  # NHWC layout: faster on CUDA (tensor cores), slower on CPU here
    compile: bool = False  # torch.compile the generator and discriminators
    # bitwise-repeatable runs (torch.use_deterministic_algorithms; slower on GPU)
    deterministic: bool = False
    # divergence guard: a NaN/Inf loss rolls back to the last checkpoint with the learning rate
    # multiplied by rollback_lr_factor, at most max_rollbacks times per run, then stops the run
    max_rollbacks: int = 3
    rollback_lr_factor: float = 0.5


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
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
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
        if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
            raise ConfigError(f"{where}: expected a list of integers, got {value!r}")
        return value
    if not isinstance(value, type(default)) or isinstance(value, bool) != isinstance(default, bool):
        raise ConfigError(f"{where}: expected {type(default).__name__}, got {value!r}")
    return value


def config_from_dict(data: dict[str, Any]) -> Config:
    return _build(Config, data, "config")


def load_config(path: Path) -> Config:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such config file") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``section.key=value`` overrides (value parsed as YAML), e.g. ``train.lr=1e-4``."""
    data = cfg.to_dict()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"override {item!r}: no section {part!r}")
            node = node[part]
        if leaf not in node:
            raise ConfigError(f"override {item!r}: unknown key {key!r}")
        node[leaf] = yaml.safe_load(raw)
    return config_from_dict(data)
