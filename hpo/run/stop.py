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
import logging
import os
import socket
from datetime import UTC, datetime
from typing import Any

import optuna

from hpo import _optuna
from hpo.errors import HpoError
from hpo.storage import records
from hpo.storage.attributes import STOP_ATTR, describe_stop, stop_mark
from hpo.storage.engine import open_storage

log = logging.getLogger(__name__)


def who() -> str:
    """user@host of this process, for the record of who stopped a study."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's uid without a passwd entry
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def mark_stopped(storage_url: str, name: str, *, now: bool, outage_tolerance: float
                 ) -> dict[str, Any]:
    """Mark the stored study ``name`` stopped; returns the mark. A plain stop may be made a
    ``--now`` stop; anything else on a stopped study is refused."""
    # Ridden out like a worker's calls: a stop given during a database restart still lands.
    storage = open_storage(storage_url, must_exist=True, outage_tolerance=outage_tolerance,
                           ride_out=True)
    study = records.load(storage, name)
    study_id = _optuna.study_id_of(study)
    current = stop_mark(storage.get_study_user_attrs(study_id))
    if current is not None and (current.get("now") or not now):
        raise HpoError(f"Study '{name}' is already {describe_stop(current)}: its workers end on "
                       "their own, and 'hpo launch' or 'hpo worker' on it clears the mark.")
    mark = {"by": who(), "at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "now": now}
    storage.set_study_user_attr(study_id, STOP_ATTR, mark)
    return mark


def clear(study: optuna.Study) -> dict[str, Any] | None:
    """Clear the study's stop mark, if it has one, and say so in one line; returns it."""
    storage = _optuna.storage_of(study)
    study_id = _optuna.study_id_of(study)
    mark = stop_mark(storage.get_study_user_attrs(study_id))
    if mark is not None:
        storage.set_study_user_attr(study_id, STOP_ATTR, None)
        log.warning("Study %s was %s; this launch clears the mark and goes on.",
                    study.study_name, describe_stop(mark))
    return mark
