"""Riding out a database outage: storage calls that retry while the database is unreachable,
on one outage clock per database, and the storage every hpo process uses.

A worker that loses its database for a few seconds (a restart, a failover) carries on; one
that loses it for the outage tolerance (``HPO_OUTAGE_TOLERANCE``) gives up with one sentence,
:class:`DatabaseUnreachable`, which ends the launch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Container, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy.exc

from hpo import _optuna, settings
from hpo.errors import HpoError, first_line
from hpo.storage.urls import mask_url, scrub

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.storages import RDBStorage
    from optuna.study import StudyDirection
    from optuna.study._frozen import FrozenStudy
    from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger(__name__)

T = TypeVar("T")


class DatabaseUnreachable(HpoError):
    """The database stayed unreachable (or kept refusing writes: a full disk) for the whole
    outage tolerance. Not itself retried: it ends the worker, and the launch, with its
    sentence."""


def database_reason(error: BaseException) -> str:
    """The first line of what the database driver said, under SQLAlchemy's and Optuna's
    wrappers."""
    root: BaseException = error
    while root.__cause__ is not None:
        root = root.__cause__
    if isinstance(root, sqlalchemy.exc.DBAPIError) and root.orig is not None:
        root = root.orig
    return first_line(root)


# SQLSTATE classes that waiting cannot fix: a wrong password or user (28), a database that
# does not exist (3D). Retrying them for the whole tolerance would only delay the sentence.
_PERMANENT_SQLSTATES = ("28", "3D")


def is_connection_error(error: BaseException) -> bool:
    """True for errors that mean "the database is unreachable or busy right now"."""
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, DatabaseUnreachable):
            return False  # already given up on: retrying it again would double the wait
        sqlstate = getattr(getattr(current, "orig", None), "sqlstate", None) \
            or getattr(current, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_PERMANENT_SQLSTATES):
            return False
        if isinstance(current, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            return True
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
    return False


# When the ongoing outage of each database (by URL) began in this process, so that nested and
# successive calls share one clock: "unreachable for 2 minutes" means since the first failure,
# and once that is spent every further call gives up at once instead of waiting 2 more minutes.
_outage_began: dict[str, float] = {}


def _duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} s"


def call_with_db_retry(
    func: Callable[..., T], *args: Any, tolerance: float = settings.DEFAULT_OUTAGE_TOLERANCE,
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
                    f"{_duration(tolerance)}: {scrub(database_reason(error), url)}; run the "
                    "command again once it is back."
                ) from None
            if not warned:
                log.warning("Database unreachable (%s); retrying for up to %.0f s.",
                            database_reason(error), tolerance)
                warned = True
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        else:
            if url is not None and key in _outage_began:
                _outage_began.pop(key, None)
            return result


# Set while a ResilientStorage read runs in this thread: hpo.storage.engine then begins the
# SQLite transaction without taking the write lock.
_reading = threading.local()


def reading() -> bool:
    return getattr(_reading, "active", False)


class ResilientStorage(_optuna.CachedStorage):
    """Optuna's cached RDB storage, with every call retried through short database outages.

    Optuna's own ``optimize()`` lets a dropped connection crash the worker. Retrying here, under
    the study, covers everything that touches the database: ask, suggest, report, should_prune,
    tell and the heartbeat. Reads are marked as such (see :func:`reading`).
    """

    def __init__(self, backend: RDBStorage, *, url: str, outage_tolerance: float) -> None:
        super().__init__(backend)
        self.url = url
        self.outage_tolerance = outage_tolerance

    @property
    def rdb(self) -> RDBStorage:
        return _optuna.backend_of(self)

    def _write(self, method: Callable[..., T], *args: Any) -> T:
        return call_with_db_retry(method, *args, tolerance=self.outage_tolerance, url=self.url)

    def _read(self, method: Callable[..., T], *args: Any) -> T:
        if reading():
            return self._write(method, *args)
        _reading.active = True
        try:
            return self._write(method, *args)
        finally:
            _reading.active = False

    # -- reads ------------------------------------------------------------------------------

    def running_trials(self, study_id: int) -> list[_optuna.RunningTrial]:
        """The study's RUNNING trials with the age of their last heartbeat (see
        hpo.run.stale)."""
        return self._read(_optuna.running_trials, self.rdb, study_id)

    def get_study_id_from_name(self, study_name: str) -> int:
        return self._read(super().get_study_id_from_name, study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._read(super().get_study_name_from_id, study_id)

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self._read(super().get_study_directions, study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._read(super().get_study_user_attrs, study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._read(super().get_study_system_attrs, study_id)

    def get_all_studies(self) -> list[FrozenStudy]:
        return self._read(super().get_all_studies)

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return self._read(super().get_trial_id_from_study_id_trial_number, study_id,
                          trial_number)

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        return self._read(super().get_best_trial, study_id)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self._read(super().get_trial, trial_id)

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return self._read(super().get_all_trials, study_id, deepcopy, states)

    # -- writes -----------------------------------------------------------------------------

    def create_new_study(self, directions: Sequence[StudyDirection],
                         study_name: str | None = None) -> int:
        return self._write(super().create_new_study, directions, study_name)

    def delete_study(self, study_id: int) -> None:
        self._write(super().delete_study, study_id)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._write(super().set_study_user_attr, study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._write(super().set_study_system_attr, study_id, key, value)

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        return self._write(super().create_new_trial, study_id, template_trial)

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: BaseDistribution) -> None:
        self._write(super().set_trial_param, trial_id, param_name, param_value_internal,
                    distribution)

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        return self._write(super().set_trial_state_values, trial_id, state, values)

    def set_trial_intermediate_value(self, trial_id: int, step: int,
                                     intermediate_value: float) -> None:
        self._write(super().set_trial_intermediate_value, trial_id, step, intermediate_value)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._write(super().set_trial_user_attr, trial_id, key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._write(super().set_trial_system_attr, trial_id, key, value)

    def record_heartbeat(self, trial_id: int) -> None:
        self._write(super().record_heartbeat, trial_id)
