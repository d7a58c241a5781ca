"""hpo/storage/retry.py: storage calls ride out a short outage, each one of them, and give up
on a long one; other errors are not retried."""

from __future__ import annotations

import optuna
import pytest
import sqlalchemy
import sqlalchemy.exc
from optuna.distributions import FloatDistribution

from hpo.storage import retry
from hpo.storage.engine import open_storage
from hpo.storage.retry import call_with_db_retry, is_connection_error


def outage(times: int, error: Exception):
    """A call that fails ``times`` times with ``error``, then answers."""
    calls = []

    def call(value: int) -> int:
        calls.append(value)
        if len(calls) <= times:
            raise error
        return value * 2

    return call, calls


def lost_connection() -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the "
                                                                      "connection"))


def test_calls_retry_through_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    call, calls = outage(2, lost_connection())
    assert call_with_db_retry(call, 21, tolerance=10) == 42
    assert calls == [21, 21, 21]
    assert caplog.text.count("Database unreachable") == 1  # warned once, not per retry


def test_other_errors_and_long_outages_are_not_retried() -> None:
    call, calls = outage(1, ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        call_with_db_retry(call, 1, tolerance=10)
    assert len(calls) == 1
    call, calls = outage(5, lost_connection())
    with pytest.raises(sqlalchemy.exc.OperationalError):
        call_with_db_retry(call, 1, tolerance=0.3)  # 0.25 s of backoff fits, 0.5 more does not
    assert len(calls) == 2


def test_connection_errors_are_recognised_through_their_causes() -> None:
    assert is_connection_error(lost_connection())
    assert is_connection_error(sqlalchemy.exc.InterfaceError("x", {}, Exception("closed")))
    wrapped = RuntimeError("storage call failed")
    wrapped.__cause__ = lost_connection()
    assert is_connection_error(wrapped)
    assert not is_connection_error(sqlalchemy.exc.IntegrityError("x", {}, Exception("dup")))
    assert not is_connection_error(ValueError("no"))


# Every call of Optuna's storage API that reaches the database, with arguments that work on a
# study with one RUNNING trial (ids: the study, the trial).
CALLS = {
    "get_study_id_from_name": lambda s, sid, tid: s.get_study_id_from_name("s"),
    "get_study_name_from_id": lambda s, sid, tid: s.get_study_name_from_id(sid),
    "get_study_directions": lambda s, sid, tid: s.get_study_directions(sid),
    "get_study_user_attrs": lambda s, sid, tid: s.get_study_user_attrs(sid),
    "get_study_system_attrs": lambda s, sid, tid: s.get_study_system_attrs(sid),
    "get_all_studies": lambda s, sid, tid: s.get_all_studies(),
    "get_trial_id_from_study_id_trial_number":
        lambda s, sid, tid: s.get_trial_id_from_study_id_trial_number(sid, 0),
    "get_trial": lambda s, sid, tid: s.get_trial(tid),
    "get_all_trials": lambda s, sid, tid: s.get_all_trials(sid),
    "running_trials": lambda s, sid, tid: s.running_trials(sid),
    "create_new_study": lambda s, sid, tid: s.create_new_study(
        [optuna.study.StudyDirection.MINIMIZE], "other"),
    "set_study_user_attr": lambda s, sid, tid: s.set_study_user_attr(sid, "k", 1),
    "set_study_system_attr": lambda s, sid, tid: s.set_study_system_attr(sid, "k", 1),
    "create_new_trial": lambda s, sid, tid: s.create_new_trial(sid),
    "set_trial_param": lambda s, sid, tid: s.set_trial_param(
        tid, "x", 0.5, FloatDistribution(0.0, 1.0)),
    "set_trial_intermediate_value": lambda s, sid, tid: s.set_trial_intermediate_value(
        tid, 1, 0.5),
    "set_trial_user_attr": lambda s, sid, tid: s.set_trial_user_attr(tid, "k", 1),
    "set_trial_system_attr": lambda s, sid, tid: s.set_trial_system_attr(tid, "k", 1),
    "record_heartbeat": lambda s, sid, tid: s.record_heartbeat(tid),
    "set_trial_state_values": lambda s, sid, tid: s.set_trial_state_values(
        tid, optuna.trial.TrialState.COMPLETE, [0.5]),
    "get_best_trial": lambda s, sid, tid: (
        s.set_trial_state_values(tid, optuna.trial.TrialState.COMPLETE, [0.5]),
        s.get_best_trial(sid)),
    "delete_study": lambda s, sid, tid: s.delete_study(sid),
}
# Optuna's cache writes a param only of a study it has read, as a worker's has.
PREPARE = {"set_trial_param": lambda s, sid, tid: s.get_all_trials(sid)}


@pytest.mark.parametrize("name", CALLS)
def test_every_storage_call_rides_out_a_dropped_connection(
        name: str, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry.time, "sleep", lambda seconds: None)
    made = open_storage(sqlite_url)
    study_id = made.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "s")
    trial_id = made.create_new_trial(study_id)
    # Another process's storage: nothing in its cache, so every call reaches the database.
    storage = open_storage(sqlite_url, heartbeat_interval=60, grace_period=120)
    PREPARE.get(name, lambda *args: None)(storage, study_id, trial_id)
    drops = []

    @sqlalchemy.event.listens_for(storage.rdb.engine, "before_cursor_execute")
    def drop_the_first(*args: object) -> None:
        if not drops:
            drops.append(1)
            raise lost_connection()

    CALLS[name](storage, study_id, trial_id)
    assert drops == [1]  # the first statement failed, and the call went on to succeed


class _DriverError(Exception):
    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(("sqlstate", "waits"), [
    (None, True),  # connection refused: a server restarting
    ("57P01", True),  # terminating connection due to administrator command
    ("28P01", False),  # password authentication failed
    ("3D000", False),  # the database does not exist
])
def test_only_what_waiting_can_fix_is_retried(sqlstate: str | None, waits: bool) -> None:
    error = sqlalchemy.exc.OperationalError("SELECT 1", {}, _DriverError("no", sqlstate))
    assert is_connection_error(error) is waits


def test_a_worker_opening_the_storage_rides_out_an_outage(sqlite_url: str,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from hpo.storage import engine

    real, calls = engine.RDBStorage, []

    def down_twice(*args, **kwargs):
        calls.append(1)
        if len(calls) <= 2:
            raise lost_connection()
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "RDBStorage", down_twice)
    with pytest.raises(engine.HpoError, match="Cannot reach the database"):
        open_storage(sqlite_url, outage_tolerance=30)  # a command's first contact: at once
    calls.clear()
    assert open_storage(sqlite_url, outage_tolerance=30, ride_out=True).get_all_studies() == []
    assert len(calls) == 3
