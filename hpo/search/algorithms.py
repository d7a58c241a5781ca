"""Samplers and pruners, built from the names a definition and the command line use
(hpo.definition.SamplerName and PrunerName)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from hpo.errors import HpoError

if TYPE_CHECKING:
    import optuna

    from hpo.definition import PrunerName, SamplerName, StudyDefinition

# optuna is imported inside the factories, so importing this module costs nothing.


def _tpe(definition: StudyDefinition, seed: int | None) -> optuna.samplers.BaseSampler:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # One density per parameter (multivariate=False): on LCBench's design tasks it beat
        # the joint model, whose many dimensions the few finished trials of a pruned study
        # cannot fill (docs/decisions/2026-12-02-search-defaults.md). constant_liar keeps
        # parallel workers from all sampling next to the same promising point.
        return optuna.samplers.TPESampler(seed=seed, multivariate=False, constant_liar=True,
                                          n_startup_trials=10)


def _multivariate_tpe(definition: StudyDefinition, seed: int | None
                      ) -> optuna.samplers.BaseSampler:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # One joint density over the parameters (group: per conditional subspace): it needs
        # more finished trials than the default, and pays off on a study that lets enough
        # of them finish, such as mnist-mlp.
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                          constant_liar=True, n_startup_trials=10)


def _random(definition: StudyDefinition, seed: int | None) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _grid(definition: StudyDefinition, seed: int | None) -> optuna.samplers.BaseSampler:
    import optuna

    assert definition.grid is not None  # check_sampler refused it
    return optuna.samplers.GridSampler(dict(definition.grid), seed=seed)


SAMPLERS: dict[SamplerName, Callable[[StudyDefinition, int | None],
                                    optuna.samplers.BaseSampler]] = {
    "tpe": _tpe, "multivariate-tpe": _multivariate_tpe, "random": _random, "grid": _grid,
}


def _leaders(min_epochs: int, epochs: int) -> None:
    return None  # hpo's own rules only, nothing behind them


def _hyperband(min_epochs: int, epochs: int) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.HyperbandPruner(min_resource=min_epochs, max_resource=epochs,
                                          reduction_factor=3)


def _asha(min_epochs: int, epochs: int) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_epochs, reduction_factor=3)


def _median(min_epochs: int, epochs: int) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)


# The pruners behind hpo's rules (hpo.search.pruning), from (epochs before the first
# ranking, epochs per trial): "leaders" is the rules alone, "none" never prunes, rules
# included.
PRUNERS: dict[PrunerName, Callable[[int, int], optuna.pruners.BasePruner | None] | None] = {
    "leaders": _leaders, "asha": _asha, "hyperband": _hyperband, "median": _median, "none": None,
}


def check_sampler(name: str, definition: StudyDefinition) -> None:
    """HpoError unless ``definition`` can be searched with the sampler called ``name``."""
    if name not in SAMPLERS:
        raise HpoError(f"Unknown sampler {name!r}: use {', '.join(SAMPLERS)}.")
    if name == "grid" and definition.grid is None:
        raise HpoError(f"Study {definition.name} has no grid: use --sampler tpe or random.")


def make_sampler(name: SamplerName, definition: StudyDefinition, *, seed: int | None
                 ) -> optuna.samplers.BaseSampler:
    check_sampler(name, definition)
    return SAMPLERS[name](definition, seed)


def make_pruner(name: PrunerName, definition: StudyDefinition, *, epochs: int
                ) -> optuna.pruners.BasePruner:
    """hpo's rules (floor, baseline, leaders: hpo.search.pruning) with the named Optuna pruner
    behind them; "leaders" is the rules alone, "none" never prunes, rules included."""
    if name not in PRUNERS:
        raise HpoError(f"Unknown pruner {name!r}: use {', '.join(PRUNERS)}.")
    import optuna

    from hpo.search.pruning import GuardedPruner

    factory = PRUNERS[name]
    if factory is None:
        return optuna.pruners.NopPruner()
    inner = factory(min(definition.min_epochs_before_ranking, epochs), epochs)
    return GuardedPruner(inner, epochs=epochs, floor=definition.floor,
                         baseline_margin=definition.baseline_margin,
                         leaders=definition.leaders, leaders_from=definition.leaders_from,
                         metric=definition.metric_name)
