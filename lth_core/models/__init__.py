"""The seven CIFAR-10 architectures of the paper, ordered by parameter count (Table 1).

Also the LeNet-5 width family, named ``lenet5-w<width>`` (``lenet5`` itself at width 1).
"""

import re
from collections import OrderedDict
from collections.abc import Callable

from torch import nn

from . import efficientnet, lenet, mobilenet, pnasnet, resnet, resnet_cifar
from .efficientnet import efficientnet_b0
from .lenet import lenet5
from .mobilenet import mobilenet_v1
from .pnasnet import pnasnet_a, pnasnet_b
from .resnet import resnet18
from .resnet_cifar import resnet32

ARCHITECTURES: "OrderedDict[str, Callable[..., nn.Module]]" = OrderedDict(
    [
        ("lenet5", lenet5),
        ("pnasnet_a", pnasnet_a),
        ("pnasnet_b", pnasnet_b),
        ("resnet32", resnet32),
        ("mobilenet_v1", mobilenet_v1),
        ("efficientnet_b0", efficientnet_b0),
        ("resnet18", resnet18),
    ]
)

# Exact trainable-parameter counts at num_classes=10; tests pin the models to these.
PARAM_COUNTS: dict[str, int] = {
    "lenet5": 62_006,
    "pnasnet_a": 130_646,
    "pnasnet_b": 451_626,
    "resnet32": 464_154,
    "mobilenet_v1": 3_217_226,
    "efficientnet_b0": 3_599_686,
    "resnet18": 11_173_962,
}

# Each architecture's training recipe sits with its model (``TRAIN_DEFAULTS`` in its file).
TRAIN_DEFAULTS: dict[str, dict] = {
    **lenet.TRAIN_DEFAULTS, **pnasnet.TRAIN_DEFAULTS, **resnet_cifar.TRAIN_DEFAULTS,
    **mobilenet.TRAIN_DEFAULTS, **efficientnet.TRAIN_DEFAULTS, **resnet.TRAIN_DEFAULTS,
}


def train_defaults(name: str) -> dict:
    """The recipe of ``name``: its family's for a width name, ``{}`` for unknown names."""
    if name not in TRAIN_DEFAULTS and _WIDTH_NAME.fullmatch(name):
        name = "lenet5"
    return dict(TRAIN_DEFAULTS.get(name, {}))


MAX_WIDTH = 16.0  # the widest LeNet-5 ``build`` makes by name
_WIDTH_NAME = re.compile(r"lenet5-w(\d+(?:\.\d+)?)", re.ASCII)


def parse_width(name: str) -> float:
    """The LeNet-5 width multiplier a name stands for (1.0 for ``lenet5``); ValueError if none."""
    if name == "lenet5":
        return 1.0
    match = _WIDTH_NAME.fullmatch(name)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"unknown architecture {name!r}; choose from: "
                         f"{', '.join(ARCHITECTURES)}, or lenet5-w<width> with <width> a "
                         "positive decimal (e.g. lenet5-w0.5, lenet5-w2)")
    return float(match.group(1))


# The study's widths (issue "Does ticket search favour small models?"), by parameter count.
WIDTH_FAMILY: dict[str, float] = {
    "lenet5-w0.125": 0.125,
    "lenet5-w0.25": 0.25,
    "lenet5-w0.5": 0.5,
    "lenet5": 1.0,
    "lenet5-w2": 2.0,
}

# Exact trainable-parameter counts of the width family at num_classes=10.
WIDTH_PARAM_COUNTS: dict[str, int] = {
    "lenet5-w0.125": 1_189,
    "lenet5-w0.25": 4_257,
    "lenet5-w0.5": 15_888,
    "lenet5": 62_006,
    "lenet5-w2": 244_962,
}


def is_buildable(name: str) -> bool:
    """Whether ``build(name)`` accepts the name (``check_arch``)."""
    try:
        check_arch(name)
    except ValueError:
        return False
    return True


def check_arch(name: str) -> None:
    """Raise ValueError (one line) unless ``build(name)`` makes a model that fits in memory:
    a known name, and a LeNet-5 width of at most ``MAX_WIDTH`` (its parameters grow with the
    width squared: ``lenet5-w1000`` would allocate about 200 GB)."""
    if name in ARCHITECTURES:
        return
    width = parse_width(name)
    if width > MAX_WIDTH:
        raise ValueError(f"LeNet-5 width {width:g} of {name!r} is above {MAX_WIDTH:g} (about "
                         f"{MAX_WIDTH**2 * 62_006 / 1e6:.0f}M parameters there); choose a "
                         "smaller width")


def build(name: str, num_classes: int = 10) -> nn.Module:
    """Construct an architecture by registry name, or LeNet-5 at a width by ``lenet5-w<width>``."""
    check_arch(name)
    if name in ARCHITECTURES:
        return ARCHITECTURES[name](num_classes=num_classes)
    return lenet5(num_classes=num_classes, width=parse_width(name))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (weights, biases and BN affine terms)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def by_size(names) -> list[str]:
    """Architecture names in ascending order of parameter count, each once.

    Counts come from PARAM_COUNTS and WIDTH_PARAM_COUNTS, else from building the model
    (any ``lenet5-w<width>``); names ``build`` does not know go last, in their given order.
    """
    names = list(dict.fromkeys(names))
    counts = {**PARAM_COUNTS, **WIDTH_PARAM_COUNTS}
    for name in names:
        if name not in counts and isinstance(name, str) and is_buildable(name):
            counts[name] = count_parameters(build(name))
    return sorted(names, key=lambda n: (n not in counts, counts.get(n, 0)))

