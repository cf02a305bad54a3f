"""ResNet-32 for CIFAR-10 (He et al., 2016, Sec. 4.2), after akamaster's pytorch_resnet_cifar10.

Uses the parameter-free "option A" shortcut. Weights keep PyTorch's default initialisation,
as every other model here does and as the paper does (the reference's Kaiming-normal init is
not used), so rewinding restarts every architecture from the same kind of theta_init.
"""

import torch.nn.functional as F
from torch import Tensor, nn


class PadShortcut(nn.Module):
    """Option A shortcut: subsample by 2 and zero-pad the new channels (no parameters)."""

    def __init__(self, extra_planes: int) -> None:
        super().__init__()
        self.extra_planes = extra_planes

    def forward(self, x: Tensor) -> Tensor:
        half = self.extra_planes // 2
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, half, self.extra_planes - half))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = PadShortcut(planes - in_planes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """conv3x3(16) stem, three stages of n BasicBlocks at 16/32/64, avg pool, FC."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        layers: list[nn.Module] = []
        in_planes = 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(blocks_per_stage):
                layers.append(BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
        self.layers = nn.ModuleList(layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """Stem, each BasicBlock, head: the stages the trajectory plots read out."""
        layers = [(f"block{i}", b) for i, b in enumerate(self.layers)]
        return [("stem", self.stem), *layers, ("head", self.head)]

    def forward(self, x: Tensor) -> Tensor:
        for _, block in self.blocks():
            x = block(x)
        return x


def resnet32(num_classes: int = 10) -> CifarResNet:
    return CifarResNet(blocks_per_stage=5, num_classes=num_classes)


# Training recipe (our choice: the paper gives none); see lth_core.config.
TRAIN_DEFAULTS = {"resnet32": {"lr": 0.1, "max_epochs": 40}}
