"""hpo/run/stale.py: when a RUNNING trial counts as lost. The grace period is in seconds."""

from __future__ import annotations

import datetime

import pytest

from hpo._optuna import RunningTrial
from hpo.run.stale import stale_reason

NOW = datetime.datetime(2026, 12, 2, 12, 0, 0)


def beating(age: float) -> RunningTrial:
    return RunningTrial(trial_id=1, number=0, started_utc=NOW - datetime.timedelta(hours=1),
                        heartbeat_age=age, heartbeat=NOW - datetime.timedelta(seconds=age))


def silent(started_ago: float) -> RunningTrial:
    return RunningTrial(trial_id=1, number=0, heartbeat_age=None, heartbeat=None,
                        started_utc=NOW - datetime.timedelta(seconds=started_ago))


@pytest.mark.parametrize(("age", "lost"), [(10, False), (29, False), (31, True), (60, True)])
def test_a_heartbeat_older_than_the_grace_in_seconds_means_lost(age: float, lost: bool) -> None:
    reason = stale_reason(beating(age), grace=30, now=NOW)
    assert (reason is not None) == lost
    if lost:
        assert reason == f"worker lost: no heartbeat for {age:.0f} s"


@pytest.mark.parametrize(("started_ago", "lost"), [(10, False), (60, True)])
def test_a_trial_that_never_beat_is_lost_once_it_started_longer_ago_than_the_grace(
        started_ago: float, lost: bool) -> None:
    reason = stale_reason(silent(started_ago), grace=30, now=NOW)
    assert (reason is not None) == lost
    if lost:
        assert "sent no heartbeat in the 60 s since it started" in reason


def test_settling_says_nothing_of_a_trial_whose_worker_beats(sqlite_url: str,
                                                             caplog: pytest.LogCaptureFixture
                                                             ) -> None:
    """A worker that exits while a peer still trains waits for the peer's heartbeat to move;
    it must not first warn that the healthy trial has "no live heartbeat"."""
    import threading

    import optuna

    from hpo.run.stale import settle_running_trials
    from hpo.storage.engine import open_storage

    storage = open_storage(sqlite_url, heartbeat_interval=1, grace_period=5)
    study = optuna.create_study(study_name="s", storage=storage)
    trial_id = study.ask()._trial_id
    done = threading.Event()

    def beat() -> None:
        while True:
            storage.record_heartbeat(trial_id)
            if done.wait(1.0):
                return

    peer = threading.Thread(target=beat)
    peer.start()
    try:
        settle_running_trials(storage, study, grace=5, interval=1, poll=0.2)
    finally:
        done.set()
        peer.join()
    assert "no live heartbeat" not in caplog.text
    assert study.get_trials()[0].state == optuna.trial.TrialState.RUNNING


# -- clocks: on SQLite each process's clock writes and judges heartbeats (issue 18, Part 3) ---


def skewed_study(url: str, *, heartbeat_behind: float | None):
    """A study with one RUNNING trial whose heartbeat (None: none yet) was written by a clock
    ``heartbeat_behind`` seconds behind this process's, as a checker running ahead sees it."""
    import optuna

    from hpo.storage.engine import open_storage

    storage = open_storage(url, heartbeat_interval=1, grace_period=30)
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    sql(url, "UPDATE trials SET datetime_start = datetime('now', '-90 seconds')")
    if heartbeat_behind is not None:
        storage.rdb.record_heartbeat(trial._trial_id)
        beat_again(url, heartbeat_behind)
    return storage, study


def sql(url: str, statement: str, *args: object) -> None:
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db, db:
        db.execute(statement, args)


def beat_again(url: str, behind: float) -> None:
    sql(url, "UPDATE trial_heartbeats SET heartbeat = datetime('now', ?)", f"-{behind} seconds")


@pytest.mark.parametrize("behind", [90.0, None], ids=["beating", "no-heartbeat-yet"])
def test_a_checker_whose_clock_runs_90_s_ahead_fails_no_healthy_trial(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch, behind: float | None) -> None:
    import time

    from hpo.run import stale

    storage, study = skewed_study(sqlite_url, heartbeat_behind=behind)
    clock = [time.monotonic()]
    monkeypatch.setattr(stale.time, "monotonic", lambda: clock[0])
    assert len(stale.fail_stale_trials(storage, study, grace=30)) == 1  # first sighting
    for step in (1, 2, 3):  # a live worker: its heartbeat moves every interval
        clock[0] += 20
        if behind is not None:
            beat_again(sqlite_url, behind - step)
        else:  # its first beat arrives, then more
            beat_again(sqlite_url, 90.0 - step) if step > 1 else _first_beat(storage, study)
        assert len(stale.fail_stale_trials(storage, study, grace=30)) == 1, step
    assert study.trials[0].state.name == "RUNNING"


def _first_beat(storage, study) -> None:
    storage.rdb.record_heartbeat(study.trials[0]._trial_id)
    beat_again(storage.url, 89.0)


@pytest.mark.parametrize("behind", [90.0, None], ids=["beat-once", "never-beat"])
def test_a_dead_trial_is_failed_once_it_stays_unchanged_for_the_grace_period(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch, behind: float | None) -> None:
    import time

    from hpo.run import stale

    storage, study = skewed_study(sqlite_url, heartbeat_behind=behind)
    clock = [time.monotonic()]
    monkeypatch.setattr(stale.time, "monotonic", lambda: clock[0])
    assert len(stale.fail_stale_trials(storage, study, grace=30)) == 1
    clock[0] += 29
    assert len(stale.fail_stale_trials(storage, study, grace=30)) == 1
    clock[0] += 2
    assert stale.fail_stale_trials(storage, study, grace=30) == []
    assert study.trials[0].state.name == "FAIL"
