"""hpo/train/backbones.py: every backbone trains a step at its smallest input size, and head-only
fine-tuning freezes exactly the backbone."""

from __future__ import annotations

import pytest
import torch

from hpo.train import backbones


@pytest.mark.parametrize("name", list(backbones.BACKBONES))
def test_every_backbone_trains_a_step_at_its_smallest_size(name: str) -> None:
    size = backbones.BACKBONES[name].input_sizes[0]
    model = backbones.build(name, weights="none")
    x = torch.randn(2, 3, size, size)
    logits = model(x)
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert backbones.head_of(model).weight.grad is not None


def test_input_sizes_respect_each_backbone() -> None:
    assert backbones.BACKBONES["lenet5"].input_sizes == [32]
    assert backbones.BACKBONES["alexnet"].input_sizes[0] == 64  # AlexNet needs at least 63 px
    assert backbones.BACKBONES["resnet18"].input_sizes == list(range(32, 225, 32))


@pytest.mark.parametrize("name", ["lenet5", "alexnet", "resnet18"])
def test_head_freezes_exactly_the_backbone(name: str) -> None:
    model = backbones.build(name, weights="none")
    backbones.freeze_all_but_head(model)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    head = {id(p) for p in backbones.head_of(model).parameters()}
    assert trainable == head and len(head) == 2

