"""Plain dataclass configs for training and ticket search, with per-architecture defaults.

The paper gives no training recipe; ours is a standard CIFAR-10 SGD recipe (a deviation we
chose, stated in the README). Every field can be overridden.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _opt(default: Any, help: str) -> Any:
    """A config field with its help text (the CLI's flags are generated from these)."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """How one stage is trained. Every field is a flag of ``lth search`` (``--max-epochs``)."""

    lr: float = _opt(0.1, "peak learning rate of SGD")
    momentum: float = _opt(0.9, "SGD momentum")
    nesterov: bool = _opt(True, "Nesterov momentum")
    weight_decay: float = _opt(5e-4, "L2 weight decay")
    batch_size: int = _opt(128, "training batch size")
    max_epochs: int = _opt(40, "epochs per stage at most; also the cosine schedule's length")
    patience: int = _opt(10, "early stopping: epochs without a better validation accuracy")
    warmup_epochs: int = _opt(0, "linear learning-rate warm-up, in epochs")
    augment: bool = _opt(True, "random crop (pad 4) and horizontal flip")
    label_smoothing: float = _opt(0.0, "label smoothing of the cross-entropy loss")
    amp: bool = _opt(True, "bf16 on CUDA (ignored on a CPU)")
    cuda_graphs: bool = _opt(True, "population engine on CUDA: replay the step as a CUDA graph")
    eval_batch_size: int = _opt(1000, "batch size of evaluation")


@dataclass
class SearchConfig:
    """Ticket search (Algorithm 1): K stages of train, prune, rewind."""

    stages: int = _opt(5, "K, the number of stages including the dense one")
    prune_rate: float = _opt(0.16, "share of the remaining weights pruned after each stage")
    pruner: str = _opt("lamp", "lamp, magnitude or random")
    seed: int = _opt(0, "seed of the whole search (runs derive theirs from it)")
    arc_pairs: int = _opt(8, "test-image pairs whose interpolation arcs are measured")
    arc_points: int = _opt(1000, "points on each arc")
    hidden_arc_points: int = _opt(200, "points on the per-block arcs of Figure 1")
    hidden_runs: int = _opt(1, "runs that also store per-block arcs (they are large)")
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        """Raise ValueError with one line for a config that cannot run."""
        from lth_core.pruning import PRUNERS

        if self.stages < 1:
            raise ValueError(f"stages must be >= 1, got {self.stages}")
        if not 0.0 < self.prune_rate < 1.0:
            raise ValueError(f"prune rate must be in (0, 1), got {self.prune_rate}")
        if self.pruner not in PRUNERS:
            raise ValueError(f"unknown pruner {self.pruner!r}; choose from: {', '.join(PRUNERS)}")
        t = self.train
        if t.max_epochs < 1 or t.patience < 1 or t.batch_size < 1:
            raise ValueError("max_epochs, patience and batch_size must be >= 1")
        if t.lr <= 0:
            raise ValueError(f"lr must be > 0, got {t.lr}")


def default_train_config(arch: str, **overrides: Any) -> TrainConfig:
    """The recipe of ``arch`` (its model file's ``TRAIN_DEFAULTS``), then ``overrides``."""
    from lth_core.models import train_defaults

    return TrainConfig(**{**train_defaults(arch), **overrides})


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) dataclass config."""
    return dataclasses.asdict(cfg)


def search_config_from_dict(d: dict[str, Any]) -> SearchConfig:
    """Inverse of ``to_dict`` for SearchConfig."""
    d = dict(d)
    train = TrainConfig(**d.pop("train", {}))
    return SearchConfig(train=train, **d)
