"""logreg-loss: the seed report's Question 1, run as a study.

Multinomial logistic regression on MNIST (no hidden layer), trained with either cross-entropy
or mean squared error on the softmax probabilities. Cross-entropy is convex in the weights and
MSE is not, so across learning rates and init seeds the dashboard shows cross-entropy
converging faster and MSE's final accuracy spreading more with the initialisation. The
report's Question 2, and why a deep linear network is convex under neither loss:
docs/decisions/2026-11-26-deep-linear-networks-are-not-convex.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpo import StudyDefinition, suggest

if TYPE_CHECKING:
    from hpo import TrialRun

SEARCH_SPACE = {
    "loss": CategoricalDistribution(["cross_entropy", "mse"]),
    "lr": FloatDistribution(1e-4, 1.0, log=True),
    "init_seed": IntDistribution(0, 9),
}


def build_model(params: Mapping[str, Any]):
    from hpo.train.models import MLP

    return MLP(28 * 28, [], 10)


def objective(trial: optuna.Trial, run: TrialRun) -> float:
    params = suggest(trial, SEARCH_SPACE)
    run.seed_init(params["init_seed"])  # the init seed is a searched parameter here
    return run.fit(build_model(params), lr=params["lr"], batch_size=100, loss=params["loss"])


STUDY = StudyDefinition(
    name="logreg-loss",
    summary="seed Question 1: logistic regression, cross-entropy vs MSE, over lr and init seed",
    dataset="mnist",
    objective=objective,
    search_space=SEARCH_SPACE,
    build_model=build_model,
    epochs=5,
    trials=40,
    sampler="tpe",
    # No pruning: the point is to compare whole learning curves of both losses.
    pruner="none",
    grid={"loss": ["cross_entropy", "mse"], "lr": [0.001, 0.01, 0.1], "init_seed": [0, 1, 2]},
)
