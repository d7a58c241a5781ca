"""Networks the studies train. The torchvision backbones for SVHN live in hpo/backbones.py."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


class MLP(nn.Sequential):
    """Dense layers with ReLU between them; no hidden layer makes it logistic regression."""

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int, *,
                 dropout: float = 0.0) -> None:
        layers: list[nn.Module] = []
        width = in_features
        for units in hidden:
            layers += [nn.Linear(width, units), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = units
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)
