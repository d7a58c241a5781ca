"""When a study is done before its budget: ``--patience``, finished trials without a new best.

Works on Optuna's trials and on the snapshot's alike (states and directions by name), so the
workers and the read commands share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hpo.definition import is_better

FINISHED = ("COMPLETE", "PRUNED", "FAIL")


def trials_since_best(trials: Sequence[Any], *, maximize: bool) -> int:
    """How many trials finished (complete, pruned or failed) after the study's best trial did,
    in the order they finished; all of them while no trial has completed."""
    finished = sorted((t for t in trials if t.state.name in FINISHED
                       and t.datetime_complete is not None),
                      key=lambda t: (t.datetime_complete, t.number))
    since, best = 0, None
    for trial in finished:
        if trial.state.name == "COMPLETE" and trial.value is not None and (
                best is None or is_better(trial.value, best, maximize=maximize)):
            best, since = trial.value, 0
        else:
            since += 1
    return since


def patience_spent(trials: Sequence[Any], patience: int | None, *, maximize: bool) -> bool:
    """Whether ``patience`` finished trials in a row brought no new best (None or 0: never)."""
    if not patience:
        return False
    return trials_since_best(trials, maximize=maximize) >= patience
