"""Opening Optuna's SQL storage: SQLite and PostgreSQL settings, and retries that let a worker
ride out a database that is gone for a few seconds.

Connections: every worker process holds at most two, one for its trial loop and one for its
heartbeat thread (SQLAlchemy sessions are per thread). The launcher itself holds one.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy
import sqlalchemy.exc
import sqlalchemy.orm
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from hpo import _optuna
from hpo.errors import HpoError
from hpo.storage.urls import check_storage_url, mask_url, scrub, sqlite_path

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long a storage call keeps retrying through a database outage before it gives up.
DEFAULT_OUTAGE_TOLERANCE = 120.0
# A trial killed with its worker is retried this many times at most, with the same params.
STALE_TRIAL_MAX_RETRY = 3
SQLITE_BUSY_TIMEOUT = 60.0
# First key of the two-key PostgreSQL advisory lock that serializes "is there room under
# --total? then create the trial" per study (the second key is the study id). "hpo" in hex.
STUDY_LOCK_CLASS = 0x68706F

def _engine_kwargs(url: str) -> dict[str, Any]:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        # isolation_level=None hands transaction control to SQLAlchemy's "begin" event, where
        # we issue BEGIN IMMEDIATE (see _sqlite_begin_immediate).
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT, "isolation_level": None}}
    if backend == "postgresql":
        return {
            # A connection that died with the server is noticed and replaced before use.
            "pool_pre_ping": True,
            # One connection for the trial loop and one for the heartbeat thread.
            "pool_size": 2,
            "max_overflow": 1,
            "connect_args": _postgres_connect_args(make_url(url).get_driver_name()),
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


# Set while a ResilientStorage read method runs in this thread (see _tune_sqlite_engine).
_reading = threading.local()


def _tune_sqlite_engine(engine: sqlalchemy.Engine) -> None:
    """Make SQLite safe and quick for several worker processes.

    A transaction that may write takes the write lock up front (BEGIN IMMEDIATE): a deferred
    transaction that reads and then writes cannot wait for the lock in WAL mode; if another
    process committed in between, SQLite fails at once with "database is locked" instead of
    honouring the busy timeout. Pure reads stay deferred, so in WAL mode they never wait for a
    writer. And synchronous=NORMAL, which WAL makes safe against corruption, skips an fsync
    per commit, which otherwise serializes workers on the disk.
    """

    @sqlalchemy.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin(connection: sqlalchemy.Connection) -> None:
        read_only = getattr(_reading, "active", False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def open_storage(
    url: str,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    must_exist: bool = False,
    outage_tolerance: float = DEFAULT_OUTAGE_TOLERANCE,
) -> ResilientStorage:
    """Open ``url`` as an Optuna storage, or raise HpoError with a sentence the user can act on.

    With a heartbeat interval, trials whose worker stopped beating for ``grace_period`` seconds
    are failed by whichever worker checks next, and re-queued with the same params.
    """
    check_storage_url(url, must_exist=must_exist)
    path = sqlite_path(url)
    try:
        if path is not None:
            _prepare_sqlite(path)
        with warnings.catch_warnings():
            # Heartbeats and the retry callback are marked experimental; they are what we want.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            rdb = RDBStorage(
                url,
                engine_kwargs=_engine_kwargs(url),
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=(
                    RetryHeartbeatStaleTrialCallback(max_retry=STALE_TRIAL_MAX_RETRY)
                    if heartbeat_interval
                    else None
                ),
            )
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError,
            sqlite3.Error) as error:
        raise HpoError(
            f"Cannot reach the database at '{mask_url(url)}' ({scrub(_first_line(error), url)}): "
            "check that the server is running and that the URL, user and password are right."
        ) from None
    except RuntimeError as error:  # optuna: schema written by an incompatible Optuna version
        raise HpoError(f"The database at '{mask_url(url)}' cannot be used: {error}") from None
    if path is not None:
        _tune_sqlite_engine(rdb.engine)
        rdb.engine.dispose()  # drop connections opened before the listeners existed
    return ResilientStorage(rdb, url=url, outage_tolerance=outage_tolerance)


def _first_line(error: BaseException) -> str:
    root: BaseException = error
    while root.__cause__ is not None:
        root = root.__cause__
    if isinstance(root, sqlalchemy.exc.DBAPIError) and root.orig is not None:
        root = root.orig
    text = str(root).strip().splitlines()
    return text[0] if text else type(root).__name__


class DatabaseUnreachable(HpoError):
    """The database stayed unreachable (or kept refusing writes: a full disk) for the whole
    outage tolerance. Not itself retried: it ends the worker, and the launch, with its
    sentence."""


# When the ongoing outage of each database (by URL) began in this process, so that nested and
# successive calls share one clock: "unreachable for 2 minutes" means since the first failure,
# and once that is spent every further call gives up at once instead of waiting 2 more minutes.
_outage_began: dict[str, float] = {}


def _duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} s"


def is_connection_error(error: BaseException) -> bool:
    """True for errors that mean "the database is unreachable or busy right now"."""
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, DatabaseUnreachable):
            return False  # already given up on: retrying it again would double the wait
        if isinstance(current, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            return True
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
    return False


def call_with_db_retry(
    func: Callable[..., T], *args: Any, tolerance: float = DEFAULT_OUTAGE_TOLERANCE,
    url: str | None = None, **kwargs: Any
) -> T:
    """Call ``func``, retrying with backoff while the database is unreachable, up to
    ``tolerance`` seconds. Other errors propagate at once.

    With the database's ``url``, the tolerance counts from the start of the ongoing outage
    (see _outage_began), and running out of it raises :class:`DatabaseUnreachable`, one
    sentence with the masked URL and the reason. With a tolerance of 0 (a transaction retried
    whole by its caller) the error itself propagates."""
    key = url or ""
    deadline = time.monotonic() + tolerance
    delay = 0.25
    warned = False
    while True:
        try:
            result = func(*args, **kwargs)
        except Exception as error:
            if not is_connection_error(error) or tolerance <= 0:
                raise
            now = time.monotonic()
            if url is not None:
                deadline = _outage_began.setdefault(key, now) + tolerance
            if now + delay > deadline:
                if url is None:
                    raise
                raise DatabaseUnreachable(
                    f"The database at '{mask_url(url)}' has been unreachable for "
                    f"{_duration(tolerance)}: {scrub(_first_line(error), url)}; run the command "
                    "again once it is back."
                ) from None
            if not warned:
                log.warning("Database unreachable (%s); retrying for up to %.0f s.",
                            _first_line(error), tolerance)
                warned = True
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        else:
            if url is not None and key in _outage_began:
                _outage_began.pop(key, None)
            return result


@contextlib.contextmanager
def study_lock(storage: ResilientStorage, study_id: int) -> Iterator[None]:
    """Run the block's storage calls in one transaction that holds the study's lock.

    Two workers that each count the study's trials and then create one can both see room for
    the last trial; holding a lock from the count to the creation makes the cap exact. The lock
    lives in the database, so it holds across processes and machines: PostgreSQL's
    transaction-level advisory lock, SQLite's write lock (BEGIN IMMEDIATE, issued by the begin
    listener of _tune_sqlite_engine), SELECT ... FOR UPDATE on the study's row elsewhere.

    Every call inside runs on this one connection (Optuna's sessions become savepoints of this
    transaction), so a worker waiting for the lock holds one connection and the holder needs no
    second one: behind a transaction-pooling PgBouncer, waiters can never starve the holder.
    Inside, storage calls do not retry: a lost connection loses the transaction, so the caller
    retries the whole block (see call_with_db_retry).
    """
    rdb = storage.rdb
    saved_session, saved_tolerance = rdb.scoped_session, storage.outage_tolerance
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
            locked = sqlalchemy.orm.scoped_session(sqlalchemy.orm.sessionmaker(
                bind=connection, join_transaction_mode="create_savepoint"))
            rdb.scoped_session = locked
            storage.outage_tolerance = 0.0
            try:
                yield
            finally:
                rdb.scoped_session = saved_session
                storage.outage_tolerance = saved_tolerance
                locked.remove()
    except BaseException:
        # The transaction rolled back, but Optuna's cache may already hold a trial it created:
        # forget the study's cached trials so the next read comes from the database.
        _optuna.forget_cached_trials(storage, study_id)
        raise


def fail_if_running(storage: ResilientStorage, trial_id: int, attrs: dict[str, Any]) -> bool:
    """Write ``attrs`` (the fail reason) on a trial and mark it FAIL, in one transaction, if it
    is still RUNNING. Returns whether this call failed it: False if it finished meanwhile or
    someone else failed it first, so a trial that completes is never left with a fail reason.

    Like study_lock, the transaction runs on one connection that Optuna's sessions join."""
    rdb = storage.rdb

    def attempt() -> bool:
        saved = rdb.scoped_session
        try:
            with rdb.engine.connect() as connection, connection.begin():
                session = sqlalchemy.orm.scoped_session(sqlalchemy.orm.sessionmaker(
                    bind=connection, join_transaction_mode="create_savepoint"))
                rdb.scoped_session = session
                try:
                    for key, value in attrs.items():
                        rdb.set_trial_user_attr(trial_id, key, value)
                    return bool(rdb.set_trial_state_values(trial_id, TrialState.FAIL))
                finally:
                    rdb.scoped_session = saved
                    session.remove()
        except optuna.exceptions.UpdateFinishedTrialError:
            return False

    return call_with_db_retry(attempt, tolerance=storage.outage_tolerance, url=storage.url)


