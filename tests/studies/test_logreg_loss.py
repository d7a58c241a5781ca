"""studies/logreg_loss.py, and the seed report's Questions 1 and 2 checked numerically.

The study compares both losses through the worker. Question 1 (the ``logreg-loss`` study):
logistic regression is convex in its weights under cross-entropy and not under squared error on
the probability. The report is right.

Question 2: the report argues that a deep network with linear activations is convex in its
weights under both losses. It is not: the network computes ``x @ W1 @ W2``, a product of the
weights, and flipping the sign of both layers gives the same function, so two weight settings
with the same low loss have the all-zero network at their midpoint, whose loss is higher. The
origin is a saddle point (the Hessian there has a negative eigenvalue).

A function f is convex only if f((a + b) / 2) <= (f(a) + f(b)) / 2 for every pair a, b; one
pair that breaks the inequality disproves convexity.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from optuna.trial import TrialState

from tests.helpers import make_spec, run_inline


def data(n: int = 64, features: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """A separable binary problem: the label is whether x . w_true > 0."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, features, generator=generator, dtype=torch.float64)
    y = (x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)[:features] > 0).double()
    return x, y


def linear_network_loss(loss: str, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    """A deep linear network x -> x @ W1 @ W2 (one hidden layer, no activation), binary loss:
    cross-entropy on sigmoid(output), or squared error on the output itself."""
    x, y = data()
    output = (x @ w1 @ w2).squeeze(1)
    if loss == "cross_entropy":
        return F.binary_cross_entropy_with_logits(output, y)
    return F.mse_loss(output, y)


def trained_linear_network(loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    w1 = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(4, 1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.SGD([w1, w2], lr=0.1)
    for _ in range(300):
        optimizer.zero_grad()
        linear_network_loss(loss, w1, w2).backward()
        optimizer.step()
    return w1.detach(), w2.detach()


def test_question_2_a_deep_linear_network_is_not_convex_under_either_loss() -> None:
    for loss in ("cross_entropy", "mse"):
        w1, w2 = trained_linear_network(loss)
        a = linear_network_loss(loss, w1, w2)
        b = linear_network_loss(loss, -w1, -w2)  # both signs flipped: the same function
        midpoint = linear_network_loss(loss, torch.zeros_like(w1), torch.zeros_like(w2))
        assert torch.isclose(a, b)
        assert midpoint > (a + b) / 2 + 0.1, loss  # the convexity inequality fails


def test_question_2_the_origin_is_a_saddle_point() -> None:
    """With one weight per layer, f(w1, w2) = loss(x * w1 * w2): the Hessian at the origin
    has eigenvalues of both signs, so the loss curves down along w1 = -w2 (for these data)."""
    for loss in ("cross_entropy", "mse"):
        x, y = data(features=1)

        def scalar_loss(weights: torch.Tensor, loss: str = loss, x: torch.Tensor = x,
                        y: torch.Tensor = y) -> torch.Tensor:
            output = x[:, 0] * weights[0] * weights[1]
            if loss == "cross_entropy":
                return F.binary_cross_entropy_with_logits(output, y)
            return F.mse_loss(output, y)

        origin = torch.zeros(2, dtype=torch.float64)
        hessian = torch.autograd.functional.hessian(scalar_loss, origin)
        eigenvalues = torch.linalg.eigvalsh(hessian)
        assert eigenvalues[0] < -1e-3 < 1e-3 < eigenvalues[1], (loss, eigenvalues)


def test_question_1_logistic_regression_cross_entropy_is_convex_and_mse_is_not() -> None:
    x, y = data()

    def logistic(loss: str, w: torch.Tensor) -> torch.Tensor:
        if loss == "cross_entropy":
            # From the logits: BCE on probabilities clips log(0) at -100, which is not convex.
            return F.binary_cross_entropy_with_logits(x @ w, y)
        return F.mse_loss(torch.sigmoid(x @ w), y)

    generator = torch.Generator().manual_seed(1)
    worst_gap = {"cross_entropy": float("inf"), "mse": float("inf")}
    for _ in range(300):
        a = torch.randn(3, generator=generator, dtype=torch.float64) * 6
        b = torch.randn(3, generator=generator, dtype=torch.float64) * 6
        for loss in worst_gap:
            gap = (logistic(loss, a) + logistic(loss, b)) / 2 - logistic(loss, (a + b) / 2)
            worst_gap[loss] = min(worst_gap[loss], gap.item())
    assert worst_gap["cross_entropy"] >= -1e-12  # never above the chord: convex
    assert worst_gap["mse"] < -1e-3  # some midpoint above the chord: not convex


def test_logreg_loss_preset_compares_both_losses(sqlite_url: str, mnist_dir: Path) -> None:
    request = make_spec(sqlite_url, "logreg-loss", trials=4, sampler="grid",
                           data_dir=str(mnist_dir), epochs=2)
    study = run_inline(request)
    trials = study.get_trials()
    assert {t.params["loss"] for t in trials} <= {"cross_entropy", "mse"}
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert all(len(t.intermediate_values) == 2 for t in trials)
