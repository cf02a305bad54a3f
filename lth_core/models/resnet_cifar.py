"""ResNet-32 for CIFAR-10 (He et al., 2016, Sec. 4.2), after akamaster's pytorch_resnet_cifar10.

Uses the parameter-free "option A" shortcut. Weights keep PyTorch's default initialisation,
as every other model here does and as the paper does (the reference's Kaiming-normal init is
not used), so rewinding restarts every architecture from the same kind of theta_init.
"""

import torch.nn.functional as F
from torch import Tensor, nn

from .base import Blocks
from .resnet import BasicBlock


class PadShortcut(nn.Module):
    """Option A shortcut: subsample by 2 and zero-pad the new channels (no parameters)."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.extra_planes = planes - in_planes

    def forward(self, x: Tensor) -> Tensor:
        half = self.extra_planes // 2
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, half, self.extra_planes - half))


class CifarResNet(Blocks):
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
                layers.append(BasicBlock(in_planes, planes, stride if i == 0 else 1, PadShortcut))
                in_planes = planes
        self.layers = nn.ModuleList(layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))


def resnet32(num_classes: int = 10) -> CifarResNet:
    return CifarResNet(blocks_per_stage=5, num_classes=num_classes)


# Training recipe (our choice: the paper gives none); see lth_core.config.
TRAIN_DEFAULTS = {"resnet32": {"lr": 0.1, "max_epochs": 40}}
