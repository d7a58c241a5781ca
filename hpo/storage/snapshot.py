"""A read-only snapshot of a study, read straight from Optuna's tables, for the commands that
only read (status, best, trials, export).

Opening a study through Optuna's RDBStorage imports SQLAlchemy and Alembic and checks the
schema: about 3 s on a 2-core machine, for a command that should answer in under one. This
module reads the same tables with the database driver alone (sqlite3, or psycopg for
PostgreSQL) into small objects with the attributes hpo.results.summary reads from Optuna's
Study and FrozenTrial. The table layout is Optuna's (see hpo/_optuna.py), so any query error
falls back to Optuna itself: :func:`load` returns None and the caller opens the study the slow
way. Nothing here imports optuna, SQLAlchemy or torch.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hpo import _optuna, plain
from hpo.errors import HpoError, first_line
from hpo.storage.urls import folder_database, mask_url, missing_database, sqlite_path


@dataclass(frozen=True)
class Stored:
    """A trial state or a study direction by the name Optuna's tables store for it, the name
    of its enum member ("COMPLETE", "MAXIMIZE"): what hpo.results.summary compares."""

    name: str

    def is_finished(self) -> bool:
        return self.name in ("COMPLETE", "PRUNED", "FAIL")


@dataclass
class StoredTrial:
    number: int
    state: Stored
    value: float | None
    datetime_start: datetime | None
    datetime_complete: datetime | None
    params: dict[str, Any] = field(default_factory=dict)
    user_attrs: dict[str, Any] = field(default_factory=dict)
    intermediate_values: dict[int, float] = field(default_factory=dict)

    @property
    def duration(self) -> timedelta | None:
        if self.datetime_start is None or self.datetime_complete is None:
            return None
        return self.datetime_complete - self.datetime_start

    @property
    def last_step(self) -> int | None:
        return max(self.intermediate_values) if self.intermediate_values else None


@dataclass
class StoredStudy:
    study_name: str
    direction: Stored
    user_attrs: dict[str, Any]
    trials: list[StoredTrial]

    def get_trials(self, deepcopy: bool = False,
                   states: Iterable[Any] | None = None) -> list[StoredTrial]:
        if states is None:
            return list(self.trials)
        wanted = {state.name for state in states}
        return [t for t in self.trials if t.state.name in wanted]


# How long a read command waits for a SQLite database another process holds locked, in all, and
# how long each attempt waits.
LOCK_WAIT = 30.0
LOCK_POLL = 1.0
_gave_up = False  # this process already waited LOCK_WAIT for a locked database


class Snapshot:
    """One connection to the storage, for reading its studies."""

    def __init__(self, connection: Any, url: str) -> None:
        self.connection = connection
        self.url = url
        self.placeholder = "?" if isinstance(connection, sqlite3.Connection) else "%s"

    def close(self) -> None:
        self.connection.close()

    def _rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        waited_since = None
        while True:
            try:
                cursor = self.connection.cursor()
                cursor.execute(sql.replace("?", self.placeholder), args)
                rows = cursor.fetchall()
                cursor.close()
                return rows
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) and "busy" not in str(error):
                    raise
                waited_since = self._wait_for_lock(waited_since)

    def _wait_for_lock(self, since: float | None) -> float:
        """A SQLite database another process holds locked (an exclusive lock, or a write in
        progress without WAL): say so once, and give up in one sentence after LOCK_WAIT
        seconds, rather than wait silently for minutes. Returns when the waiting began."""
        global _gave_up
        now = time.monotonic()
        if _gave_up or (since is not None and now - since >= LOCK_WAIT):
            # Once: the full CLI reads again after the fast path gives up, and must not wait
            # all over again.
            _gave_up = True
            raise HpoError(f"The database {mask_url(self.url)} stayed locked by another process "
                           f"for {LOCK_WAIT:.0f} s: try again once it is free (a process holding "
                           "an exclusive lock, such as a sqlite3 shell inside a transaction, "
                           "must end it).")
        if since is None:
            plain.say(f"Waiting for {mask_url(self.url)}: another process holds the database "
                      f"locked (giving up after {LOCK_WAIT:.0f} s)...", err=True)
            since = now
        time.sleep(LOCK_POLL)
        return since

    def study_names(self) -> list[str]:
        return [name for (name,) in self._rows(_optuna.SQL_STUDY_NAMES)]

    def load(self, name: str) -> StoredStudy | None:
        """The study ``name``, or None if there is none; HpoError, in one sentence, if a row of
        it cannot be read (written outside Optuna: invalid JSON, a date or a value that is
        none)."""
        try:
            return self._load(name)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
            raise HpoError(f"Study '{name}' in {mask_url(self.url)} holds a row that hpo cannot "
                           f"read ({first_line(error, typed=True, limit=120)}): it was changed "
                           "outside hpo and Optuna; restore the database from a backup, or "
                           "repair that row.") from None

    def _load(self, name: str) -> StoredStudy | None:
        found = self._rows(_optuna.SQL_STUDY_ID, name)
        if not found:
            return None
        study_id = found[0][0]
        directions = [d for (d,) in self._rows(_optuna.SQL_STUDY_DIRECTIONS, study_id)]
        user_attrs = {key: json.loads(value)
                      for key, value in self._rows(_optuna.SQL_STUDY_USER_ATTRS, study_id)}
        trials: dict[int, StoredTrial] = {}
        for trial_id, number, state, start, complete in self._rows(_optuna.SQL_TRIALS,
                                                                   study_id):
            trials[trial_id] = StoredTrial(number, Stored(state), None, _moment(start),
                                           _moment(complete))
        for trial_id, value, kind in self._rows(_optuna.SQL_TRIAL_VALUES, study_id):
            trials[trial_id].value = _number(value, kind)
        for trial_id, step, value, kind in self._rows(_optuna.SQL_INTERMEDIATE_VALUES,
                                                      study_id):
            trials[trial_id].intermediate_values[int(step)] = _number(value, kind)
        for trial_id, param, value, distribution in self._rows(_optuna.SQL_TRIAL_PARAMS,
                                                               study_id):
            trials[trial_id].params[param] = _external(value, json.loads(distribution))
        for trial_id, key, value in self._rows(_optuna.SQL_TRIAL_USER_ATTRS, study_id):
            trials[trial_id].user_attrs[key] = json.loads(value)
        direction = Stored(directions[0] if directions else "NOT_SET")
        ordered = sorted(trials.values(), key=lambda t: t.number)
        return StoredStudy(name, direction, user_attrs, ordered)


def open_snapshot(url: str) -> Snapshot | None:
    """A snapshot of the storage at ``url``, or None where only Optuna can read it (another
    database, a driver that is missing). HpoError if a SQLite file does not exist."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket: the full check says so in a sentence
        return None
    scheme = parts.scheme.split("+")[0]
    if scheme == "sqlite":
        path = sqlite_path(url)
        if path is None or str(path) == ":memory:":
            return None
        if not path.exists():
            raise missing_database(path)
        if path.is_dir():
            raise folder_database(path)
        # Read-only, so a reader can never create or change the file.
        # A short busy timeout per attempt: Snapshot._rows says that it waits, and for how long.
        connection = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True,
                                     timeout=LOCK_POLL)
        try:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as error:
            # A database in WAL mode whose folder this reader cannot write (a read-only mount)
            # cannot be opened even read-only: SQLite must create its shared-memory file.
            # Opened as immutable, it is read without one; nothing can write it here anyway.
            # A locked database is not that case: Snapshot._rows waits for it, aloud.
            if "locked" not in str(error).lower():
                connection.close()
                connection = sqlite3.connect(f"file:{path.resolve()}?mode=ro&immutable=1",
                                             uri=True, timeout=LOCK_POLL)
        return Snapshot(connection, url)
    if scheme == "postgresql" and parts.scheme in ("postgresql", "postgresql+psycopg"):
        try:
            import psycopg
        except ImportError:
            return None
        conninfo = url.replace(parts.scheme + "://", "postgresql://", 1)
        try:
            return Snapshot(psycopg.connect(conninfo, connect_timeout=10, autocommit=True),
                            url)
        except psycopg.Error:
            return None  # Optuna's path says why, with its own retries and messages
    return None


def _moment(stored: Any) -> datetime | None:
    if stored is None or isinstance(stored, datetime):
        return stored
    return datetime.fromisoformat(str(stored))


def _number(value: float | None, kind: str) -> float:
    if kind == "INF_POS":
        return math.inf
    if kind == "INF_NEG":
        return -math.inf
    if kind == "NAN" or value is None:
        return math.nan
    return float(value)


def _external(value: float, distribution: dict[str, Any]) -> Any:
    """A param as the objective saw it: Optuna stores categorical choices by index and ints as
    floats."""
    kind = distribution.get("name", "")
    attributes = distribution.get("attributes", {})
    if kind == "CategoricalDistribution":
        choices: Sequence[Any] = attributes["choices"]
        return choices[int(value)]
    if kind in ("IntDistribution", "IntUniformDistribution", "IntLogUniformDistribution"):
        return int(value)
    return float(value)


def no_such_study(name: str, known: Sequence[str], where: str) -> HpoError:
    """The sentence for a study name that storage does not hold."""
    return HpoError(f"There is no study named '{name}' in {where} (studies there: "
                    f"{', '.join(known) or 'none yet'}): check the name, point --storage (or "
                    "HPO_STORAGE) at the storage that holds it, or start it with 'hpo launch'.")
