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


class MLP(nn.Sequential):
    """Dense layers with ReLU between them; no hidden layer makes it logistic regression."""

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int, *,
                 dropout: float = 0.0, standardize: tuple[float, float] | None = None) -> None:
        layers: list[nn.Module] = [] if standardize is None else [Standardize(*standardize)]
        width = in_features
        for units in hidden:
            layers += [nn.Linear(width, units), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = units
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)
