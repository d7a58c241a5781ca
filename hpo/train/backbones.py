"""SVHN classifiers: LeNet-5 (written here) and torchvision's AlexNet, VGG-16 and ResNets.

Each network is split into a feature extractor and a 10-class linear head, so that head-only
fine-tuning can train the head on cached features (see hpo/features.py). torchvision models
come through its ``weights=`` API; their ImageNet weights live in ``$TORCH_HOME/hub/checkpoints``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hpo.errors import HpoError, first_line
from hpo.settings import offline

SEED_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # the seed's Normalize, for scratch training
IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
INPUT_SIZE_STEP = 32
MAX_INPUT_SIZE = 224


@dataclass(frozen=True)
class Backbone:
    name: str
    min_input_size: int
    weights: str | None  # torchvision weights enum member, e.g. "ResNet18_Weights.IMAGENET1K_V1"

    @property
    def input_sizes(self) -> list[int]:
        if self.name == "lenet5":
            return [32]
        return list(range(self.min_input_size, MAX_INPUT_SIZE + 1, INPUT_SIZE_STEP))


BACKBONES = {
    b.name: b
    for b in (
        Backbone("lenet5", 32, None),
        # AlexNet's stride-4 stem and three max-pools need at least 63 px.
        Backbone("alexnet", 64, "AlexNet_Weights.IMAGENET1K_V1"),
        Backbone("vgg16", 32, "VGG16_Weights.IMAGENET1K_V1"),
        Backbone("resnet18", 32, "ResNet18_Weights.IMAGENET1K_V1"),
        Backbone("resnet50", 32, "ResNet50_Weights.IMAGENET1K_V1"),
        Backbone("resnet101", 32, "ResNet101_Weights.IMAGENET1K_V1"),
    )
}


class LeNet5(nn.Module):
    """LeCun et al.'s LeNet-5 for 32x32 RGB input: two conv/pool stages, then 120-84-10."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
        )
        self.head = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _weights_enum(backbone: Backbone):
    from torchvision.models import get_weight

    return get_weight(backbone.weights)


def weights_path(backbone: Backbone) -> Path:
    """Where torchvision looks for (and downloads) this backbone's ImageNet weights."""
    url = _weights_enum(backbone).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def ensure_weights(names: Sequence[str]) -> None:
    """Make sure the ImageNet weights of ``names`` are on disk, downloading them if allowed."""
    for name in names:
        backbone = BACKBONES[name]
        if backbone.weights is None:
            continue
        path = weights_path(backbone)
        if path.exists():
            continue
        where = (f"put {path.name} in {path.parent} (or set TORCH_HOME to a folder whose "
                 "hub/checkpoints has it), or run with --weights none to train from scratch")
        if offline():
            raise HpoError(f"The ImageNet weights of {name} ({path.name}) are not in "
                           f"{path.parent} and downloads are off (HPO_OFFLINE): {where}.")
        url = _weights_enum(backbone).url
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(path), hash_prefix=None, progress=False)
        except Exception as error:
            path.unlink(missing_ok=True)
            reason = first_line(error, limit=160)
            raise HpoError(f"The ImageNet weights of {name} ({path.name}) are not in "
                           f"{path.parent} and cannot be downloaded ({reason}): {where}.") from None


def build(name: str, *, weights: str, num_classes: int = 10) -> nn.Module:
    """The network with a fresh ``num_classes`` head. ``weights`` is "imagenet" or "none"."""
    backbone = BACKBONES[name]
    if name == "lenet5":
        return LeNet5(num_classes)
    from torchvision import models

    pretrained = _weights_enum(backbone) if weights == "imagenet" else None
    model = models.get_model(name, weights=pretrained)
    if name.startswith("resnet"):
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    else:  # alexnet, vgg16: the last layer of the classifier
        model.classifier[6] = nn.Linear(model.classifier[6].in_features, num_classes)
    return model


def head_of(model: nn.Module) -> nn.Linear:
    head: object
    if isinstance(model, LeNet5):
        head = model.head
    elif hasattr(model, "fc"):
        head = model.fc
    else:
        head = model.get_submodule("classifier.6")
    if not isinstance(head, nn.Linear):
        raise TypeError(f"The head of {type(model).__name__} is a {type(head).__name__}, "
                        "not a Linear layer.")
    return head


def set_head(model: nn.Module, head: nn.Module) -> None:
    if isinstance(model, LeNet5):
        model.add_module("head", head)
    elif hasattr(model, "fc"):
        model.fc = head
    else:
        model.get_submodule("classifier").add_module("6", head)


def feature_extractor(model: nn.Module) -> nn.Module:
    """The model with its head replaced by the identity: outputs what the head would see."""
    set_head(model, nn.Identity())
    return model


def freeze_all_but_head(model: nn.Module) -> None:
    """Head-only fine-tuning, as in the seed: only the final linear layer learns."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in head_of(model).parameters():
        parameter.requires_grad_(True)


def mean_std(weights: str) -> tuple[Sequence[float], Sequence[float]]:
    return IMAGENET_MEAN_STD if weights == "imagenet" else SEED_MEAN_STD
