"""LeNet-5 for CIFAR-10, the smallest network in the paper (62,006 parameters), by width."""

import math

from torch import nn

from .base import Blocks


def _scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded half up to an int, at least 1."""
    return max(1, math.floor(channels * width + 0.5))


class LeNet5(Blocks):
    """Two conv stages and three fully connected layers; biases, no BatchNorm.

    ``width`` scales the conv channels (6, 16) and hidden units (120, 84); ``width=1`` is the
    paper's LeNet-5, with the same parameters constructed in the same order.
    """

    def __init__(self, num_classes: int = 10, width: float = 1.0) -> None:
        super().__init__()
        if not (math.isfinite(width) and width > 0):
            raise ValueError(f"LeNet-5 width must be a positive finite number, got {width!r}")
        self.width = float(width)
        c1, c2, h1, h2 = (_scaled(n, width) for n in (6, 16, 120, 84))
        self.conv1 = nn.Sequential(nn.Conv2d(3, c1, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.conv2 = nn.Sequential(nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.fc1 = nn.Sequential(nn.Flatten(), nn.Linear(c2 * 5 * 5, h1), nn.ReLU())
        self.fc2 = nn.Sequential(nn.Linear(h1, h2), nn.ReLU())
        self.fc3 = nn.Linear(h2, num_classes)

    def blocks(self) -> list[tuple[str, nn.Module]]:
        return [(name, getattr(self, name)) for name in ("conv1", "conv2", "fc1", "fc2", "fc3")]


def lenet5(num_classes: int = 10, width: float = 1.0) -> LeNet5:
    return LeNet5(num_classes, width)


# The recipe measured on the JPEG CIFAR-10 copy (our choice: the paper gives none); the
# width family trains with it too.
TRAIN_DEFAULTS = {"lenet5": {"lr": 0.05, "max_epochs": 30, "patience": 8}}
