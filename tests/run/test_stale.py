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
