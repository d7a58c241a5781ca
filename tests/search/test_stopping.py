"""--patience: finished trials since the last new best, in the order they finished."""

from __future__ import annotations

from datetime import datetime, timedelta

import optuna
import pytest
from optuna.trial import TrialState

from hpo.search.stopping import patience_spent, trials_since_best

START = datetime(2026, 12, 2, 9, 0)


def finished(*runs: tuple[str, float | None]) -> list[optuna.trial.FrozenTrial]:
    """Trials that finished a minute apart, in the order given (numbered in reverse, so the
    order cannot come from the numbers)."""
    trials = []
    for i, (state, value) in enumerate(runs):
        trial = optuna.trial.create_trial(state=TrialState[state], value=value)
        trial.number = len(runs) - i
        trial.datetime_complete = START + timedelta(minutes=i)
        trials.append(trial)
    return trials


def test_counts_every_finished_trial_after_the_best_whatever_its_state() -> None:
    trials = finished(("COMPLETE", 0.5), ("COMPLETE", 0.9), ("PRUNED", None),
                      ("COMPLETE", 0.8), ("FAIL", None))
    assert trials_since_best(trials, maximize=True) == 3
    assert patience_spent(trials, 3, maximize=True)
    assert not patience_spent(trials, 4, maximize=True)


def test_a_new_best_starts_the_count_again_and_ties_do_not() -> None:
    trials = finished(("COMPLETE", 0.5), ("PRUNED", None), ("COMPLETE", 0.5),
                      ("COMPLETE", 0.7))
    assert trials_since_best(trials, maximize=True) == 0
    assert trials_since_best(trials[:3], maximize=True) == 2  # 0.5 again is no new best


def test_minimize_takes_the_lowest_value_as_best() -> None:
    trials = finished(("COMPLETE", 0.5), ("COMPLETE", 0.2), ("COMPLETE", 0.9))
    assert trials_since_best(trials, maximize=False) == 1
    assert trials_since_best(trials, maximize=True) == 0


def test_the_order_is_when_trials_finished_not_their_numbers() -> None:
    trials = finished(("COMPLETE", 0.9), ("COMPLETE", 0.1))
    # Trial 2 (the best) finished first, so one trial has finished since, not zero.
    assert [t.number for t in trials] == [2, 1]
    assert trials_since_best(trials, maximize=True) == 1


def test_running_trials_do_not_count_and_without_a_completed_trial_all_do() -> None:
    trials = finished(("PRUNED", None), ("FAIL", None))
    running = optuna.trial.create_trial(state=TrialState.RUNNING)
    assert trials_since_best([*trials, running], maximize=True) == 2


@pytest.mark.parametrize("patience", [None, 0])
def test_no_patience_never_stops(patience: int | None) -> None:
    trials = finished(*[("PRUNED", None)] * 10)
    assert not patience_spent(trials, patience, maximize=True)
