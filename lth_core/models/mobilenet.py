"""MobileNet-V1 for CIFAR-10 (Howard et al., 2017), after kuangliu's pytorch-cifar."""

from torch import Tensor, nn

from .base import Blocks

# (out_planes, stride) of the 13 depthwise-separable blocks.
CFG: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)


class DepthwiseSeparable(nn.Module):
    """Depthwise 3x3 conv + BN + ReLU, then pointwise 1x1 conv + BN + ReLU."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.depthwise = nn.Sequential(
            nn.Conv2d(in_planes, in_planes, 3, stride, padding=1, groups=in_planes, bias=False),
            nn.BatchNorm2d(in_planes),
            nn.ReLU(),
        )
        self.pointwise = nn.Sequential(
            nn.Conv2d(in_planes, out_planes, 1, bias=False), nn.BatchNorm2d(out_planes), nn.ReLU()
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class MobileNet(Blocks):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU()
        )
        layers: list[nn.Module] = []
        in_planes = 32
        for out_planes, stride in CFG:
            layers.append(DepthwiseSeparable(in_planes, out_planes, stride))
            in_planes = out_planes
        self.layers = nn.ModuleList(layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_planes, num_classes)
        )


def mobilenet_v1(num_classes: int = 10) -> MobileNet:
    return MobileNet(num_classes)


# Training recipe (our choice: the paper gives none); see lth_core.config.
TRAIN_DEFAULTS = {"mobilenet_v1": {"lr": 0.1, "max_epochs": 40}}
