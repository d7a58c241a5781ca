"""Samplers and pruners by the names the CLI accepts."""

from __future__ import annotations

import warnings

import optuna

from hpo.definition import StudyDefinition
from hpo.errors import HpoError
from hpo.pruning import GuardedPruner


def make_sampler(name: str, definition: StudyDefinition, *, seed: int | None
                 ) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # multivariate+group model the conditional spaces; constant_liar keeps parallel
            # workers from all sampling next to the same promising point.
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                              constant_liar=True, n_startup_trials=10)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        if definition.grid is None:
            raise HpoError(f"Study {definition.name} has no grid: use --sampler tpe or random.")
        return optuna.samplers.GridSampler(dict(definition.grid), seed=seed)
    raise HpoError(f"Unknown sampler {name!r}: use tpe, random or grid.")


def make_pruner(name: str, definition: StudyDefinition, *, epochs: int
                ) -> optuna.pruners.BasePruner:
    """The named peer-ranking pruner behind the definition's floor and baseline guards
    (hpo.pruning); "none" never prunes, guards included."""
    if name == "none":
        return optuna.pruners.NopPruner()
    inner: optuna.pruners.BasePruner
    min_epochs = min(definition.min_epochs_before_ranking, epochs)
    if name == "hyperband":
        inner = optuna.pruners.HyperbandPruner(min_resource=min_epochs, max_resource=epochs,
                                               reduction_factor=3)
    elif name == "asha":
        inner = optuna.pruners.SuccessiveHalvingPruner(min_resource=min_epochs,
                                                       reduction_factor=3)
    elif name == "median":
        inner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    else:
        raise HpoError(f"Unknown pruner {name!r}: use hyperband, asha, median or none.")
    return GuardedPruner(inner, floor=definition.floor,
                         baseline_margin=definition.baseline_margin,
                         metric=definition.metric_name)
