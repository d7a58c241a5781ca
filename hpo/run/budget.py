"""The trial budget: how many trials a launch may still start, shared by its workers, and which
trials count against it.

``--trials N`` means exactly N trials run to an end (complete, pruned or failed) whatever the
number of workers: the launcher keeps the count in shared memory (:class:`SharedState`), each
worker claims a unit before it asks for a trial and settles it after (:class:`SharedBudget`),
and a worker running alone counts for itself (:class:`LocalBudget`). A trial that did not count
(another worker failed it by heartbeat, so its retry will count) gives its unit back.
:func:`counted` is the same rule read from storage, for ``--total`` and the launch's summary.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Protocol

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback


def replaced_by_retries(trials: Sequence[optuna.trial.FrozenTrial]) -> set[int]:
    """The numbers of the trials that a retry took the place of: each failed with its worker
    and was queued again with the same params."""
    with warnings.catch_warnings():  # marked experimental, but the documented public route
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        histories = [RetryHeartbeatStaleTrialCallback.retry_history(t) for t in trials]
    return {history[-1] for history in histories if history}


def counted(trials: Sequence[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The trials that count against ``--trials`` and ``--total``: the finished ones, less
    those a retry replaced (the retry counts in their place)."""
    replaced = replaced_by_retries(trials)
    return [t for t in trials if t.state.is_finished() and t.number not in replaced]


def counted_finished(trials: Sequence[optuna.trial.FrozenTrial]) -> int:
    return len(counted(trials))


class Budget(Protocol):
    """How many trials this worker may still start. The launcher shares one among workers."""

    def claim(self) -> bool: ...

    def started(self, trial_id: int) -> None: ...

    def finished(self, *, counted: bool) -> None: ...


class LocalBudget:
    """A budget of ``n`` trials (None: unlimited) for a worker running alone."""

    def __init__(self, n: int | None) -> None:
        self.remaining = n
        self.counted = 0

    def claim(self) -> bool:
        if self.remaining is not None:
            if self.remaining <= 0:
                return False
            self.remaining -= 1
        return True

    def started(self, trial_id: int) -> None:
        pass

    def finished(self, *, counted: bool) -> None:
        if counted:
            self.counted += 1
        elif self.remaining is not None:
            self.remaining += 1  # a trial that did not count gives its slot back


class SharedState:
    """Budget and bookkeeping shared by the launcher and its workers (in shared memory)."""

    UNLIMITED = -1

    def __init__(self, ctx: Any, slots: int, budget: int | None) -> None:
        self.lock = ctx.Lock()
        self.remaining = ctx.Value("q", self.UNLIMITED if budget is None else budget, lock=False)
        self.counted = ctx.Value("q", 0, lock=False)
        self.holding = ctx.Array("b", slots, lock=False)  # slot holds a claimed budget unit
        self.trial_ids = ctx.Array("q", [-1] * slots, lock=False)  # trial the slot is running

    def refund(self) -> None:
        if self.remaining.value != self.UNLIMITED:
            self.remaining.value += 1


class SharedBudget:
    """A worker's view of the launch's budget (see Budget above)."""

    def __init__(self, state: SharedState, index: int) -> None:
        self.state = state
        self.index = index

    def claim(self) -> bool:
        with self.state.lock:
            remaining = self.state.remaining
            if remaining.value == 0:
                return False
            if remaining.value != SharedState.UNLIMITED:
                remaining.value -= 1
            self.state.holding[self.index] = 1
            return True

    def started(self, trial_id: int) -> None:
        with self.state.lock:
            self.state.trial_ids[self.index] = trial_id

    def finished(self, *, counted: bool) -> None:
        with self.state.lock:
            if counted:
                self.state.counted.value += 1
            else:
                self.state.refund()
            self.state.holding[self.index] = 0
            self.state.trial_ids[self.index] = -1
