"""Plain dataclass configs for training and ticket search, with per-architecture defaults.

The paper gives no training recipe; ours is a standard CIFAR-10 SGD recipe (a deviation we
chose, stated in the README). Every field can be overridden.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainConfig:
    """How one stage is trained. ``max_epochs`` also sets the cosine schedule's length."""

    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    batch_size: int = 128
    max_epochs: int = 40
    patience: int = 10
    warmup_epochs: int = 0
    augment: bool = True
    label_smoothing: float = 0.0
    amp: bool = True  # bf16 autocast, on CUDA only
    cuda_graphs: bool = True  # population engine on CUDA: replay the step as one CUDA graph
    eval_batch_size: int = 1000


@dataclass
class SearchConfig:
    """Ticket search (Algorithm 1): K stages of train, prune, rewind."""

    stages: int = 5
    prune_rate: float = 0.16
    pruner: str = "lamp"
    seed: int = 0
    arc_pairs: int = 8
    arc_points: int = 1000
    hidden_arc_points: int = 200
    hidden_runs: int = 1  # runs that also store per-block arcs (Figure 1); they are large
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


# Per-architecture training defaults. LeNet-5 uses the recipe measured on the JPEG CIFAR-10
# copy (lr 0.05, 30 epochs); the deeper nets use lr 0.1 and a longer schedule.
ARCH_TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "lenet5": {"lr": 0.05, "max_epochs": 30, "patience": 8},
    "pnasnet_a": {"lr": 0.1, "max_epochs": 40},
    "pnasnet_b": {"lr": 0.1, "max_epochs": 40},
    "resnet32": {"lr": 0.1, "max_epochs": 40},
    "mobilenet_v1": {"lr": 0.1, "max_epochs": 40},
    "efficientnet_b0": {"lr": 0.1, "max_epochs": 40},
    "resnet18": {"lr": 0.1, "max_epochs": 40},
}


def default_train_config(arch: str, **overrides: Any) -> TrainConfig:
    """The default recipe for ``arch`` (generic defaults for unknown names), then overrides."""
    from lth_core.models import parse_width

    try:  # the LeNet-5 width family trains with LeNet-5's recipe
        parse_width(arch)
        arch = "lenet5"
    except ValueError:
        pass
    values = {**ARCH_TRAIN_DEFAULTS.get(arch, {}), **overrides}
    return TrainConfig(**values)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) dataclass config."""
    return dataclasses.asdict(cfg)


def search_config_from_dict(d: dict[str, Any]) -> SearchConfig:
    """Inverse of ``to_dict`` for SearchConfig."""
    d = dict(d)
    train = TrainConfig(**d.pop("train", {}))
    return SearchConfig(train=train, **d)
