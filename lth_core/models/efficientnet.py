"""EfficientNet-B0 for CIFAR-10 (Tan & Le, 2019), after kuangliu's pytorch-cifar.

Differences from ImageNet B0, as in the reference: stride-1 stem and no 1280-wide head.
Drop-connect is left out on purpose (only the 0.2 dropout before the FC is kept), so that
the per-block computation is deterministic apart from that one dropout.

The 1x1 expansion conv + BN is applied in every block, also where the expansion is 1.
kuangliu's current version builds that conv but skips it in forward; its parameters still
count toward 3,599,686, and an unused weight would be pruned without effect and get no
gradient. Applying it (as kuangliu's earlier revision did) keeps the count and uses it.
"""

from torch import Tensor, nn

from .base import Blocks

# (expansion, out_planes, repeats, kernel_size, stride) per stage.
CFG: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 16, 1, 3, 1),
    (6, 24, 2, 3, 2),
    (6, 40, 2, 5, 2),
    (6, 80, 3, 3, 2),
    (6, 112, 3, 5, 1),
    (6, 192, 4, 5, 2),
    (6, 320, 1, 3, 1),
)


class SqueezeExcitation(nn.Module):
    """Channel gate from globally pooled features; two 1x1 convs with bias."""

    def __init__(self, planes: int, se_planes: int) -> None:
        super().__init__()
        self.se1 = nn.Conv2d(planes, se_planes, 1)
        self.se2 = nn.Conv2d(se_planes, planes, 1)
        self.act = nn.SiLU()

    def forward(self, x: Tensor) -> Tensor:
        w = x.mean(dim=(2, 3), keepdim=True)
        w = self.se2(self.act(self.se1(w))).sigmoid()
        return x * w


class MBConv(nn.Module):
    """Expand 1x1 (always, see module docstring), depthwise kxk, SE, project 1x1."""

    def __init__(
        self, in_planes: int, out_planes: int, kernel_size: int, stride: int, expansion: int
    ) -> None:
        super().__init__()
        planes = expansion * in_planes
        self.expand = nn.Sequential(
            nn.Conv2d(in_planes, planes, 1, bias=False), nn.BatchNorm2d(planes), nn.SiLU()
        )
        self.depthwise = nn.Sequential(
            nn.Conv2d(
                planes, planes, kernel_size, stride,
                padding=(kernel_size - 1) // 2, groups=planes, bias=False,
            ),
            nn.BatchNorm2d(planes),
            nn.SiLU(),
        )
        self.se = SqueezeExcitation(planes, max(1, int(in_planes * 0.25)))
        self.project = nn.Sequential(
            nn.Conv2d(planes, out_planes, 1, bias=False), nn.BatchNorm2d(out_planes)
        )
        self.has_skip = stride == 1 and in_planes == out_planes

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return out + x if self.has_skip else out


class EfficientNet(Blocks):
    def __init__(
        self,
        cfg: tuple[tuple[int, int, int, int, int], ...] = CFG,
        num_classes: int = 10,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.SiLU()
        )
        layers: list[nn.Module] = []
        in_planes = 32
        for expansion, out_planes, repeats, kernel_size, stride in cfg:
            for i in range(repeats):
                layers.append(
                    MBConv(in_planes, out_planes, kernel_size, stride if i == 0 else 1, expansion)
                )
                in_planes = out_planes
        self.layers = nn.ModuleList(layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(in_planes, num_classes),
        )


def efficientnet_b0(num_classes: int = 10) -> EfficientNet:
    return EfficientNet(num_classes=num_classes)


# Training recipe (our choice: the paper gives none); see lth_core.config.
TRAIN_DEFAULTS = {"efficientnet_b0": {"lr": 0.1, "max_epochs": 40}}
