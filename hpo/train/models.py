"""Networks the studies train. The torchvision backbones for SVHN live in hpo/train/backbones.py."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Standardize(nn.Module):
    """Shift and scale the input to zero mean and unit variance (given the data's own mean and
    standard deviation). Kept in the model, so a checkpoint carries it."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Dropout(nn.Module):
    """Dropout with a mask that is cheaper to draw on CPU than nn.Dropout's.

    On two CPU cores nn.Dropout's Bernoulli draw cost about 4 ms per 256x986 batch, 20% of a
    wide mnist-mlp epoch. Here one random 32-bit integer gives the keep-or-drop bytes of four
    units, so the rate is rounded to a multiple of 1/256 (0.1 becomes 26/256 = 0.1016). On
    CUDA the draw is cheap and this is nn.functional.dropout itself.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"A dropout rate must be in [0, 1), not {p}.")
        self.p = p
        # At most 255 of 256: a rate just under 1 must still keep a few units.
        self.dropped_of_256 = min(round(p * 256), 255)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.dropped_of_256 == 0:
            return x
        if x.device.type != "cpu":
            return nn.functional.dropout(x, self.p, training=True)
        n = x.numel()
        words = torch.randint(-2**31, 2**31, ((n + 3) // 4,), dtype=torch.int32)
        keep = words.view(torch.uint8)[:n].view_as(x) >= self.dropped_of_256
        return x * keep * (256 / (256 - self.dropped_of_256))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MLP(nn.Sequential):
    """Dense layers with ReLU between them; no hidden layer makes it logistic regression."""

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int, *,
                 dropout: float = 0.0, standardize: tuple[float, float] | None = None) -> None:
        layers: list[nn.Module] = [] if standardize is None else [Standardize(*standardize)]
        width = in_features
        for units in hidden:
            layers += [nn.Linear(width, units), nn.ReLU()]
            if dropout > 0:
                layers.append(Dropout(dropout))
            width = units
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)
