"""Several storage calls in one database transaction: the study lock that makes ``--total``
exact, and failing a trial only if it still runs.

Each runs Optuna's storage calls on one connection whose transaction they join
(hpo._optuna.calls_on), so they commit or roll back together.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import TrialState

from hpo import _optuna
from hpo.storage.retry import ResilientStorage, call_with_db_retry

# First key of the two-key PostgreSQL advisory lock that serializes "is there room under
# --total? then create the trial" per study (the second key is the study id). "hpo" in hex.
STUDY_LOCK_CLASS = 0x68706F


@contextlib.contextmanager
def study_lock(storage: ResilientStorage, study_id: int) -> Iterator[None]:
    """Run the block's storage calls in one transaction that holds the study's lock.

    Two workers that each count the study's trials and then create one can both see room for
    the last trial; holding a lock from the count to the creation makes the cap exact. The lock
    lives in the database, so it holds across processes and machines: PostgreSQL's
    transaction-level advisory lock, SQLite's write lock (BEGIN IMMEDIATE, see
    hpo.storage.engine), SELECT ... FOR UPDATE on the study's row elsewhere.

    A worker waiting for the lock holds one connection and the holder needs no second one, so
    behind a transaction-pooling PgBouncer waiters can never starve the holder. Inside, storage
    calls do not retry: a lost connection loses the transaction, so the caller retries the
    whole block (see hpo.storage.retry.call_with_db_retry).
    """
    rdb = storage.rdb
    saved_tolerance = storage.outage_tolerance
    try:
        with rdb.engine.connect() as connection, connection.begin():
            backend = connection.dialect.name
            if backend == "postgresql":
                connection.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:k1, :k2)"),
                                   {"k1": STUDY_LOCK_CLASS, "k2": study_id})
            elif backend != "sqlite":
                connection.execute(sqlalchemy.text(
                    "SELECT study_id FROM studies WHERE study_id = :id FOR UPDATE"),
                    {"id": study_id})
            storage.outage_tolerance = 0.0
            try:
                with _optuna.calls_on(rdb, connection):
                    yield
            finally:
                storage.outage_tolerance = saved_tolerance
    except BaseException:
        # The transaction rolled back, but Optuna's cache may already hold a trial it created:
        # forget the study's cached trials so the next read comes from the database.
        _optuna.forget_cached_trials(storage, study_id)
        raise


def fail_if_running(storage: ResilientStorage, trial_id: int, attrs: dict[str, Any]) -> bool:
    """Write ``attrs`` (the fail reason) on a trial and mark it FAIL, in one transaction, if it
    is still RUNNING. Returns whether this call failed it: False if it finished meanwhile or
    someone else failed it first, so a trial that completes is never left with a fail reason."""
    rdb = storage.rdb

    def attempt() -> bool:
        try:
            with rdb.engine.connect() as connection, connection.begin(), \
                    _optuna.calls_on(rdb, connection):
                for key, value in attrs.items():
                    rdb.set_trial_user_attr(trial_id, key, value)
                return bool(rdb.set_trial_state_values(trial_id, TrialState.FAIL))
        except optuna.exceptions.UpdateFinishedTrialError:
            return False

    return call_with_db_retry(attempt, tolerance=storage.outage_tolerance, url=storage.url)
