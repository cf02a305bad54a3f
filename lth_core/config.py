"""Plain dataclass configs for training and ticket search, with per-architecture defaults.

The paper gives no training recipe; ours is a standard CIFAR-10 SGD recipe (a deviation we
chose, stated in the README). Every field can be overridden.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


def _opt(default: Any, help: str, choices: Any = None) -> Any:
    """A config field with its help text and, where the values are named, a function giving
    them (the CLI's flags are generated from these)."""
    return field(default=default, metadata={"help": help, "choices": choices})


class ConfigError(ValueError):
    """A config field of the wrong type or out of range; the message is one line naming it,
    ``field`` the field's name."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def _number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False) -> None:
    """Refuse a non-number (bools included), NaN, an infinity, or a value out of range."""
    key = name.replace(" ", "_")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number, got {value!r}", key)
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value!r}", key)
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        if high is None:
            span = f"{'>' if low_open else '>='} {low:g}"
        else:
            span = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"{name} must be {span}, got {value!r}", key)


def _integer(name: str, value: Any, low: int | None) -> None:
    """Refuse a non-integer (bools and floats included) or one below ``low``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}", name)
    if low is not None and value < low:
        raise ConfigError(f"{name} must be >= {low}, got {value!r}", name)


def _flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}", name)


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
    cudnn_benchmark: bool = _opt(False, "CUDA: let cuDNN time its convolution algorithms and "
                                        "keep the fastest (torch.backends.cudnn.benchmark)")
    channels_last: bool = _opt(False, "convolutions in channels-last memory format (weights "
                                      "and inputs), one run at a time: populations refuse it "
                                      "for now")
    eval_batch_size: int = _opt(1000, "batch size of evaluation")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError (one line, naming the field) for a field that cannot train.

        Checked when the config is built, so a bad flag is refused before a results folder
        records it as its setup; call again after changing a field in place.
        """
        _number("lr", self.lr, low=0.0, low_open=True)
        _number("momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        _number("weight_decay", self.weight_decay, low=0.0)
        _number("label_smoothing", self.label_smoothing, low=0.0, high=1.0, high_open=True)
        for name in ("batch_size", "max_epochs", "patience", "eval_batch_size"):
            _integer(name, getattr(self, name), 1)
        _integer("warmup_epochs", self.warmup_epochs, 0)
        if self.warmup_epochs > self.max_epochs:
            raise ConfigError(f"warmup_epochs must be <= max_epochs ({self.max_epochs}), got "
                              f"{self.warmup_epochs}", "warmup_epochs")
        for name in ("nesterov", "augment", "amp", "cuda_graphs", "cudnn_benchmark",
                     "channels_last"):
            _flag(name, getattr(self, name))


@dataclass
class SearchConfig:
    """Ticket search (Algorithm 1): K stages of train, prune, rewind."""

    stages: int = _opt(5, "K, the number of stages including the dense one")
    prune_rate: float = _opt(0.16, "share of the remaining weights pruned after each stage")
    pruner: str = _opt("lamp", "how a stage's trained weights are pruned",
                       choices=lambda: list(_pruners()))
    seed: int = _opt(0, "seed of the whole search (runs derive theirs from it)")
    arc_pairs: int = _opt(8, "test-image pairs whose interpolation arcs are measured")
    arc_points: int = _opt(1000, "points on each arc")
    hidden_arc_points: int = _opt(200, "points on the per-block arcs of Figure 1")
    hidden_runs: int = _opt(1, "runs that also store per-block arcs (they are large)")
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError (a ValueError, one line) for a config that cannot run.

        Checked when the config is built (and by the engines again, since fields can be
        changed in place), so nothing is written for a bad setup.
        """
        _integer("stages", self.stages, 1)
        _number("prune rate", self.prune_rate, low=0.0, high=1.0, low_open=True,
                high_open=True)
        if not isinstance(self.pruner, str) or self.pruner not in _pruners():
            raise ConfigError(f"unknown pruner {self.pruner!r}; choose from: "
                              f"{', '.join(_pruners())}", "pruner")
        _integer("seed", self.seed, None)
        _integer("arc_pairs", self.arc_pairs, 1)
        _integer("arc_points", self.arc_points, 2)
        _integer("hidden_arc_points", self.hidden_arc_points, 2)
        _integer("hidden_runs", self.hidden_runs, 0)
        if not isinstance(self.train, TrainConfig):
            raise ConfigError(f"train must be a TrainConfig, got {type(self.train).__name__}")
        self.train.validate()


def _pruners() -> dict[str, Any]:
    from lth_core.pruning import PRUNERS  # pruning imports torch; configs stay light

    return PRUNERS


def default_train_config(arch: str, **overrides: Any) -> TrainConfig:
    """The recipe of ``arch`` (its model file's ``TRAIN_DEFAULTS``), then ``overrides``."""
    from lth_core.models import train_defaults

    return TrainConfig(**{**train_defaults(arch), **overrides})


# The results folder every command and entry point uses unless told otherwise
RESULTS = "results"

# TrainConfig fields that change how a stage runs, not what it computes, and the device type
# on which that holds (None: every device). They are left out of a setup's identity (the
# setup a results folder holds, ``setup_identity``) and nowhere else: records keep them.
# ``cudnn_benchmark`` is a no-op off CUDA; on CUDA it changes which convolution algorithm
# runs, so results differ by float rounding, the same order as the run-to-run differences
# cuDNN's non-deterministic backward kernels (atomic adds) already give on one GPU with the
# flag off: no stored result could tell the two apart, so it is not part of a setup.
# ``channels_last`` is not here: it changes the kernels (and their summation order) on
# every device, CPU included, where results are otherwise bit for bit reproducible; a
# folder keeps to one memory format (tests/test_population.py bounds the difference).
ENGINE_ONLY: dict[str, str | None] = {"cuda_graphs": None, "amp": "cpu",
                                      "cudnn_benchmark": None}


def setup_identity(config: dict[str, Any], device_type: str | None = None) -> dict[str, Any]:
    """A config dict (``to_dict``) as a setup's identity: without the K asked for (a
    search may add stages) and the ``ENGINE_ONLY`` fields of ``device_type``."""
    out = {k: v for k, v in config.items() if k != "stages"}
    if isinstance(out.get("train"), dict):
        out["train"] = {k: v for k, v in out["train"].items()
                        if not (k in ENGINE_ONLY and ENGINE_ONLY[k] in (None, device_type))}
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) dataclass config."""
    return dataclasses.asdict(cfg)


def search_config_from_dict(d: dict[str, Any]) -> SearchConfig:
    """Inverse of ``to_dict`` for SearchConfig."""
    d = dict(d)
    try:
        return SearchConfig(train=TrainConfig(**d.pop("train", {})), **d)
    except TypeError as err:  # an unknown or missing field
        raise ConfigError(f"not a search config: {err}") from None
