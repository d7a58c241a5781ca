"""``hpo stop``: a mark on the study that every worker, on every machine, reads and obeys.

The mark is a study user attribute (hpo.storage.attributes.STOP_ATTR) rather than a table of
hpo's own: Optuna's schema needs no change (a table would need a migration of its own and be
invisible to Optuna's tools), the read commands' fast path already reads study attributes
(hpo.storage.snapshot), optuna-dashboard shows it, and it goes when the study is deleted.

Workers read it before each trial (Worker._why_done) and from their heartbeat thread once per
heartbeat interval, so a worker mid-trial sees it within one interval: a plain stop lets the
trial finish, ``--now`` interrupts it (FAIL "stopped", queued again with its resume point). The
next ``hpo launch`` or ``hpo worker`` on the study clears the mark (:func:`clear`).
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
import sqlite3
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hpo.errors import HpoError
from hpo.storage.attributes import STOP_ATTR, describe_stop, stop_mark

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)


def who() -> str:
    """user@host of this process, for the record of who stopped a study."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's uid without a passwd entry
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def _new_mark(now: bool) -> dict[str, Any]:
    return {"by": who(), "at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), "now": now}


def _may_mark(current: dict[str, Any] | None, now: bool) -> bool:
    """A study runs freely, or a plain stop is made a ``--now`` one; any other stop is refused."""
    return current is None or (now and not current.get("now"))


def mark_stopped(storage_url: str, name: str, *, now: bool, outage_tolerance: float
                 ) -> dict[str, Any]:
    """Mark the stored study ``name`` stopped; returns the mark. A plain stop may be made a
    ``--now`` stop; anything else on a stopped study is refused."""
    from hpo import _optuna
    from hpo.storage import records
    from hpo.storage.engine import open_storage

    # Ridden out like a worker's calls: a stop given during a database restart still lands.
    storage = open_storage(storage_url, must_exist=True, outage_tolerance=outage_tolerance,
                           ride_out=True)
    study = records.load(storage, name)
    study_id = _optuna.study_id_of(study)
    current = stop_mark(storage.get_study_user_attrs(study_id))
    if current is not None and not _may_mark(current, now):
        raise HpoError(f"Study '{name}' is already {describe_stop(current)}: its workers end on "
                       "their own, and 'hpo launch' or 'hpo worker' on it clears the mark.")
    mark = _new_mark(now)
    storage.set_study_user_attr(study_id, STOP_ATTR, mark)
    return mark


def mark_stopped_directly(storage_url: str, name: str, *, now: bool) -> dict[str, Any] | None:
    """The same mark, written as one row of Optuna's study_user_attributes table (the value as
    Optuna stores it: JSON), without importing Optuna or SQLAlchemy: on a machine whose cores
    are busy training, those imports take seconds, and a stop is wanted now.

    SQLite and PostgreSQL only. Returns None, having written nothing, wherever this is not the
    plain case (another database, no such study, a mark already there, a database that does
    not answer at once, an unexpected schema): :func:`mark_stopped` then does it, with its
    retries and its sentences."""
    try:
        parts = urlsplit(storage_url)
    except ValueError:
        return None
    if parts.scheme == "sqlite":
        from hpo.storage.urls import sqlite_path

        path = sqlite_path(storage_url)
        if path is None or str(path) == ":memory:" or not path.is_file():
            return None
        try:
            connection: Any = sqlite3.connect(path, timeout=5, isolation_level=None)
            connection.execute("BEGIN IMMEDIATE")  # the read and the write, one transaction
        except sqlite3.Error:
            return None
        placeholder = "?"
        # ValueError too: a stored value that is not JSON.
        errors: tuple[type[Exception], ...] = (sqlite3.Error, ValueError)
        commit = lambda: connection.execute("COMMIT")  # noqa: E731
    elif parts.scheme in ("postgresql", "postgresql+psycopg"):
        try:
            import psycopg
        except ImportError:
            return None
        try:
            connection = psycopg.connect(
                storage_url.replace(parts.scheme + "://", "postgresql://", 1), connect_timeout=5)
        except psycopg.Error:
            return None
        placeholder, errors = "%s", (psycopg.Error, ValueError)
        commit = connection.commit
    else:
        return None

    def query(sql: str, *args: Any) -> Any:
        return connection.execute(sql.replace("?", placeholder), args)

    try:
        row = query("SELECT study_id FROM studies WHERE study_name = ?", name).fetchone()
        if row is None:
            return None
        study_id = row[0]
        row = query("SELECT value_json FROM study_user_attributes WHERE study_id = ? AND "
                    '"key" = ?', study_id, STOP_ATTR).fetchone()
        current = stop_mark({STOP_ATTR: json.loads(row[0])}) if row else None
        if not _may_mark(current, now):
            return None
        mark = _new_mark(now)
        if row:
            query('UPDATE study_user_attributes SET value_json = ? WHERE study_id = ? AND '
                  '"key" = ?', json.dumps(mark), study_id, STOP_ATTR)
        else:
            query('INSERT INTO study_user_attributes (study_id, "key", value_json) '
                  "VALUES (?, ?, ?)", study_id, STOP_ATTR, json.dumps(mark))
        commit()
        return mark
    except errors:
        return None
    finally:
        connection.close()  # without COMMIT, nothing was written


def clear(study: optuna.Study) -> dict[str, Any] | None:
    """Clear the study's stop mark, if it has one, and say so in one line; returns it."""
    from hpo import _optuna

    storage = _optuna.storage_of(study)
    study_id = _optuna.study_id_of(study)
    mark = stop_mark(storage.get_study_user_attrs(study_id))
    if mark is not None:
        storage.set_study_user_attr(study_id, STOP_ATTR, None)
        log.warning("Study %s was %s; this launch clears the mark and goes on.",
                    study.study_name, describe_stop(mark))
    return mark
