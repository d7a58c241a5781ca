"""Pruning that works from the first trial: two guards in front of Optuna's pruner.

Hyperband, successive halving and the median rule all rank a trial against its peers, so at the
start of a study, with few peers to rank against, they let hopeless trials train on. On real
MNIST a trial sat at chance accuracy for all 10 epochs that way. Two guards need no peers:

- **the floor**: a trial whose metric is worse than the study's floor (50% for MNIST) at any
  epoch is pruned; nothing that bad after a full epoch recovers;
- **the baseline's curve**: the study's baseline trial (the seed's network, enqueued first and
  never pruned) reports every epoch; a trial more than ``baseline_margin`` behind the baseline's
  value at the same epoch is pruned, as soon as the baseline has reached that epoch.

A third guard ranks, but more strictly than successive halving does late in a study:

- **the leaders**: from epoch ``leaders_from`` on, once ``leaders`` other trials have reached
  an epoch, a trial whose value at that epoch is not among the best ``leaders`` values there
  is pruned. Successive halving promotes the top third of a rung, and once TPE has settled on
  a good region nearly every new trial is in the top third of the old ones, so late trials all
  train to the end: in one mnist-mlp study 19 of 50 did, and the study took 22 minutes.
  studies/mnist_mlp.py gives the figures, and why this ranking waits for the third epoch
  there.

Whatever passes the guards goes to the peer-ranking pruner (``inner``). The reason for each
decision is kept, so the trial records why it was pruned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hpo.definition import is_better
from hpo.storage.attributes import BASELINE_ATTR


class GuardedPruner(BasePruner):
    """A floor, the baseline's learning curve and the leaders at each epoch in front of
    ``inner``."""

    def __init__(self, inner: BasePruner, *, floor: float | None = None,
                 baseline_margin: float | None = None, leaders: int | None = None,
                 leaders_from: int = 1, metric: str = "value") -> None:
        if baseline_margin is not None and baseline_margin < 0:
            raise ValueError(f"baseline_margin cannot be negative but got {baseline_margin}.")
        if leaders is not None and leaders < 1:
            raise ValueError(f"leaders must be at least 1 but got {leaders}.")
        self.inner = inner
        self.floor = floor
        self.baseline_margin = baseline_margin
        self.leaders = leaders
        self.leaders_from = leaders_from
        self.metric = metric
        self.last_reason: str | None = None
        # The baseline's curve, once it is final (a finished trial never changes).
        self._baseline_curve: Mapping[int, float] | None = None

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        self.last_reason = None
        step = trial.last_step
        if step is None:
            return False
        value = trial.intermediate_values[step]
        maximize = study.direction == StudyDirection.MAXIMIZE
        if math.isnan(value):
            self.last_reason = f"{self.metric} is NaN at epoch {step}"
            return True
        if self.floor is not None and is_better(self.floor, value, maximize=maximize):
            self.last_reason = (f"{self.metric} {value:.4f} at epoch {step} is "
                                f"{'below' if maximize else 'above'} the floor {self.floor:g}")
            return True
        if self.baseline_margin is not None and not trial.user_attrs.get(BASELINE_ATTR):
            reference = self.baseline_curve(study).get(step)
            if reference is not None:
                limit = reference - self.baseline_margin if maximize \
                    else reference + self.baseline_margin
                if is_better(limit, value, maximize=maximize):
                    self.last_reason = (
                        f"{self.metric} {value:.4f} at epoch {step} is more than "
                        f"{self.baseline_margin:g} behind the baseline's {reference:.4f}")
                    return True
        if (self.leaders is not None and step >= self.leaders_from
                and not trial.user_attrs.get(BASELINE_ATTR)):
            last_leader = self.last_leader(study, trial, step, maximize=maximize)
            if last_leader is not None and is_better(last_leader, value, maximize=maximize):
                self.last_reason = (f"{self.metric} {value:.4f} at epoch {step} is not among the "
                                    f"best {self.leaders} at that epoch (the last of them: "
                                    f"{last_leader:.4f})")
                return True
        if self.inner.prune(study, trial):
            self.last_reason = (f"{self.metric} {value:.4f} at epoch {step} ranks low among "
                                "the trials that reached that epoch")
            return True
        return False

    def last_leader(self, study: optuna.Study, trial: FrozenTrial, step: int, *,
                    maximize: bool) -> float | None:
        """The ``leaders``-th best value at ``step`` among the other trials that reached it
        (pruned and running ones too), or None while fewer than ``leaders`` have."""
        assert self.leaders is not None
        values = [other.intermediate_values[step] for other in study.get_trials(
                      deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                              TrialState.RUNNING))
                  if other.number != trial.number and step in other.intermediate_values
                  and not math.isnan(other.intermediate_values[step])]
        if len(values) < self.leaders:
            return None
        values.sort(reverse=maximize)
        return values[self.leaders - 1]

    def baseline_curve(self, study: optuna.Study) -> Mapping[int, float]:
        """The baseline trial's value at each epoch it has reported so far ({} if none)."""
        if self._baseline_curve is not None:
            return self._baseline_curve
        # A baseline whose worker died is FAIL, and its retry (which keeps the attribute) is
        # the one to follow.
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,
                                                              TrialState.COMPLETE)):
            if trial.user_attrs.get(BASELINE_ATTR) and trial.intermediate_values:
                curve = dict(trial.intermediate_values)
                if trial.state == TrialState.COMPLETE:
                    self._baseline_curve = curve
                return curve
        return {}

