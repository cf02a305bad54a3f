"""LeNet-5 for CIFAR-10: the smallest network in the paper (62,006 parameters)."""

from torch import Tensor, nn


class LeNet5(nn.Module):
    """Two conv stages and three fully connected layers; biases, no BatchNorm."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.conv2 = nn.Sequential(nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.fc1 = nn.Sequential(nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU())
        self.fc2 = nn.Sequential(nn.Linear(120, 84), nn.ReLU())
        self.fc3 = nn.Linear(84, num_classes)

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """The forward pass as ordered stages, so trajectories can be read after each one."""
        return [(name, getattr(self, name)) for name in ("conv1", "conv2", "fc1", "fc2", "fc3")]

    def forward(self, x: Tensor) -> Tensor:
        for _, block in self.blocks():
            x = block(x)
        return x


def lenet5(num_classes: int = 10) -> LeNet5:
    return LeNet5(num_classes)
