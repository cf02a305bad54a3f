"""PNASNet-A/B for CIFAR-10, after kuangliu's pytorch-cifar (Liu et al., 2018).

The "separable" convolution here is kuangliu's: one grouped conv (groups = input
channels) plus BN, with no pointwise conv. Keeping that choice is what gives the
paper's parameter counts (0.13M for A, 0.45M for B).
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Blocks


class SepConv(nn.Module):
    """Grouped kxk conv + BN (kuangliu's reduced separable conv)."""

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_planes, out_planes, kernel_size, stride,
            padding=(kernel_size - 1) // 2, groups=in_planes, bias=False,
        )
        self.bn = nn.BatchNorm2d(out_planes)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


class PoolBranch(nn.Module):
    """3x3 max-pool; a stride-2 cell also needs a 1x1 conv + BN to change width."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.proj = None
        if stride == 2:
            self.proj = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, bias=False), nn.BatchNorm2d(out_planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(x, kernel_size=3, stride=self.stride, padding=1)
        return x if self.proj is None else self.proj(x)


class CellA(nn.Module):
    """ReLU(sepconv7x7 + maxpool3x3)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int = 1) -> None:
        super().__init__()
        self.sep_conv1 = SepConv(in_planes, out_planes, 7, stride)
        self.pool = PoolBranch(in_planes, out_planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.sep_conv1(x) + self.pool(x))


class CellB(nn.Module):
    """Two summed branch pairs, concatenated and reduced back to width by a 1x1 conv."""

    def __init__(self, in_planes: int, out_planes: int, stride: int = 1) -> None:
        super().__init__()
        self.sep_conv1 = SepConv(in_planes, out_planes, 7, stride)
        self.sep_conv2 = SepConv(in_planes, out_planes, 3, stride)
        self.pool = PoolBranch(in_planes, out_planes, stride)
        self.sep_conv3 = SepConv(in_planes, out_planes, 5, stride)
        self.reduce = nn.Sequential(
            nn.Conv2d(2 * out_planes, out_planes, 1, bias=False),
            nn.BatchNorm2d(out_planes),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        b1 = F.relu(self.sep_conv1(x) + self.sep_conv2(x))
        b2 = F.relu(self.pool(x) + self.sep_conv3(x))
        return self.reduce(torch.cat([b1, b2], dim=1))


class PNASNet(Blocks):
    """Stem, then 6 cells at C, stride-2 cell, 6 at 2C, stride-2 cell, 6 at 4C, then the head."""

    def __init__(self, cell: type[nn.Module], planes: int, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, planes, 3, padding=1, bias=False), nn.BatchNorm2d(planes), nn.ReLU()
        )
        cells: list[nn.Module] = []
        in_planes = planes
        for stage, width in enumerate((planes, 2 * planes, 4 * planes)):
            if stage > 0:
                cells.append(cell(in_planes, width, stride=2))
                in_planes = width
            for _ in range(6):
                cells.append(cell(in_planes, width, stride=1))
        self.cells = nn.ModuleList(cells)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * planes, num_classes)
        )

    def blocks(self) -> list[tuple[str, nn.Module]]:
        cells = [(f"cell{i}", c) for i, c in enumerate(self.cells)]
        return [("stem", self.stem), *cells, ("head", self.head)]


def pnasnet_a(num_classes: int = 10) -> PNASNet:
    return PNASNet(CellA, planes=44, num_classes=num_classes)


def pnasnet_b(num_classes: int = 10) -> PNASNet:
    return PNASNet(CellB, planes=32, num_classes=num_classes)


# Training recipe (our choice: the paper gives none); see lth_core.config.
TRAIN_DEFAULTS = {"pnasnet_a": {"lr": 0.1, "max_epochs": 40},
                  "pnasnet_b": {"lr": 0.1, "max_epochs": 40}}
