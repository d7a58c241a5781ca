"""hpo/run/budget.py: ``--trials N`` is exactly N trials run to an end. A worker claims a unit
before it asks for a trial and settles it after; a trial that did not count gives its unit
back. The shared budget holds under workers racing in separate processes."""

from __future__ import annotations

import multiprocessing

import pytest

from hpo.run.budget import LocalBudget, SharedBudget, SharedState


def claims_until_refused(budget, *, not_counted: int = 0, limit: int = 1000) -> int:
    """Claim until the budget refuses; the first ``not_counted`` trials give their unit back.
    Returns how many claims succeeded (bounded, so a broken budget cannot loop forever)."""
    granted = 0
    while granted < limit and budget.claim():
        granted += 1
        budget.started(granted)
        budget.finished(counted=granted > not_counted)
    return granted


def test_a_local_budget_of_n_grants_exactly_n() -> None:
    budget = LocalBudget(3)
    assert [budget.claim() for _ in range(4)] == [True, True, True, False]
    assert budget.remaining == 0


def test_a_local_trial_that_did_not_count_gives_its_unit_back() -> None:
    budget = LocalBudget(2)
    assert claims_until_refused(budget, not_counted=1) == 3
    assert budget.counted == 2 and budget.remaining == 0


def test_an_unlimited_local_budget_only_counts() -> None:
    budget = LocalBudget(None)
    assert claims_until_refused(budget, not_counted=2, limit=10) == 10
    assert budget.counted == 8 and budget.remaining is None


@pytest.fixture
def ctx():
    return multiprocessing.get_context("spawn")  # what the supervisor uses


def test_a_shared_budget_of_n_grants_exactly_n_across_slots(ctx) -> None:
    state = SharedState(ctx, slots=2, budget=3)
    first, second = SharedBudget(state, 0), SharedBudget(state, 1)
    assert first.claim() and second.claim() and first.claim()
    assert not second.claim() and not first.claim()
    assert state.remaining.value == 0 and state.counted.value == 0


def test_a_shared_slot_records_what_it_holds_until_it_settles(ctx) -> None:
    state = SharedState(ctx, slots=2, budget=5)
    budget = SharedBudget(state, 1)
    assert budget.claim()
    assert list(state.holding) == [0, 1] and list(state.trial_ids) == [-1, -1]
    budget.started(42)  # what the supervisor reads to fail the trial of a dead worker
    assert list(state.trial_ids) == [-1, 42]
    budget.finished(counted=True)
    assert list(state.holding) == [0, 0] and list(state.trial_ids) == [-1, -1]
    assert (state.remaining.value, state.counted.value) == (4, 1)


def test_a_shared_trial_that_did_not_count_gives_its_unit_back(ctx) -> None:
    state = SharedState(ctx, slots=1, budget=2)
    assert claims_until_refused(SharedBudget(state, 0), not_counted=1) == 3
    assert (state.remaining.value, state.counted.value) == (0, 2)


def test_an_unlimited_shared_budget_stays_unlimited(ctx) -> None:
    state = SharedState(ctx, slots=1, budget=None)
    assert claims_until_refused(SharedBudget(state, 0), not_counted=3, limit=10) == 10
    assert state.remaining.value == SharedState.UNLIMITED and state.counted.value == 7
    state.refund()  # a refund never turns "unlimited" into a count
    assert state.remaining.value == SharedState.UNLIMITED


def _race(state: SharedState, index: int, not_counted: int, barrier, granted) -> None:
    """A worker process: wait for the others, then claim until the budget is spent."""
    barrier.wait(timeout=60)
    granted[index] = claims_until_refused(SharedBudget(state, index), not_counted=not_counted)


@pytest.mark.parametrize("not_counted", [0, 2])
def test_racing_worker_processes_spend_the_budget_exactly(not_counted: int) -> None:
    # The supervisor spawns its workers; forked ones share the budget's memory and lock the
    # same way and start in milliseconds, where a spawned one imports optuna first.
    ctx = multiprocessing.get_context("fork")
    workers, trials = 3, 7
    state = SharedState(ctx, workers, trials)
    barrier = ctx.Barrier(workers)
    granted = ctx.Array("q", workers)
    processes = [ctx.Process(target=_race, args=(state, i, not_counted, barrier, granted))
                 for i in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * workers
    # Each process gave back its first not_counted units, and someone claimed them again.
    assert sum(max(0, g - not_counted) for g in granted) == trials
    assert state.counted.value == trials and state.remaining.value == 0
    assert list(state.holding) == [0] * workers


def test_the_counting_rule_counts_a_retry_in_its_original_s_place() -> None:
    """What --trials, --total and the launch's summary count: finished trials, less those a
    retry replaced; a failed trial nobody retried (retries used up, or stopped) counts."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from hpo.run.budget import counted, counted_finished, replaced_by_retries

    space = {"x": FloatDistribution(0.0, 1.0)}

    def trial(number: int, state: TrialState, history: list[int] | None = None):
        made = create_trial(params={"x": 0.5}, distributions=space, state=state,
                            value=0.5 if state == TrialState.COMPLETE else None,
                            system_attrs={"retry_history": history} if history else None)
        made.number = number
        return made

    trials = [trial(0, TrialState.COMPLETE), trial(1, TrialState.FAIL),  # lost, retried
              trial(2, TrialState.FAIL), trial(3, TrialState.COMPLETE, [1]),  # 2: not retried
              trial(4, TrialState.FAIL), trial(5, TrialState.WAITING, [4]),  # retry queued
              trial(6, TrialState.RUNNING), trial(7, TrialState.PRUNED)]
    assert replaced_by_retries(trials) == {1, 4}
    assert [t.number for t in counted(trials)] == [0, 2, 3, 7]
    assert counted_finished(trials) == 4
