"""hpo's pruning: rules relative to the study, in front of an optional Optuna pruner.

Every rule reads only the study itself (its epochs, its direction, its own trials), so the
defaults a new StudyDefinition gets carry over to 10 or 200 epochs and to any metric, maximized
or minimized. They were chosen on LCBench's design tasks (docs/decisions/2026-12-02-search-
defaults.md) and are, in order:

- **NaN**: a trial whose metric is NaN stops.
- **floor**: ``"learned"`` (the default): from epoch 2, a trial worse than the first-epoch
  value of the study's worst quarter of trials stops: after two epochs or more it has not
  reached where three trials in four stood after one. Or a constant the study gives
  (``floor=0.5``: below chance is hopeless), from the first epoch.
- **baseline**: the study's baseline trial (enqueued first, never pruned) reports every epoch;
  a trial more than ``baseline_margin`` behind the baseline's value at the same epoch stops.
- **leaders**: from ``leaders_from`` (a fraction of the epochs, or an epoch) on, a trial that is
  not among the best ``leaders`` (a share of the trials that reached its epoch, or a count) of
  the trials at its epoch stops. Pruned and running trials count among them; ties never prune.

Whatever passes goes to the peer-ranking pruner ``inner`` (successive halving, Hyperband, the
median rule), if the study names one. The reason for each decision is kept, so the trial records
why it was pruned.
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

LEARNED = "learned"
# The trials a rule ranks against: every trial that reported, whatever became of it since.
_PEERS = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
# The learned floor waits for this many other trials' first epochs, and stands at the first
# epoch of the worst quarter of them.
_LEARNED_FLOOR_TRIALS = 3
_LEARNED_FLOOR_QUANTILE = 0.25


def first_ranked_epoch(leaders_from: float, epochs: int) -> int:
    """``leaders_from`` as an epoch: an int is one already, a fraction in (0, 1) is that share
    of ``epochs``, rounded up (a tenth of 52 epochs is epoch 6, of 10 epochs epoch 1)."""
    if isinstance(leaders_from, int):
        return leaders_from
    return max(1, math.ceil(leaders_from * epochs - 1e-9))


class GuardedPruner(BasePruner):
    """The floor, the baseline's learning curve and the leaders at each epoch, in front of
    ``inner`` (None: nothing behind them)."""

    def __init__(self, inner: BasePruner | None = None, *, epochs: int = 1,
                 floor: float | str | None = None, baseline_margin: float | None = None,
                 leaders: float | None = None, leaders_from: float = 1,
                 metric: str = "value") -> None:
        if baseline_margin is not None and baseline_margin < 0:
            raise ValueError(f"baseline_margin cannot be negative but got {baseline_margin}.")
        if isinstance(floor, str) and floor != LEARNED:
            raise ValueError(f"floor must be a number or {LEARNED!r} but got {floor!r}.")
        if leaders is not None and (isinstance(leaders, bool) or not (
                (isinstance(leaders, int) and leaders >= 1)
                or (isinstance(leaders, float) and 0 < leaders < 1))):
            raise ValueError(f"leaders must be a count of at least 1 or a share between 0 and 1 "
                             f"but got {leaders}.")
        self.inner = inner
        self.floor = floor
        self.baseline_margin = baseline_margin
        self.leaders = leaders
        self.leaders_from = first_ranked_epoch(leaders_from, epochs)
        self.metric = metric
        self.last_reason: str | None = None
        # The baseline's curve, once it is final (a finished trial never changes).
        self._baseline_curve: Mapping[int, float] | None = None

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        # The baseline always runs to the end, so every study shows its full result: exempt
        # here, from every rule and from the inner pruner, and nowhere else.
        if trial.user_attrs.get(BASELINE_ATTR):
            self.last_reason = None
            return False
        self.last_reason = self._reason(study, trial)
        if self.last_reason is not None:
            return True
        step = trial.last_step
        if step is not None and self.inner is not None and self.inner.prune(study, trial):
            self.last_reason = (f"{self.metric} {trial.intermediate_values[step]:.4f} at epoch "
                                f"{step} ranks low among the trials that reached that epoch")
            return True
        return False

    def _reason(self, study: optuna.Study, trial: FrozenTrial) -> str | None:
        """Why the guards stop ``trial`` at its last epoch, or None."""
        step = trial.last_step
        if step is None:
            return None
        value = trial.intermediate_values[step]
        maximize = study.direction == StudyDirection.MAXIMIZE
        at = f"{self.metric} {value:.4f} at epoch {step}"
        if math.isnan(value):
            return f"{self.metric} is NaN at epoch {step}"
        floor, learned = self._floor(study, trial, step)
        if floor is not None and is_better(floor, value, maximize=maximize):
            side = "below" if maximize else "above"
            if learned:
                return (f"{at} is {side} {floor:.4f}, where the worst quarter of the study's "
                        "trials stood after one epoch")
            return f"{at} is {side} the floor {floor:g}"
        if self.baseline_margin is not None:
            reference = self.baseline_curve(study).get(step)
            if reference is not None:
                limit = reference - self.baseline_margin if maximize \
                    else reference + self.baseline_margin
                if is_better(limit, value, maximize=maximize):
                    return (f"{at} is more than {self.baseline_margin:g} behind the baseline's "
                            f"{reference:.4f}")
        if self.leaders is not None and step >= self.leaders_from:
            last = self.last_leader(study, trial, step, maximize=maximize)
            if last is not None and is_better(last, value, maximize=maximize):
                return (f"{at} is not among the {self.describe_leaders()} at that epoch (the "
                        f"last of them: {last:.4f})")
        return None

    def describe_leaders(self) -> str:
        if isinstance(self.leaders, float):
            return f"best {_share(self.leaders)} of the trials"
        return f"best {self.leaders}"

    def _floor(self, study: optuna.Study, trial: FrozenTrial, step: int
               ) -> tuple[float | None, bool]:
        """The floor at ``step`` and whether it was learned; (None, False) where none applies."""
        if self.floor != LEARNED:
            return (None if self.floor is None else float(self.floor)), False
        if step < 2:
            return None, True
        firsts = [other.intermediate_values[1] for other in _others(study, trial)
                  if 1 in other.intermediate_values
                  and not math.isnan(other.intermediate_values[1])]
        if len(firsts) < _LEARNED_FLOOR_TRIALS:
            return None, True
        maximize = study.direction == StudyDirection.MAXIMIZE
        firsts.sort(reverse=not maximize)  # worst first
        return firsts[int(len(firsts) * _LEARNED_FLOOR_QUANTILE)], True

    def last_leader(self, study: optuna.Study, trial: FrozenTrial, step: int, *,
                    maximize: bool) -> float | None:
        """The worst value at ``step`` that still counts among the leaders, judged against the
        other trials that reached ``step``; None while there are too few of them.

        A count N needs N others and gives the N-th best of them. A share q needs one other
        and gives the k-th best, k = ceil(q * (others + 1)): with two others and a third, the
        best of them, so a trial must beat both or tie the best."""
        assert self.leaders is not None
        values = [other.intermediate_values[step] for other in _others(study, trial)
                  if step in other.intermediate_values
                  and not math.isnan(other.intermediate_values[step])]
        if isinstance(self.leaders, float):
            needed = 1
            k = math.ceil(self.leaders * (len(values) + 1) - 1e-9)
        else:
            needed = k = self.leaders
        if len(values) < needed or k < 1:
            return None
        values.sort(reverse=maximize)
        return values[min(k, len(values)) - 1]

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


def _others(study: optuna.Study, trial: FrozenTrial) -> list[FrozenTrial]:
    return [other for other in study.get_trials(deepcopy=False, states=_PEERS)
            if other.number != trial.number]


def _share(fraction: float) -> str:
    """1/3 as "third", 0.25 as "quarter", anything else as a percentage."""
    names = {2: "half", 3: "third", 4: "quarter", 5: "fifth", 10: "tenth"}
    for denominator, name in names.items():
        if math.isclose(fraction, 1 / denominator):
            return name
    return f"{fraction:.0%}"
