"""The few places where hpo reaches into Optuna's private internals, and why.

Everything else uses Optuna's public API. Each helper below says why there is no public route,
so that an Optuna upgrade that breaks one of them breaks it here, in one file, with the reason
next to it. The tests in tests/test_optuna_internals.py pin each behaviour on the installed
Optuna.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    import sqlalchemy
    from optuna.storages import BaseStorage, RDBStorage, _CachedStorage
    from optuna.storages import _CachedStorage as CachedStorage  # noqa: F401  (typed here)


def __getattr__(name: str) -> Any:
    # Optuna wraps every RDBStorage in this cache when a study opens it by URL. hpo subclasses
    # it (hpo.storage.retry.ResilientStorage) so that its retries sit under the cache, as
    # Optuna's own storage does; there is no public base class for a caching storage. Imported
    # on first use, so that the read-only commands, which use the SQL below, never import optuna.
    if name == "CachedStorage":
        from optuna.storages import _CachedStorage

        return _CachedStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# optuna.artifacts records a study-level artifact as a study system attribute under this prefix,
# and optuna-dashboard's delete button overwrites it with JSON null. There is no public call to
# remove an artifact's record, so evicting a checkpoint writes the same value. (Checkpoints
# saved before hpo attached them to their trial were recorded this way.)
ARTIFACT_ATTR_PREFIX = "artifacts:"


def trial_artifact_key(trial_id: int, artifact_id: str) -> str:
    """The study system attribute under which optuna-dashboard lists an artifact on the page
    of the trial ``trial_id`` (its own uploads' record).

    optuna.artifacts' public route for a trial's artifact writes a *trial* system attribute,
    which can no longer change once the trial has finished, so a checkpoint evicted later
    would stay listed with its file gone. This record is on the study, so eviction can clear
    it (JSON null, as the dashboard's delete button does), and the dashboard still shows it
    on the trial's page."""
    return f"dashboard:artifacts:{trial_id}:{artifact_id}"


# optuna-dashboard keeps a study's note (Markdown) as study system attributes: a version number,
# and the text in chunks of at most this many characters. Its public save_note() would need
# optuna_dashboard imported in every worker, which pulls in scikit-learn (3 s a process); hpo
# writes the same attributes with the storage it already holds.
NOTE_VERSION_KEY = "dashboard:note_ver"
NOTE_CHUNK_PREFIX = "dashboard:note_str:"
NOTE_CHUNK_LENGTH = 2045


def read_study_note(system_attrs: dict[str, Any]) -> tuple[int, str]:
    """The study note's version and text (0 and "" if it has none)."""
    chunks = {key: value for key, value in system_attrs.items()
              if key.startswith(NOTE_CHUNK_PREFIX)}
    text = "".join(str(chunks.get(f"{NOTE_CHUNK_PREFIX}{i}", "")) for i in range(len(chunks)))
    version = system_attrs.get(NOTE_VERSION_KEY, 0)
    return (version if isinstance(version, int) else 0), text


def write_study_note(storage: BaseStorage, study_id: int, text: str) -> None:
    """Replace the study note with ``text``, one version up, as the dashboard's editor does."""
    attrs = storage.get_study_system_attrs(study_id)
    version, _ = read_study_note(attrs)
    old_chunks = sum(key.startswith(NOTE_CHUNK_PREFIX) for key in attrs)
    chunks = [text[i:i + NOTE_CHUNK_LENGTH] for i in range(0, len(text), NOTE_CHUNK_LENGTH)]
    storage.set_study_system_attr(study_id, NOTE_VERSION_KEY, version + 1)
    for i, chunk in enumerate(chunks):
        storage.set_study_system_attr(study_id, f"{NOTE_CHUNK_PREFIX}{i}", chunk)
    # Chunks of a longer earlier note are emptied: the dashboard joins every chunk it finds.
    for i in range(len(chunks), old_chunks):
        storage.set_study_system_attr(study_id, f"{NOTE_CHUNK_PREFIX}{i}", "")


def backend_of(storage: _CachedStorage) -> RDBStorage:
    """The RDBStorage inside a cached storage: heartbeats and locks need the uncached one, and
    the cache keeps it in a private attribute."""
    return storage._backend


def forget_cached_trials(storage: _CachedStorage, study_id: int) -> None:
    """Drop the cache's copy of a study's trials, so the next read comes from the database.

    Needed after a transaction that created a trial rolls back: the cache already holds the
    trial, and has no public way to invalidate it."""
    with storage._lock:
        storage._studies.pop(study_id, None)


def storage_of(study: optuna.Study) -> BaseStorage:
    """The study's storage. Optuna keeps it private, but study-level system attributes (where
    checkpoints are recorded) can only be written through it."""
    return study._storage


def study_id_of(study: optuna.Study) -> int:
    """The study's id in storage: every storage call takes it, and Study exposes no public one."""
    return study._study_id


def trial_id_of(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """The trial's id in storage (not its number): storage calls such as record_heartbeat and
    set_trial_state_values take it, and neither Trial nor FrozenTrial exposes a public one."""
    return trial._trial_id


@contextlib.contextmanager
def calls_on(rdb: RDBStorage, connection: sqlalchemy.Connection) -> Iterator[None]:
    """Run the storage's calls inside the block on ``connection``, within its transaction.

    RDBStorage opens a session per call from its ``scoped_session`` attribute, and no public
    call lets a caller bind those sessions to a transaction of its own. hpo swaps in sessions
    that join ``connection``'s transaction as savepoints, so several calls commit or roll back
    together (hpo.storage.transactions)."""
    import sqlalchemy.orm

    saved = rdb.scoped_session
    sessions = sqlalchemy.orm.scoped_session(sqlalchemy.orm.sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint"))
    rdb.scoped_session = sessions
    try:
        yield
    finally:
        rdb.scoped_session = saved
        sessions.remove()


def grid_points_tried(trials: Iterable[optuna.trial.FrozenTrial]) -> set[int]:
    """The grid points (GridSampler's indices) that ``trials`` finished. GridSampler records
    each trial's point as the system attribute "grid_id", and says only whether every point
    was tried (is_exhausted), not how many are left, which a launch's budget needs."""
    return {t.system_attrs["grid_id"] for t in trials
            if "grid_id" in t.system_attrs and t.state.is_finished()}


def enter_optimize_loop(study: optuna.Study) -> None:
    """Tell Optuna that this thread runs its own optimize loop (hpo's worker is one).

    Without it, GridSampler's study.stop() at the end of the grid raises, and ask() warns that
    heartbeats need optimize(). Study.optimize sets the same flag; ask-and-tell has no public
    switch for it."""
    thread_local: Any = study._thread_local
    thread_local.in_optimize_loop = True


# -- Optuna's RDB schema, read directly (hpo.storage.snapshot) ------------------------------
# Opening a study through RDBStorage costs about 3 s (SQLAlchemy, Alembic, schema checks), so the
# read-only commands read these tables with the database driver instead. The layout is Optuna's
# own (optuna/storages/_rdb/models.py, schema v12 in Optuna 5); a query that fails on another
# layout makes the snapshot fall back to RDBStorage. "?" is the parameter placeholder.
SQL_STUDY_NAMES = "SELECT study_name FROM studies ORDER BY study_id"
SQL_STUDY_ID = "SELECT study_id FROM studies WHERE study_name = ?"
SQL_STUDY_DIRECTIONS = ("SELECT direction FROM study_directions WHERE study_id = ? "
                        "ORDER BY objective")
SQL_STUDY_USER_ATTRS = ("SELECT key, value_json FROM study_user_attributes WHERE study_id = ? "
                        "ORDER BY study_user_attribute_id")
SQL_TRIALS = ("SELECT trial_id, number, state, datetime_start, datetime_complete FROM trials "
              "WHERE study_id = ?")
SQL_TRIAL_VALUES = ("SELECT v.trial_id, v.value, v.value_type FROM trial_values v JOIN trials t "
                    "ON t.trial_id = v.trial_id WHERE t.study_id = ? AND v.objective = 0")
SQL_INTERMEDIATE_VALUES = (
    "SELECT v.trial_id, v.step, v.intermediate_value, v.intermediate_value_type "
    "FROM trial_intermediate_values v JOIN trials t ON t.trial_id = v.trial_id "
    "WHERE t.study_id = ? ORDER BY v.step")
SQL_TRIAL_PARAMS = ("SELECT p.trial_id, p.param_name, p.param_value, p.distribution_json "
                    "FROM trial_params p JOIN trials t ON t.trial_id = p.trial_id "
                    "WHERE t.study_id = ? ORDER BY p.param_id")
SQL_TRIAL_USER_ATTRS = ("SELECT a.trial_id, a.key, a.value_json FROM trial_user_attributes a "
                        "JOIN trials t ON t.trial_id = a.trial_id WHERE t.study_id = ? "
                        "ORDER BY a.trial_user_attribute_id")


@dataclass(frozen=True)
class RunningTrial:
    trial_id: int
    number: int
    started_utc: datetime.datetime | None  # naive UTC, from the clock of the client that made it
    heartbeat_age: float | None  # seconds since its last heartbeat (database clock); None: never
    heartbeat: datetime.datetime | None  # the last heartbeat itself, to tell a live one apart


def running_trials(rdb: RDBStorage, study_id: int) -> list[RunningTrial]:
    """A study's RUNNING trials, each with its last heartbeat.

    Optuna's stale check (RDBStorage._get_stale_trial_ids) skips a trial that never sent a
    heartbeat, so a trial whose worker died inside ask() stays RUNNING for ever; and it says
    neither how old a heartbeat is nor whether it still moves, which a launch needs before it
    returns. Heartbeats live in Optuna's trial_heartbeats table, which no public call reads, so
    this reads it through Optuna's own models, on the database's clock as Optuna does."""
    import sqlalchemy
    from optuna.storages._rdb import models
    from optuna.trial import TrialState

    session = rdb.scoped_session()
    try:
        now = session.execute(sqlalchemy.func.now()).scalar()
        now = now.replace(tzinfo=None) if now is not None else None
        rows = (
            # Optuna 5 stores datetime_start as naive UTC behind a private column attribute.
            session.query(models.TrialModel.trial_id, models.TrialModel.number,
                          models.TrialModel._datetime_start_utc,
                          models.TrialHeartbeatModel.heartbeat)
            .outerjoin(models.TrialHeartbeatModel,
                       models.TrialHeartbeatModel.trial_id == models.TrialModel.trial_id)
            .filter(models.TrialModel.study_id == study_id)
            .filter(models.TrialModel.state == TrialState.RUNNING)
            .all()
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
    result = []
    for trial_id, number, started, beat in rows:
        beat = beat.replace(tzinfo=None) if beat is not None else None
        age = (now - beat).total_seconds() if beat is not None and now is not None else None
        result.append(RunningTrial(trial_id, number, started, age, beat))
    return result
