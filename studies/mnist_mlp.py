"""mnist-mlp: a dense network on MNIST, searching learning rate, width and depth.

The seed report's network (hidden 256/256/128/128, Adam lr 1e-3, batch 100, 97.05% test
accuracy) is the point in this space with width=256, depth=4, shape="funnel"; it is enqueued as
the baseline trial of every study. The preset ``mnist-mlp-seed`` replays the seed's own grid
search over the learning rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpo.definition import StudyDefinition, suggest

SEARCH_SPACE = {
    "lr": FloatDistribution(1e-5, 1e-1, log=True),
    "width": IntDistribution(32, 1024, log=True),
    "depth": IntDistribution(1, 6),
    # "funnel" halves the width for the second half of the layers, as the seed's 256/256/128/128.
    "shape": CategoricalDistribution(["constant", "funnel"]),
    "batch_size": CategoricalDistribution([64, 100, 128, 256, 512]),
    "dropout": FloatDistribution(0.0, 0.5),
}

SEED_NETWORK = {"width": 256, "depth": 4, "shape": "funnel", "batch_size": 100, "dropout": 0.0}
BASELINE = {"lr": 1e-3, **SEED_NETWORK}


def hidden_widths(width: int, depth: int, shape: str) -> list[int]:
    if shape == "funnel":
        return [width if layer < (depth + 1) // 2 else max(width // 2, 1) for layer in range(depth)]
    return [width] * depth


def build_model(params: Mapping[str, Any]):
    from hpo.models import MLP

    widths = hidden_widths(params["width"], params["depth"], params["shape"])
    return MLP(28 * 28, widths, 10, dropout=params.get("dropout", 0.0))


def objective(trial: optuna.Trial, run) -> float:
    params = suggest(trial, SEARCH_SPACE)
    return run.fit(build_model(params), lr=params["lr"], batch_size=params["batch_size"])


STUDY = StudyDefinition(
    name="mnist-mlp",
    summary="dense network on MNIST: lr, width, depth, shape, batch size, dropout",
    dataset="mnist",
    objective=objective,
    search_space=SEARCH_SPACE,
    build_model=build_model,
    epochs=10,
    trials=50,
    sampler="tpe",
    pruner="hyperband",
    grid={
        "lr": [1e-4, 1e-3, 1e-2],
        "width": [128, 256, 512],
        "depth": [2, 4],
        "shape": ["constant", "funnel"],
        "batch_size": [100],
        "dropout": [0.0],
    },
    baseline=BASELINE,
)


# --- Preset: the seed report's grid search (Question 3) --------------------------------------

SEED_LEARNING_RATES = [0.001, 0.01, 0.1]
SEED_SEARCH_SPACE = {"lr": CategoricalDistribution(SEED_LEARNING_RATES)}


def seed_objective(trial: optuna.Trial, run) -> float:
    lr = trial.suggest_categorical("lr", SEED_LEARNING_RATES)
    return run.fit(build_model(SEED_NETWORK), lr=lr, batch_size=SEED_NETWORK["batch_size"])


SEED_PRESET = StudyDefinition(
    name="mnist-mlp-seed",
    summary="the seed report's grid: lr in {0.001, 0.01, 0.1} on its 256/256/128/128 network",
    dataset="mnist",
    objective=seed_objective,
    search_space=SEED_SEARCH_SPACE,
    build_model=lambda params: build_model(SEED_NETWORK),
    epochs=5,
    trials=3,
    sampler="grid",
    pruner="none",
    grid={"lr": SEED_LEARNING_RATES},
)
