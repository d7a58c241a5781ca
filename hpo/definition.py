"""What a study file in ``studies/`` declares: the :class:`StudyDefinition`.

A definition names its dataset, its search space and how a trial trains (the objective), plus
the defaults a plain ``hpo launch NAME`` runs with. The engine does everything else: storage,
workers, pruning, progress, checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

if TYPE_CHECKING:
    import torch

    from hpo.trial_run import TrialRun

# Marks the trial enqueued from StudyDefinition.baseline.
BASELINE_ATTR = "baseline"

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("hyperband", "asha", "median", "none")


@dataclass(frozen=True)
class StudyDefinition:
    name: str
    summary: str
    dataset: str  # a name known to hpo.datasets: "mnist" or "svhn"
    # Maps a trial to keyword arguments and trains; returns the validation metric.
    objective: Callable[[optuna.Trial, TrialRun], float]
    # Every parameter the objective may suggest (the union, for conditional spaces). Used to
    # check that an existing study is compatible before any trial is added to it.
    search_space: Mapping[str, BaseDistribution]
    # Rebuilds the trained network from a trial's params, to evaluate a checkpoint.
    build_model: Callable[[Mapping[str, Any]], torch.nn.Module]
    # Per-batch input transform on the device (resize, normalize) for a trial's params and the
    # study's options, if the data needs one; used to evaluate a checkpoint on the test set.
    input_transform: Callable[[Mapping[str, Any], Mapping[str, Any]],
                              Callable[[torch.Tensor], torch.Tensor]] | None = None
    metric_name: str = "val_accuracy"
    direction: str = "maximize"
    epochs: int = 10
    trials: int = 50
    sampler: str = "tpe"
    pruner: str = "hyperband"
    # Grid for --sampler grid: every searched parameter must have a list of values.
    grid: Mapping[str, Sequence[Any]] | None = None
    # Params enqueued once when the study is created, so it always shows the seed's result.
    # The baseline is never pruned, and its learning curve is a reference for the others.
    baseline: Mapping[str, Any] | None = None
    # Pruning guards that work from the first trial (see hpo.pruning): a trial whose metric is
    # worse than ``floor`` after any epoch, or more than ``baseline_margin`` behind the
    # baseline's value at the same epoch, is pruned before the peer-ranking pruner is asked.
    floor: float | None = None
    baseline_margin: float | None = None
    # Epochs a trial that passes the guards trains before the peer-ranking pruner first ranks
    # it (its min_resource): the first epoch favours fast starters over good finishers.
    min_epochs_before_ranking: int = 1
    # Study-specific launch options this definition accepts, with their defaults.
    options: Mapping[str, Any] = field(default_factory=dict)
    # Extra readiness check run before any trial starts (e.g. pretrained weights present).
    check_ready: Callable[[Mapping[str, Any]], None] | None = None

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"Unknown sampler {self.sampler!r} in study {self.name!r}.")
        if self.pruner not in PRUNERS:
            raise ValueError(f"Unknown pruner {self.pruner!r} in study {self.name!r}.")
        if self.grid is not None:
            missing = set(self.search_space) - set(self.grid)
            if missing:
                raise ValueError(f"Grid of study {self.name!r} lacks {sorted(missing)}.")
        if self.min_epochs_before_ranking < 1:
            raise ValueError(f"min_epochs_before_ranking of study {self.name!r} must be at "
                             f"least 1, not {self.min_epochs_before_ranking}.")
        if self.baseline is not None:
            unknown = set(self.baseline) - set(self.search_space)
            if unknown:
                raise ValueError(f"Baseline of study {self.name!r} has unknown {sorted(unknown)}.")

    @property
    def grid_size(self) -> int | None:
        if self.grid is None:
            return None
        size = 1
        for values in self.grid.values():
            size *= len(values)
        return size


def suggest(trial: optuna.Trial, space: Mapping[str, BaseDistribution]) -> dict[str, Any]:
    """Suggest every parameter of ``space`` with its declared distribution."""
    return {name: suggest_one(trial, name, distribution) for name, distribution in space.items()}


def suggest_one(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(name, distribution.low, distribution.high,
                                   log=distribution.log, step=distribution.step)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high,
                                 log=distribution.log, step=distribution.step)
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    raise TypeError(f"Unsupported distribution for {name!r}: {distribution!r}")
