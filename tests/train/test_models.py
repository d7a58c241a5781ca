"""hpo/train/models.py: the dense networks the MNIST studies train, and the standardization
they carry inside them, so that a checkpoint holds everything needed to use it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hpo.train.models import MLP, Standardize


def test_no_hidden_layer_is_logistic_regression() -> None:
    model = MLP(784, [], 10)
    assert [type(layer) for layer in model] == [nn.Linear]
    assert (model[0].in_features, model[0].out_features) == (784, 10)


def test_hidden_layers_with_relu_and_dropout_only_when_asked() -> None:
    model = MLP(784, [256, 128], 10)
    assert [type(layer) for layer in model] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU,
                                                nn.Linear]
    assert [layer.out_features for layer in model if isinstance(layer, nn.Linear)] == [
        256, 128, 10]
    dropped = MLP(784, [64], 10, dropout=0.3)
    assert [type(layer) for layer in dropped] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert dropped[2].p == 0.3


def test_standardization_is_part_of_the_model_and_its_checkpoint() -> None:
    model = MLP(4, [3], 2, standardize=(0.5, 2.0))
    assert isinstance(model[0], Standardize)
    assert torch.equal(model[0](torch.tensor([[0.5, 2.5, -1.5, 4.5]])),
                       torch.tensor([[0.0, 1.0, -1.0, 2.0]]))
    state = model.state_dict()
    assert state["0.mean"].item() == 0.5 and state["0.std"].item() == 2.0
    assert not any(p is model[0].mean for p in model.parameters())  # a buffer, never trained
    rebuilt = MLP(4, [3], 2, standardize=(0.0, 1.0))
    rebuilt.load_state_dict(state)
    x = torch.randn(5, 4)
    assert torch.equal(rebuilt(x), model(x))  # the checkpoint restores the shift and scale


@pytest.mark.parametrize("hidden", [[], [8], [8, 8, 4]])
def test_logits_have_one_column_per_class(hidden: list[int]) -> None:
    assert MLP(784, hidden, 10)(torch.randn(3, 784)).shape == (3, 10)
