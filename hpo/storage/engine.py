"""Opening a storage URL as Optuna's RDB storage, tuned for several worker processes: SQLite in
WAL mode with writers that lock up front, PostgreSQL with small pools and no prepared
statements.

Connections: every worker process holds at most two, one for its trial loop and one for its
heartbeat thread (SQLAlchemy sessions are per thread). The launcher itself holds one.
"""

from __future__ import annotations

import random
import sqlite3
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from hpo import settings
from hpo.errors import HpoError
from hpo.storage.retry import ResilientStorage, call_with_db_retry, database_reason, reading
from hpo.storage.urls import StorageUrl, check_storage_url, scrub

# A trial killed with its worker is retried this many times at most, with the same params.
STALE_TRIAL_MAX_RETRY = 3
SQLITE_BUSY_TIMEOUT = 60.0
# Tries at creating a new database's tables while other processes create them too.
SCHEMA_RACE_ATTEMPTS = 20


def engine_kwargs(location: StorageUrl) -> dict[str, Any]:
    if location.backend == "sqlite":
        # isolation_level=None hands transaction control to SQLAlchemy's "begin" event, where
        # we issue BEGIN IMMEDIATE (see _tune_sqlite_engine).
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT, "isolation_level": None}}
    if location.backend == "postgresql":
        return {
            # A connection that died with the server is noticed and replaced before use.
            "pool_pre_ping": True,
            # One connection for the trial loop and one for the heartbeat thread.
            "pool_size": 2,
            "max_overflow": 1,
            "connect_args": _postgres_connect_args(location.driver),
        }
    return {"pool_pre_ping": True}


def _postgres_connect_args(driver: str) -> dict[str, Any]:
    args: dict[str, Any] = {"connect_timeout": 10}
    if driver == "psycopg":
        # psycopg 3 turns a statement into a named server-side prepared statement after its
        # fifth execution on a connection. Behind PgBouncer in transaction pooling the next
        # transaction may run on another server connection, where that statement does not
        # exist (or already exists), and the worker fails. hpo's queries are short and cheap
        # to plan, so it never prepares: the same URL works direct and through any pooler.
        args["prepare_threshold"] = None
    return args


def _prepare_sqlite(path: Path) -> None:
    # WAL lets readers (status, the dashboard) work while a worker writes, and it is a
    # property of the file, so setting it once is enough.
    with sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT) as connection:
        connection.execute("PRAGMA journal_mode=WAL")


def _tune_sqlite_engine(engine: sqlalchemy.Engine) -> None:
    """Make SQLite safe and quick for several worker processes.

    A transaction that may write takes the write lock up front (BEGIN IMMEDIATE): a deferred
    transaction that reads and then writes cannot wait for the lock in WAL mode; if another
    process committed in between, SQLite fails at once with "database is locked" instead of
    honouring the busy timeout. Pure reads (hpo.storage.retry.reading) stay deferred, so in WAL
    mode they never wait for a writer. And synchronous=NORMAL, which WAL makes safe against
    corruption, skips an fsync per commit, which otherwise serializes workers on the disk.
    """

    @sqlalchemy.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin(connection: sqlalchemy.Connection) -> None:
        connection.exec_driver_sql("BEGIN" if reading() else "BEGIN IMMEDIATE")


def _is_schema_race(error: BaseException) -> bool:
    """Whether ``error`` came from another process creating the same new database's tables at
    the same moment: SQLite's "table ... already exists" or "database is locked", PostgreSQL's
    duplicate key in its catalogue (pg_type), or a second row for Optuna's or Alembic's version
    tables."""
    text = str(error).lower()
    # SQLite: a database still locked by the process creating it (switching it to WAL, say).
    return isinstance(error, sqlalchemy.exc.IntegrityError) or "already exists" in text \
        or "duplicate key" in text or "unique constraint" in text \
        or "database is locked" in text


def _rdb_storage(location: StorageUrl, heartbeat_interval: int | None,
                 grace_period: int | None) -> RDBStorage:
    """Optuna's RDB storage of ``location``, its tables created if the database is new.

    Several processes starting on one new database (a Slurm array, a Kubernetes Job) create
    the tables at once, and all but one lose the race; the tables then exist, so trying again
    is enough, with a random pause so that the losers do not collide again."""
    for attempt in range(SCHEMA_RACE_ATTEMPTS):
        try:
            path = location.sqlite_path
            if path is not None:
                if not path.exists():  # created now: its folder too (checked by check_storage_url)
                    path.parent.mkdir(parents=True, exist_ok=True)
                _prepare_sqlite(path)
            with warnings.catch_warnings():
                # Heartbeats and the retry callback are marked experimental; we want them.
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    location.url,
                    engine_kwargs=engine_kwargs(location),
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=(
                        RetryHeartbeatStaleTrialCallback(max_retry=STALE_TRIAL_MAX_RETRY)
                        if heartbeat_interval
                        else None
                    ),
                )
        except (sqlalchemy.exc.SQLAlchemyError, sqlite3.Error) as error:
            if attempt + 1 == SCHEMA_RACE_ATTEMPTS or not _is_schema_race(error):
                raise
            time.sleep(random.uniform(0.05, 0.5))
    raise AssertionError("unreachable")


def open_storage(
    url: str | StorageUrl,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    must_exist: bool = False,
    outage_tolerance: float = settings.DEFAULT_OUTAGE_TOLERANCE,
    ride_out: bool = False,
) -> ResilientStorage:
    """Open ``url`` (checked already, or checked here) as an Optuna storage, or raise HpoError
    with a sentence the user can act on.

    With a heartbeat interval, trials whose worker stopped beating for ``grace_period`` seconds
    are failed by whichever worker checks next, and re-queued with the same params.

    ``ride_out``: an unreachable database is waited for, up to ``outage_tolerance``, as every
    later call is. For a worker, whose launcher has reached the database already, and for
    hpo stop; a command's own first contact fails at once, since a wrong URL or a server that
    is not running is the user's to fix now.
    """
    location = url if isinstance(url, StorageUrl) else check_storage_url(url,
                                                                          must_exist=must_exist)
    try:
        # Riding out, running out of the tolerance raises DatabaseUnreachable (a worker's
        # database-lost exit), not the first-contact sentence below.
        rdb = call_with_db_retry(_rdb_storage, location, heartbeat_interval, grace_period,
                                 tolerance=outage_tolerance if ride_out else 0.0,
                                 url=location.url if ride_out else None)
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError,
            sqlite3.Error) as error:
        raise HpoError(
            f"Cannot reach the database at '{location.masked}' "
            f"({scrub(database_reason(error), location.url)}): check that the server is running "
            "and that the URL, user and password are right."
        ) from None
    except RuntimeError as error:  # optuna: schema written by an incompatible Optuna version
        raise HpoError(f"The database at '{location.masked}' cannot be used: {error}") from None
    if location.sqlite_path is not None:
        _tune_sqlite_engine(rdb.engine)
        rdb.engine.dispose()  # drop connections opened before the listeners existed
    return ResilientStorage(rdb, url=location.url, outage_tolerance=outage_tolerance)
