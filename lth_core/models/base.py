"""What every model here shares: a forward that applies its ``blocks()`` in order."""

from torch import Tensor, nn


class Blocks(nn.Module):
    """A model run as its ``blocks()``, so trajectories can be read after each one
    (``hidden_trajectories``); by default stem, each of ``layers``, head."""

    def blocks(self) -> list[tuple[str, nn.Module]]:
        layers = [(f"block{i}", b) for i, b in enumerate(self.layers)]
        return [("stem", self.stem), *layers, ("head", self.head)]

    def forward(self, x: Tensor) -> Tensor:
        for _, block in self.blocks():
            x = block(x)
        return x
