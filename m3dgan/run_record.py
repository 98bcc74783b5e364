"""The run contract: what a checkpoint's sidecar says about its run.

Training writes one :class:`RunRecord` into every checkpoint (``m3dgan.run_state.save``);
resume (``run_state.restore``), :class:`m3dgan.infer.Translator` and evaluation read it back
with :meth:`RunRecord.from_dict`. It holds everything they need besides the weights: the full
config, both sides' shapes, the vocabularies, the mel settings of a speech side, the data set's
name and domains, and the divergence guard's state. A field missing from a sidecar is one
:class:`~m3dgan.errors.CheckpointError` naming the file and the field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from m3dgan.config import Config, config_from_dict
from m3dgan.errors import CheckpointError, ConfigError
from m3dgan.modalities import Modality, ModalitySpec, get_modality
from m3dgan.modalities.text.vocab import Vocabulary

if TYPE_CHECKING:
    from m3dgan.data.store import Manifest

# fields every sidecar written by m3dgan has had; ``audio`` came later (see from_dict)
REQUIRED = ("config", "source", "target", "dataset", "domains", "vocab")


@dataclass
class RunRecord:
    """A run as its checkpoints describe it.

    - ``config``: the run's full config (``config.yaml``);
    - ``source``, ``target``: the two sides' shapes (:class:`ModalitySpec`);
    - ``dataset``: the data set's name; ``domains``: its domain names; ``classes_count``: how
      many classes it labels (0 if none);
    - ``vocab``: each text side's vocabulary as ``Vocabulary.to_dict()``;
    - ``audio``: the speech side's mel settings (``MelConfig.to_dict()``), ``{}`` without a
      speech side, ``None`` in checkpoints saved before m3dgan recorded them;
    - ``guard``: the divergence guard's ``lr_scale`` and ``rollbacks``, and ``train_seconds``
      (training time so far, for ``train.max_minutes``);
    - ``ema``: the moving average's update count ``{"updates": k}`` (its tensors are the
      checkpoint's ``ema.*``), ``{}`` in runs without one (``train.ema_decay`` = 0);
    - ``where``: the sidecar it was read from, for error messages (not saved).
    """

    config: Config
    source: ModalitySpec
    target: ModalitySpec
    dataset: str
    domains: list[str] = field(default_factory=list)
    classes_count: int = 0
    vocab: dict[str, dict] = field(default_factory=dict)
    audio: dict | None = field(default_factory=dict)
    guard: dict[str, Any] = field(default_factory=dict)
    ema: dict[str, Any] = field(default_factory=dict)
    where: str = field(default="checkpoint sidecar", compare=False)

    @classmethod
    def for_dataset(
        cls,
        config: Config,
        source: ModalitySpec,
        target: ModalitySpec,
        manifest: Manifest,
        vocabs: dict[str, Vocabulary],
    ) -> RunRecord:
        """The record of a new run of ``config`` on the data set ``manifest`` describes, with
        the run's vocabularies. The mel settings are the data set's ({} without a speech side):
        inference and the training samples read and vocode audio with them."""
        return cls(
            config=config,
            source=source,
            target=target,
            dataset=manifest.name,
            domains=list(manifest.domains),
            classes_count=len(manifest.classes),
            vocab={side: v.to_dict() for side, v in vocabs.items()},
            audio=dict(manifest.audio),
        )

    @property
    def task(self) -> str:
        return self.config.task

    def to_dict(self) -> dict[str, Any]:
        """The sidecar fields (JSON-ready)."""
        return {
            "config": self.config.to_dict(),
            "task": self.task,
            "dataset": self.dataset,
            "source": asdict(self.source),
            "target": asdict(self.target),
            "domains": list(self.domains),
            "classes_count": self.classes_count,
            "vocab": dict(self.vocab),
            "audio": dict(self.audio or {}),
            "guard": dict(self.guard),
            "ema": dict(self.ema),
        }

    @classmethod
    def from_dict(cls, meta: dict[str, Any], where: str = "checkpoint sidecar") -> RunRecord:
        """Read a sidecar's fields back; ``where`` (the sidecar's path) names it in errors.

        Raises:
            CheckpointError: a required field is missing or damaged.
        """
        missing = [name for name in REQUIRED if name not in meta]
        if missing:
            raise CheckpointError(f"{where}: lacks {', '.join(missing)} (not an m3dgan run?)")
        try:
            config = config_from_dict(meta["config"])
            source, target = ModalitySpec(**meta["source"]), ModalitySpec(**meta["target"])
        except (ConfigError, TypeError) as exc:
            raise CheckpointError(f"{where}: damaged run description ({exc})") from exc
        vocab, audio, guard = meta["vocab"], meta.get("audio"), meta.get("guard") or {}
        if not isinstance(vocab, dict) or not isinstance(guard, dict):
            raise CheckpointError(f"{where}: damaged vocabularies or guard state")
        ema = meta.get("ema") or {}  # sidecars from before train.ema_decay have none
        updates = ema.get("updates", 0) if isinstance(ema, dict) else None
        if not isinstance(updates, int) or isinstance(updates, bool) or updates < 0:
            raise CheckpointError(f"{where}: damaged moving-average state (ema)")
        if audio is not None and not isinstance(audio, dict):
            raise CheckpointError(f"{where}: damaged mel settings (audio)")
        return cls(
            config=config,
            source=source,
            target=target,
            dataset=str(meta["dataset"]),
            domains=list(meta["domains"] or []),
            classes_count=int(meta.get("classes_count") or 0),
            vocab=vocab,
            audio=audio,
            guard=guard,
            ema=ema,
            where=where,
        )

    def spec(self, side: str) -> ModalitySpec:
        return self.source if side == "source" else self.target

    def modality(self, side: str) -> Modality:
        """The modality of ``side`` ("source" or "target") with its codec (vocabulary, mel
        settings...) for reading and writing files; CheckpointError if the codec is missing or
        damaged, ValueError for a kind no modality is registered for."""
        spec = self.spec(side)
        cls = get_modality(spec.kind)
        return cls(spec, cls.codec_from_record(self, side))
