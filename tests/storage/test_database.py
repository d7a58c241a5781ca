"""hpo/storage/database.py: SQLite in WAL mode with writers that lock up front, small
PostgreSQL pools without prepared statements, retries through outages, and the study lock."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import sqlalchemy.exc

from hpo import _optuna
from hpo.errors import HpoError
from hpo.storage import database
from hpo.storage.database import (
    _engine_kwargs,
    call_with_db_retry,
    is_connection_error,
    open_storage,
    study_lock,
)


def test_sqlite_storage_uses_wal(tmp_path: Path) -> None:
    db = tmp_path / "hpo.db"
    open_storage(f"sqlite:///{db}")
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_sqlite_writer_takes_the_lock_up_front_and_a_reader_does_not(tmp_path: Path) -> None:
    """BEGIN IMMEDIATE: a writing transaction holds the write lock from its first statement,
    so a deferred read-then-write can never fail with "database is locked" half-way."""
    db = tmp_path / "hpo.db"
    storage = open_storage(f"sqlite:///{db}")
    other = sqlite3.connect(db, timeout=0, isolation_level=None)
    with storage.rdb.engine.connect() as connection, connection.begin():
        connection.execute(sqlalchemy.text("SELECT 1"))
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")  # released with the transaction
    other.execute("ROLLBACK")
    database._reading.active = True
    try:
        with storage.rdb.engine.connect() as connection, connection.begin():
            connection.execute(sqlalchemy.text("SELECT 1"))
            other.execute("BEGIN IMMEDIATE")  # a pure read leaves the lock free
            other.execute("ROLLBACK")
    finally:
        database._reading.active = False
    other.close()


def test_postgres_pools_are_small_and_never_prepare_statements() -> None:
    kwargs = _engine_kwargs("postgresql+psycopg://me:pw@db:5432/hpo")
    assert (kwargs["pool_size"], kwargs["max_overflow"], kwargs["pool_pre_ping"]) == (2, 1, True)
    # Behind PgBouncer in transaction pooling a prepared statement may be on another connection.
    assert kwargs["connect_args"] == {"connect_timeout": 10, "prepare_threshold": None}
    assert _engine_kwargs("sqlite:///x.db")["connect_args"]["isolation_level"] is None


@pytest.mark.postgres
def test_workers_keep_their_connection_pools_small(postgres_url: str) -> None:
    storage = open_storage(postgres_url)
    pool = storage.rdb.engine.pool
    assert pool.size() == 2 and pool._max_overflow == 1  # trial loop + heartbeat, plus one
    assert pool._pre_ping


def test_an_unreachable_server_is_one_sentence_without_the_password() -> None:
    with pytest.raises(HpoError) as error:
        open_storage("postgresql+psycopg://me:s3cret-pw@127.0.0.1:1/db")
    message = str(error.value)
    assert message.startswith("Cannot reach the database at "
                              "'postgresql+psycopg://me:***@127.0.0.1:1/db' (")
    assert message.endswith("check that the server is running and that the URL, user and "
                            "password are right.")
    assert "s3cret-pw" not in message


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


def test_the_study_lock_rolls_back_a_trial_created_inside_a_failed_block(sqlite_url: str
                                                                         ) -> None:
    storage = open_storage(sqlite_url)
    study = optuna.create_study(study_name="s", storage=storage)
    study_id = _optuna.study_id_of(study)
    with study_lock(storage, study_id):
        study.ask()
    assert len(study.get_trials()) == 1
    with pytest.raises(RuntimeError, match="lost mid-way"):
        with study_lock(storage, study_id):
            study.ask()
            raise RuntimeError("lost mid-way")
    # Neither the database nor the study's cache holds the rolled-back trial.
    assert [t.number for t in study.get_trials()] == [0]
    assert [t.number for t in optuna.load_study(study_name="s", storage=sqlite_url).trials] == [0]
    assert storage.outage_tolerance == database.DEFAULT_OUTAGE_TOLERANCE  # restored
