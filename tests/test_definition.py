"""hpo/definition.py: a StudyDefinition refuses a mistake when it is made, naming the study and
the bad value; grid sizes, directions and suggest() do what a study file expects."""

from __future__ import annotations

from dataclasses import replace

import optuna
import pytest
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from hpo.definition import Dataset, StudyDefinition, is_better, suggest

SPACE = {"lr": FloatDistribution(1e-4, 1e-1, log=True), "depth": IntDistribution(1, 4),
         "act": CategoricalDistribution(["relu", "gelu"])}
STUDY = StudyDefinition(name="toy", summary="test", dataset="mnist",
                        objective=lambda trial, run: 0.0, search_space=SPACE,
                        build_model=lambda params: None)


@pytest.mark.parametrize(("change", "message"), [
    ({"name": ""}, "A study definition needs a non-empty name, not ''."),
    ({"objective": 3}, "The objective of study 'toy' is not callable."),
    ({"dataset": 5}, "The dataset of study 'toy' must be a hpo.Dataset or the name of a built-in "
                     "one, not int."),
    ({"direction": "up"}, "The direction of study 'toy' must be maximize or minimize, not 'up'."),
    ({"epochs": 0}, "The epochs and trials of study 'toy' must be at least 1."),
    ({"trials": 0}, "The epochs and trials of study 'toy' must be at least 1."),
    ({"grid": {"lr": [0.1]}}, "The grid of study 'toy' lacks ['act', 'depth']."),
    ({"min_epochs_before_ranking": 0}, "min_epochs_before_ranking of study 'toy' must be at "
                                       "least 1, not 0."),
    ({"baseline": {"lr": 0.1, "width": 3}}, "The baseline of study 'toy' has unknown ['width']."),
])
def test_mistakes_are_refused_when_the_definition_is_made(change: dict, message: str) -> None:
    with pytest.raises(ValueError) as error:
        replace(STUDY, **change)
    assert str(error.value) == message


def test_grid_size_and_direction() -> None:
    assert STUDY.grid_size is None and STUDY.maximize
    grid = replace(STUDY, grid={"lr": [0.1, 0.01], "depth": [1, 2, 3], "act": ["relu"]},
                   direction="minimize")
    assert grid.grid_size == 6 and not grid.maximize


def test_dataset_name_of_a_builtin_and_of_a_study_s_own() -> None:
    assert STUDY.dataset_name == "mnist"
    own = Dataset(name="digits", load_splits=lambda d, o: None, load_test=lambda d, o: None)
    assert replace(STUDY, dataset=own).dataset_name == "digits"


def test_is_better_follows_the_direction_and_ties_do_not_win() -> None:
    assert is_better(0.9, 0.8, maximize=True) and not is_better(0.8, 0.9, maximize=True)
    assert is_better(0.8, 0.9, maximize=False) and not is_better(0.9, 0.8, maximize=False)
    assert not is_better(0.9, 0.9, maximize=True) and not is_better(0.9, 0.9, maximize=False)


def test_suggest_asks_for_every_parameter_with_its_declared_distribution() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    params = suggest(trial, SPACE)
    assert set(params) == set(SPACE) and params == trial.params
    assert study.trials[0].distributions == SPACE
    with pytest.raises(TypeError, match="Unsupported distribution for 'x'"):
        suggest(trial, {"x": object()})
