"""The training loop: it learns, it reports every epoch, and a NaN loss fails loudly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hpo.data import builtin, load_splits
from hpo.train.loop import TrainingDiverged, compute_loss, cosine_factor, fit
from hpo.train.models import MLP
from studies.mnist_mlp import BASELINE, build_model


def test_objective_learns_synthetic_data_far_above_chance() -> None:
    splits = load_splits(builtin("mnist").synthetic, Path("unused"), device="cpu")
    torch.manual_seed(0)
    seen: list[tuple[int, float]] = []
    result = fit(build_model(BASELINE), splits, epochs=2, lr=1e-3, batch_size=100,
                 on_epoch=lambda epoch, value, seconds: seen.append((epoch, value)))
    assert [epoch for epoch, _ in seen] == [1, 2]
    assert result.val_accuracy > 0.8  # chance is 0.1


def test_mse_on_probabilities_also_trains(mnist_dir: Path) -> None:
    splits = load_splits(builtin("mnist"), mnist_dir, device="cpu")
    torch.manual_seed(0)
    result = fit(MLP(784, [], 10), splits, epochs=3, lr=0.05, batch_size=50, loss="mse")
    assert result.val_accuracy > 0.5


def test_mse_loss_is_on_probabilities() -> None:
    logits = torch.tensor([[10.0, -10.0], [-10.0, 10.0]])
    labels = torch.tensor([0, 1])
    assert compute_loss("mse", logits, labels).item() < 1e-6
    assert compute_loss("mse", logits, 1 - labels).item() == pytest.approx(1.0, abs=1e-6)


def test_nan_loss_raises(mnist_dir: Path) -> None:
    splits = load_splits(builtin("mnist"), mnist_dir, device="cpu")
    model = MLP(784, [16], 10)
    with torch.no_grad():
        model[0].weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="became nan in epoch 1"):
        fit(model, splits, epochs=2, lr=1e-3, batch_size=100)


def test_unknown_loss_is_refused(mnist_dir: Path) -> None:
    splits = load_splits(builtin("mnist"), mnist_dir, device="cpu")
    with pytest.raises(ValueError, match="Unknown loss"):
        fit(MLP(784, [], 10), splits, epochs=1, lr=1e-3, batch_size=100, loss="hinge")


def test_cosine_factor_runs_from_one_to_zero() -> None:
    assert cosine_factor(0, 100) == 1.0
    assert cosine_factor(50, 100) == pytest.approx(0.5)
    assert cosine_factor(100, 100) == pytest.approx(0.0)
    assert cosine_factor(150, 100) == pytest.approx(0.0)  # past the end it stays at zero


def test_cosine_schedule_decays_the_rate_the_optimizer_uses(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:

    splits = load_splits(builtin("mnist").synthetic, Path("unused"), device="cpu")
    rates: list[float] = []
    real_step = torch.optim.AdamW.step

    def recording_step(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    small = type(splits)(splits.train_x[:1000], splits.train_y[:1000], splits.val_x[:200],
                         splits.val_y[:200], 10)
    fit(MLP(784, [16], 10), small, epochs=2, lr=0.01, batch_size=100,
                 schedule="cosine")
    assert len(rates) == 20
    assert rates[0] == pytest.approx(0.01)
    assert rates[10] == pytest.approx(0.005)  # half-way through the 2 epochs
    assert rates == sorted(rates, reverse=True) and rates[-1] < 0.0002
    rates.clear()
    fit(MLP(784, [16], 10), small, epochs=1, lr=0.01, batch_size=100)
    assert set(rates) == {0.01}  # constant unless asked


def test_unknown_schedule_is_refused(mnist_dir: Path) -> None:
    splits = load_splits(builtin("mnist"), mnist_dir, device="cpu")
    with pytest.raises(ValueError, match="Unknown schedule 'step'"):
        fit(MLP(784, [], 10), splits, epochs=1, lr=1e-3, batch_size=100, schedule="step")


def test_label_smoothing_raises_the_loss_of_a_confident_right_answer() -> None:
    logits = torch.tensor([[10.0, 0.0, 0.0]])
    labels = torch.tensor([0])
    plain = compute_loss("cross_entropy", logits, labels)
    smoothed = compute_loss("cross_entropy", logits, labels, label_smoothing=0.1)
    assert smoothed > plain + 0.1


