"""hpo/train/models.py: the dense networks the MNIST studies train, and the standardization
they carry inside them, so that a checkpoint holds everything needed to use it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hpo.train.models import MLP, Dropout, Standardize


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
    assert [type(layer) for layer in dropped] == [nn.Linear, nn.ReLU, Dropout, nn.Linear]
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


def test_dropout_drops_its_rate_and_keeps_the_expected_value() -> None:
    """The rate is rounded to a multiple of 1/256: 0.1 drops 26/256 of the units."""
    torch.manual_seed(0)
    layer = Dropout(0.1)
    x = torch.ones(400, 1000)
    y = layer(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 26 / 256) < 0.003
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 256 / 230))
    assert abs(y.mean().item() - 1.0) < 0.005
    # Each unit has its own draw: no column or row is all kept or all dropped together.
    assert 0 < (y[:, 0] == 0).sum() < 400 and 0 < (y[0] == 0).sum() < 1000


def test_dropout_gradients_flow_through_the_kept_units_only() -> None:
    torch.manual_seed(1)
    x = torch.randn(64, 300, requires_grad=True)
    y = Dropout(0.5)(x)
    y.sum().backward()
    kept = y != 0
    assert torch.equal(x.grad != 0, kept)
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 2.0))


def test_dropout_is_the_identity_in_eval_mode_and_reproducible_under_a_seed() -> None:
    layer = Dropout(0.3)
    x = torch.randn(32, 50)
    assert torch.equal(layer.eval()(x), x)
    layer.train()
    torch.manual_seed(7)
    first = layer(x)
    torch.manual_seed(7)
    assert torch.equal(layer(x), first)
    assert not torch.equal(layer(x), first)  # a fresh mask each call
    assert torch.equal(Dropout(0.001)(x), x)  # rounds to no dropout at all
    nearly_all = Dropout(0.999)(torch.ones(100_000))  # rounds to 255 of 256, not 256
    assert 0 < (nearly_all != 0).sum() < 1000 and nearly_all.max() == 256.0


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_dropout_rates_outside_zero_to_one_are_refused(rate: float) -> None:
    with pytest.raises(ValueError, match=f"A dropout rate must be in \\[0, 1\\), not {rate}"):
        Dropout(rate)
