"""hpo/storage/engine.py: SQLite in WAL mode with writers that lock up front, small PostgreSQL
pools without prepared statements, and an unreachable server in one sentence."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy

from hpo.errors import HpoError
from hpo.storage import retry
from hpo.storage.engine import engine_kwargs, open_storage
from hpo.storage.urls import check_storage_url


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
    retry._reading.active = True
    try:
        with storage.rdb.engine.connect() as connection, connection.begin():
            connection.execute(sqlalchemy.text("SELECT 1"))
            other.execute("BEGIN IMMEDIATE")  # a pure read leaves the lock free
            other.execute("ROLLBACK")
    finally:
        retry._reading.active = False
    other.close()


def test_postgres_pools_are_small_and_never_prepare_statements() -> None:
    kwargs = engine_kwargs(check_storage_url("postgresql+psycopg://me:pw@db:5432/hpo"))
    assert (kwargs["pool_size"], kwargs["max_overflow"], kwargs["pool_pre_ping"]) == (2, 1, True)
    # Behind PgBouncer in transaction pooling a prepared statement may be on another connection.
    assert kwargs["connect_args"] == {"connect_timeout": 10, "prepare_threshold": None}
    sqlite = engine_kwargs(check_storage_url("sqlite:///x.db"))
    assert sqlite["connect_args"]["isolation_level"] is None


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


@pytest.mark.postgres
def test_workers_starting_together_on_an_empty_database_all_open_it(postgres_url: str) -> None:
    """Optuna creates its tables when a storage first opens; workers that start at once on an
    empty PostgreSQL database (a Slurm array beside postgres.sbatch) race to do it, and the
    losers hit a duplicate key in the catalog. Every one must open the storage."""
    import threading

    opened: list[object] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def open_it() -> None:
        start.wait()
        try:
            opened.append(open_storage(postgres_url))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(opened) == 6
