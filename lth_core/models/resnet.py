"""ResNet-18 (ImageNet block layout) adapted to CIFAR-10 as in kuangliu's pytorch-cifar.

The 3x3 stride-1 stem without max-pool keeps 32x32 inputs from shrinking too early.
"""

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from .base import Blocks


def projection(in_planes: int, planes: int, stride: int) -> nn.Module:
    """The 1x1 conv + BN shortcut where a block changes width or resolution."""
    return nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                         nn.BatchNorm2d(planes))


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN and a residual connection; ``shortcut(in_planes, planes, stride)``
    makes it where the block changes width or resolution (ResNet-32: ``PadShortcut``)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1,
                 shortcut: Callable[[int, int, int], nn.Module] = projection) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = shortcut(in_planes, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(Blocks):
    """Stem, four stages of BasicBlocks at 64/128/256/512, avg pool, FC."""

    def __init__(self, num_blocks: tuple[int, ...], num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU()
        )
        layers: list[nn.Module] = []
        in_planes = 64
        for stage, n in enumerate(num_blocks):
            planes = 64 * 2**stage
            for i in range(n):
                layers.append(BasicBlock(in_planes, planes, 2 if stage > 0 and i == 0 else 1))
                in_planes = planes
        self.layers = nn.ModuleList(layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_planes, num_classes)
        )


def resnet18(num_classes: int = 10) -> ResNet:
    return ResNet((2, 2, 2, 2), num_classes=num_classes)


# Training recipe (our choice: the paper gives none); see lth_core.config.
TRAIN_DEFAULTS = {"resnet18": {"lr": 0.1, "max_epochs": 40}}
