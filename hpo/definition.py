"""What a study file declares: a :class:`StudyDefinition`, and the :class:`Dataset` it trains on.

A definition names its data, its search space and how a trial trains (the objective), plus the
defaults a plain ``hpo launch STUDY`` runs with. hpo does everything else: storage, workers,
pruning, progress, checkpoints, evaluation. See the README's "Your own study" for a complete
example, and ``examples/digits_study.py`` for one that runs.

This module imports neither torch nor optuna (both appear only in type annotations), so the
read-only commands stay fast.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    import optuna
    import torch
    from optuna.distributions import BaseDistribution

    from hpo.train.trial_run import TrialRun

DIRECTIONS = ("maximize", "minimize")
# The samplers and pruners a definition (and --sampler, --pruner) may name; hpo.search.algorithms
# builds each from its name.
SamplerName = Literal["tpe", "multivariate-tpe", "random", "grid"]
PrunerName = Literal["leaders", "asha", "hyperband", "median", "none"]
SAMPLER_NAMES: tuple[SamplerName, ...] = get_args(SamplerName)
PRUNER_NAMES: tuple[PrunerName, ...] = get_args(PrunerName)


@dataclass(frozen=True)
class Splits:
    """Train and validation tensors of a dataset, on one device. The test split is kept apart:
    only ``hpo evaluate`` reads it (see :attr:`Dataset.load_test`)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int


@dataclass(frozen=True)
class Dataset:
    """Where a study's examples come from, as tensors.

    hpo calls ``load_splits`` once per worker process and moves the result to the worker's
    device, where trials draw batches from it by index (see :meth:`TrialRun.splits`). Return
    CPU tensors; inputs may be any dtype the model's first layer accepts (uint8 images are
    fine if the model or a ``transform`` scales them).
    """

    name: str
    # (data_dir, options) -> train and validation splits. data_dir is --data-dir (or
    # HPO_DATA_DIR); options are the study's launch options (StudyDefinition.options).
    load_splits: Callable[[Path, Mapping[str, Any]], Splits]
    # (data_dir, options) -> (inputs, labels) of the held-out test split.
    load_test: Callable[[Path, Mapping[str, Any]], tuple[torch.Tensor, torch.Tensor]]
    # Checks (or downloads) the files before any trial starts; raises hpo.HpoError with one
    # sentence naming the missing file and the fix.
    prepare: Callable[[Path], None] | None = None
    # Identifies the files the data came from (for caches keyed on the data).
    fingerprint: Callable[[Path], str] | None = None
    # Generated data of the same shapes, for ``--synthetic`` smoke runs.
    synthetic: Dataset | None = None


