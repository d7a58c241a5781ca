"""The training loop: it learns, it reports every epoch, and a NaN loss fails loudly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hpo.data import load_splits
from hpo.models import MLP
from hpo.training import TrainingDiverged, compute_loss, fit
from studies.mnist_mlp import BASELINE, build_model, hidden_widths


def test_seed_network_is_expressible() -> None:
    assert hidden_widths(256, 4, "funnel") == [256, 256, 128, 128]
    model = build_model(BASELINE)
    widths = [layer.out_features for layer in model if isinstance(layer, torch.nn.Linear)]
    assert widths == [256, 256, 128, 128, 10]


def test_objective_learns_synthetic_data_far_above_chance() -> None:
    splits = load_splits("mnist", Path("unused"), synthetic=True, device="cpu")
    torch.manual_seed(0)
    seen: list[tuple[int, float]] = []
    result = fit(build_model(BASELINE), splits, epochs=2, lr=1e-3, batch_size=100,
                 on_epoch=lambda epoch, value, seconds: seen.append((epoch, value)))
    assert [epoch for epoch, _ in seen] == [1, 2]
    assert result.val_accuracy > 0.8  # chance is 0.1


def test_mse_on_probabilities_also_trains(mnist_dir: Path) -> None:
    splits = load_splits("mnist", mnist_dir, synthetic=False, device="cpu")
    torch.manual_seed(0)
    result = fit(MLP(784, [], 10), splits, epochs=3, lr=0.05, batch_size=50, loss="mse")
    assert result.val_accuracy > 0.5


def test_mse_loss_is_on_probabilities() -> None:
    logits = torch.tensor([[10.0, -10.0], [-10.0, 10.0]])
    labels = torch.tensor([0, 1])
    assert compute_loss("mse", logits, labels).item() < 1e-6
    assert compute_loss("mse", logits, 1 - labels).item() == pytest.approx(1.0, abs=1e-6)


def test_nan_loss_raises(mnist_dir: Path) -> None:
    splits = load_splits("mnist", mnist_dir, synthetic=False, device="cpu")
    model = MLP(784, [16], 10)
    with torch.no_grad():
        model[0].weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="became nan in epoch 1"):
        fit(model, splits, epochs=2, lr=1e-3, batch_size=100)


def test_unknown_loss_is_refused(mnist_dir: Path) -> None:
    splits = load_splits("mnist", mnist_dir, synthetic=False, device="cpu")
    with pytest.raises(ValueError, match="Unknown loss"):
        fit(MLP(784, [], 10), splits, epochs=1, lr=1e-3, batch_size=100, loss="hinge")