class ResilientStorage(_optuna.CachedStorage):
    """Optuna's cached RDB storage, with every call retried through short database outages.

    Optuna's own ``optimize()`` lets a dropped connection crash the worker. Retrying here, under
    the study, covers everything that touches the database: ask, suggest, report, should_prune,
    tell and the heartbeat.
    """

    def __init__(self, backend: RDBStorage, *, url: str, outage_tolerance: float) -> None:
        super().__init__(backend)
        self.url = url
        self.outage_tolerance = outage_tolerance

    @property
    def rdb(self) -> RDBStorage:
        return _optuna.backend_of(self)

    def running_trials(self, study_id: int) -> list[_optuna.RunningTrial]:
        """The study's RUNNING trials with the age of their last heartbeat (retried like every
        read; see hpo.run.stale)."""
        return _optuna.running_trials(self.rdb, study_id)


def _retrying(method: Callable[..., T], *, reads_only: bool) -> Callable[..., T]:
    @functools.wraps(method)
    def wrapper(self: ResilientStorage, *args: Any, **kwargs: Any) -> T:
        if not reads_only or getattr(_reading, "active", False):
            return call_with_db_retry(method, self, *args, tolerance=self.outage_tolerance,
                                      url=self.url, **kwargs)
        _reading.active = True
        try:
            return call_with_db_retry(method, self, *args, tolerance=self.outage_tolerance,
                                      url=self.url, **kwargs)
        finally:
            _reading.active = False

    return wrapper


_READS = (
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
    "get_study_user_attrs", "get_study_system_attrs", "get_all_studies",
    "get_trial_id_from_study_id_trial_number", "get_best_trial", "get_trial", "get_all_trials",
)
_WRITES = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "create_new_trial", "set_trial_param", "set_trial_state_values",
    "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
    "record_heartbeat",
)
for _name in _READS + _WRITES:
    setattr(ResilientStorage, _name,
            _retrying(getattr(_optuna.CachedStorage, _name), reads_only=_name in _READS))
ResilientStorage.running_trials = _retrying(  # type: ignore[method-assign]
    ResilientStorage.running_trials, reads_only=True)