@dataclass(frozen=True)
class StudyDefinition:
    """A study: its data, its search space, how one trial trains, and its launch defaults."""

    name: str
    summary: str
    # A Dataset, or the name of a built-in one: "mnist" or "svhn".
    dataset: str | Dataset
    # Suggests params on the trial, trains with ``run.fit`` (or its own loop, reporting each
    # epoch with ``run.report``), and returns the validation metric.
    objective: Callable[[optuna.Trial, TrialRun], float]
    # Every parameter the objective may suggest (the union, for conditional spaces). Used to
    # check that an existing study is compatible before any trial is added to it.
    search_space: Mapping[str, BaseDistribution]
    # Rebuilds the trained network from a trial's params, to evaluate its checkpoint.
    build_model: Callable[[Mapping[str, Any]], torch.nn.Module]
    # Per-batch input transform on the device (resize, normalize) for a trial's params and the
    # study's options, if the data needs one; used to evaluate a checkpoint on the test set.
    input_transform: Callable[[Mapping[str, Any], Mapping[str, Any]],
                              Callable[[torch.Tensor], torch.Tensor]] | None = None
    metric_name: str = "val_accuracy"
    direction: str = "maximize"
    epochs: int = 10
    trials: int = 50
    sampler: SamplerName = "tpe"
    pruner: PrunerName = "leaders"
    # Grid for --sampler grid: every searched parameter must have a list of values.
    grid: Mapping[str, Sequence[Any]] | None = None
    # Params enqueued once when the study is created, so it always shows a known result.
    # The baseline is never pruned, and its learning curve is a reference for the others.
    baseline: Mapping[str, Any] | None = None
    # Pruning (hpo.search.pruning). The defaults are relative to the study, so they carry over
    # to any number of epochs and any metric; the README's "Search defaults" says how they
    # were chosen.
    # - leaders: from leaders_from on (a fraction of the epochs, or an epoch), a trial not
    #   among the best ``leaders`` (a share of the trials at its epoch, or a count) stops.
    leaders: float | int | None = 1 / 3
    leaders_from: float | int = 0.1
    # - floor: "learned": from epoch 2, a trial worse than where the worst quarter of the
    #   study's trials stood after one epoch stops; a number: worse than it after any epoch.
    floor: float | str | None = "learned"
    # - baseline_margin: a trial more than this behind the baseline's value at the same
    #   epoch stops.
    baseline_margin: float | None = None
    # Epochs a trial that passes the rules trains before the pruner named in ``pruner``
    # (asha, hyperband) first ranks it: its min_resource.
    min_epochs_before_ranking: int = 1
    # Study-specific launch options this definition accepts, with their defaults.
    options: Mapping[str, Any] = field(default_factory=dict)
    # Extra readiness check run before any trial starts (e.g. pretrained weights present).
    check_ready: Callable[[Mapping[str, Any]], None] | None = None

    def __post_init__(self) -> None:
        where = f"study {self.name!r}"
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"A study definition needs a non-empty name, not {self.name!r}.")
        if not callable(self.objective):
            raise ValueError(f"The objective of {where} is not callable.")
        if not isinstance(self.dataset, (str, Dataset)):
            raise ValueError(f"The dataset of {where} must be a hpo.Dataset or the name of a "
                             f"built-in one, not {type(self.dataset).__name__}.")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"The direction of {where} must be maximize or minimize, not "
                             f"{self.direction!r}.")
        if self.sampler not in SAMPLER_NAMES:
            raise ValueError(f"Unknown sampler {self.sampler!r} in {where}: use one of "
                             f"{', '.join(SAMPLER_NAMES)}.")
        if self.pruner not in PRUNER_NAMES:
            raise ValueError(f"Unknown pruner {self.pruner!r} in {where}: use one of "
                             f"{', '.join(PRUNER_NAMES)}.")
        if self.epochs < 1 or self.trials < 1:
            raise ValueError(f"The epochs and trials of {where} must be at least 1.")
        if self.grid is not None:
            missing = set(self.search_space) - set(self.grid)
            if missing:
                raise ValueError(f"The grid of {where} lacks {sorted(missing)}.")
        if self.leaders is not None and not _count_or_share(self.leaders):
            raise ValueError(f"leaders of {where} must be a count of at least 1 or a share "
                             f"between 0 and 1, not {self.leaders!r}.")
        if self.pruner == "leaders" and self.leaders is None:
            raise ValueError(f"The pruner 'leaders' of {where} needs leaders (a share or a "
                             "count): set it, or choose another pruner.")
        if not _count_or_share(self.leaders_from):
            raise ValueError(f"leaders_from of {where} must be an epoch of at least 1 or a "
                             f"fraction of the epochs between 0 and 1, not "
                             f"{self.leaders_from!r}.")
        if isinstance(self.floor, str) and self.floor != "learned":
            raise ValueError(f"The floor of {where} must be a number or 'learned', not "
                             f"{self.floor!r}.")
        if self.min_epochs_before_ranking < 1:
            raise ValueError(f"min_epochs_before_ranking of {where} must be at least 1, not "
                             f"{self.min_epochs_before_ranking}.")
        if self.baseline is not None:
            unknown = set(self.baseline) - set(self.search_space)
            if unknown:
                raise ValueError(f"The baseline of {where} has unknown {sorted(unknown)}.")

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    @property
    def dataset_name(self) -> str:
        return self.dataset if isinstance(self.dataset, str) else self.dataset.name

    @property
    def grid_size(self) -> int | None:
        if self.grid is None:
            return None
        size = 1
        for values in self.grid.values():
            size *= len(values)
        return size


def _count_or_share(value: object) -> bool:
    """An int of at least 1, or a float strictly between 0 and 1 (bools are neither)."""
    if isinstance(value, bool):
        return False
    return (isinstance(value, int) and value >= 1) or (isinstance(value, float)
                                                       and 0 < value < 1)


def is_better(value: float, than: float, *, maximize: bool) -> bool:
    """Whether ``value`` beats ``than`` for a study in this direction (ties do not)."""
    return value > than if maximize else value < than


def suggest(trial: optuna.Trial, space: Mapping[str, BaseDistribution]) -> dict[str, Any]:
    """Suggest every parameter of ``space`` with its declared distribution."""
    return {name: suggest_one(trial, name, distribution) for name, distribution in space.items()}


def suggest_one(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(name, distribution.low, distribution.high,
                                   log=distribution.log, step=distribution.step)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high,
                                 log=distribution.log, step=distribution.step)
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    raise TypeError(f"Unsupported distribution for {name!r}: {distribution!r}")
