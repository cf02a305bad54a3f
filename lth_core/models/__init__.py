"""The seven CIFAR-10 architectures of the paper, ordered by parameter count (Table 1)."""

from collections import OrderedDict
from collections.abc import Callable

from torch import nn

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


def build(name: str, num_classes: int = 10) -> nn.Module:
    """Construct an architecture by registry name."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose from: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name](num_classes=num_classes)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (weights, biases and BN affine terms)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["ARCHITECTURES", "PARAM_COUNTS", "build", "count_parameters"]
