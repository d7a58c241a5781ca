"""hpo/search/algorithms.py: every sampler and pruner name the CLI offers builds what it says,
with the definition's settings, and an unknown name is refused in one sentence."""

from __future__ import annotations

from dataclasses import replace

import optuna
import pytest
from optuna.distributions import FloatDistribution

from hpo.definition import PRUNER_NAMES, SAMPLER_NAMES, StudyDefinition
from hpo.errors import HpoError
from hpo.search.algorithms import PRUNERS, SAMPLERS, make_pruner, make_sampler
from hpo.search.pruning import GuardedPruner

DEFINITION = StudyDefinition(
    name="toy", summary="test", dataset="mnist", objective=lambda trial, run: 0.0,
    search_space={"x": FloatDistribution(0.0, 1.0)}, build_model=lambda params: None,
    grid={"x": [0.0, 0.5, 1.0]}, floor=0.3, baseline_margin=0.02, min_epochs_before_ranking=2,
    metric_name="val_accuracy", pruner="asha", leaders=None)


def test_every_name_a_definition_may_give_has_a_factory_and_no_other() -> None:
    assert list(SAMPLERS) == list(SAMPLER_NAMES) == ["tpe", "multivariate-tpe", "random", "grid"]
    assert list(PRUNERS) == list(PRUNER_NAMES) == ["leaders", "asha", "hyperband", "median", "none"]


@pytest.mark.parametrize(("name", "kind"), [
    ("tpe", optuna.samplers.TPESampler),
    ("multivariate-tpe", optuna.samplers.TPESampler),
    ("random", optuna.samplers.RandomSampler),
    ("grid", optuna.samplers.GridSampler),
])
def test_every_sampler_name_builds_its_sampler(name: str, kind: type) -> None:
    assert isinstance(make_sampler(name, DEFINITION, seed=1), kind)


def test_the_default_tpe_models_each_parameter_alone_and_the_other_jointly() -> None:
    # Optuna keeps these settings private: read them where they are stored.
    assert make_sampler("tpe", DEFINITION, seed=1)._multivariate is False
    assert make_sampler("multivariate-tpe", DEFINITION, seed=1)._multivariate is True


def test_the_seed_makes_sampling_repeatable() -> None:
    def first_points(name: str, seed: int) -> list[float]:
        study = optuna.create_study(sampler=make_sampler(name, DEFINITION, seed=seed))
        study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=3)
        return [t.params["x"] for t in study.trials]

    for name in SAMPLERS:
        assert first_points(name, 5) == first_points(name, 5)
    assert first_points("random", 5) != first_points("random", 6)


def test_the_grid_sampler_walks_the_definition_s_grid() -> None:
    study = optuna.create_study(sampler=make_sampler("grid", DEFINITION, seed=0))
    study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=5)
    assert sorted(t.params["x"] for t in study.trials) == [0.0, 0.5, 1.0]  # then it stops


def test_grid_without_a_grid_is_refused() -> None:
    with pytest.raises(HpoError, match=r"^Study toy has no grid: use --sampler tpe or random\.$"):
        make_sampler("grid", replace(DEFINITION, grid=None), seed=0)


def test_leaders_is_hpo_s_rules_with_nothing_behind_them() -> None:
    pruner = make_pruner("leaders", replace(DEFINITION, leaders=0.5, leaders_from=0.25),
                         epochs=12)
    assert isinstance(pruner, GuardedPruner) and pruner.inner is None
    assert (pruner.leaders, pruner.leaders_from, pruner.floor) == (0.5, 3, 0.3)


@pytest.mark.parametrize(("name", "kind"), [
    ("hyperband", optuna.pruners.HyperbandPruner),
    ("asha", optuna.pruners.SuccessiveHalvingPruner),
    ("median", optuna.pruners.MedianPruner),
])
def test_every_ranking_pruner_sits_behind_the_definition_s_guards(name: str, kind: type
                                                                  ) -> None:
    pruner = make_pruner(name, DEFINITION, epochs=9)
    assert isinstance(pruner, GuardedPruner) and isinstance(pruner.inner, kind)
    assert (pruner.floor, pruner.baseline_margin, pruner.metric) == (0.3, 0.02, "val_accuracy")


def ranked_out_at(pruner_name: str, epochs: int, slow_curve: list[float]) -> int | None:
    """The epoch at which a trial well behind three finished peers is ranked out, if any."""
    study = optuna.create_study(direction="maximize",
                                pruner=make_pruner(pruner_name, DEFINITION, epochs=epochs))
    for value in (0.97, 0.975, 0.98):
        leader = study.ask()
        for epoch in range(1, epochs + 1):
            leader.report(value, epoch)
            assert not leader.should_prune()  # ranking records each rung as it is asked
        study.tell(leader, value)
    slow = study.ask()
    for epoch, value in enumerate(slow_curve, start=1):
        slow.report(value, epoch)
        if slow.should_prune():
            return epoch
    return None


def test_ranking_starts_at_the_definition_s_epoch_but_never_after_the_last() -> None:
    # The definition ranks from epoch 2: a slow first epoch alone is not enough.
    assert ranked_out_at("asha", 3, [0.90, 0.91, 0.92]) == 2
    # A one-epoch launch ranks at its only epoch, or its pruner would never prune.
    assert ranked_out_at("asha", 1, [0.90]) == 1


def test_none_prunes_nothing_not_even_below_the_floor() -> None:
    pruner = make_pruner("none", DEFINITION, epochs=9)
    assert isinstance(pruner, optuna.pruners.NopPruner)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    trial = study.ask()
    trial.report(0.0, 1)
    assert not trial.should_prune()


@pytest.mark.parametrize(("make", "name", "message"), [
    (make_sampler, "bayes", "Unknown sampler 'bayes': use tpe, multivariate-tpe, random, grid."),
    (make_pruner, "patient",
     "Unknown pruner 'patient': use leaders, asha, hyperband, median, none."),
])
def test_unknown_names_are_refused_in_one_sentence(make, name: str, message: str) -> None:
    kwargs = {"seed": 0} if make is make_sampler else {"epochs": 3}
    with pytest.raises(HpoError) as error:
        make(name, DEFINITION, **kwargs)
    assert str(error.value) == message


def test_a_definition_naming_an_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match=r"Unknown sampler 'bayes' in study 'toy': use one of "
                                         r"tpe, multivariate-tpe, random, grid\."):
        replace(DEFINITION, sampler="bayes")
    with pytest.raises(ValueError, match="Unknown pruner 'patient' in study 'toy'"):
        replace(DEFINITION, pruner="patient")
