"""Trials left RUNNING by a worker that is gone: finding them, failing them with a reason, and
queuing them again with the same params.

A RUNNING trial is stale when its last heartbeat is older than the grace period (Optuna's
rule), or when it never sent one and started longer ago than the grace period: its worker died
inside ``study.ask()``, after the trial's row existed, and Optuna's own check skips such a trial
for ever. Workers run :func:`fail_stale_trials` before each trial; a launch runs
:func:`settle_running_trials` before it returns, so it never leaves a dead trial RUNNING.
"""

from __future__ import annotations

import copy
import datetime
import logging
import time
import warnings

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback

from hpo import _optuna
from hpo.storage.attributes import (
    FAIL_REASON_ATTR,
    LOST_REASON,
    PRUNED_REASON_ATTR,
)
from hpo.storage.engine import STALE_TRIAL_MAX_RETRY
from hpo.storage.retry import ResilientStorage
from hpo.storage.transactions import fail_if_running

log = logging.getLogger(__name__)


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def stale_reason(trial: _optuna.RunningTrial, grace: float,
                 now: datetime.datetime | None = None) -> str | None:
    """Why ``trial`` is stale (its fail_reason), or None while it may still be alive. ``now`` is
    naive UTC, as Optuna records a trial's start."""
    if trial.heartbeat_age is not None:
        if trial.heartbeat_age > grace:
            return f"{LOST_REASON}: no heartbeat for {trial.heartbeat_age:.0f} s"
        return None
    if trial.started_utc is None:
        return None
    age = ((now or _utcnow()) - trial.started_utc).total_seconds()
    if age > grace:
        return (f"{LOST_REASON}: it sent no heartbeat in the {age:.0f} s since it started "
                "(its worker died as it began)")
    return None


def fail_and_retry(storage: ResilientStorage, study: optuna.Study, trial_id: int, reason: str,
                   *, retry: bool = True) -> bool:
    """Fail a RUNNING trial whose worker is gone, with ``reason`` as its fail_reason, and queue
    it again with the same params. Returns False, doing nothing, if it is no longer RUNNING.

    The retry is a copy of the trial's user attributes (Optuna's retry callback), less the
    reason, so a retry that completes does not read "worker lost"."""
    if not fail_if_running(storage, trial_id, {FAIL_REASON_ATTR: reason}):
        return False
    frozen = storage.get_trial(trial_id)
    callback = storage.get_heartbeat_stale_trial_callback()
    queued = False
    if retry and callback is not None:
        clean = copy.deepcopy(frozen)
        for attr in (FAIL_REASON_ATTR, PRUNED_REASON_ATTR):
            clean.user_attrs.pop(attr, None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            queued = len(RetryHeartbeatStaleTrialCallback.retry_history(frozen)) \
                < STALE_TRIAL_MAX_RETRY
        callback(study, clean)
    log.warning("Trial %d failed: %s%s.", frozen.number, reason,
                "; queued again with the same params" if queued else "")
    return True


# Clocks. A heartbeat is written and judged on the database's clock (Optuna's now()), which on
# PostgreSQL is the server's: one clock for every machine. On SQLite now() is the clock of the
# process that runs the query, and a trial's start time is always its creator's clock, so there
# two machines' clocks meet: a checker whose clock runs ahead would fail healthy trials. Where
# that can happen, a trial that looks stale by less than SKEW_ALLOWANCE past its grace period is
# failed only once this process has also seen its heartbeat (or its lack of one) stay unchanged
# for the grace period on its own monotonic clock; one older than that is failed at once, as a
# worker killed long ago should be.
SKEW_ALLOWANCE = 300.0
# By storage and trial id: a process (a test run, say) may look at more than one database.
_sightings: dict[tuple[str, int], tuple[datetime.datetime | None, float]] = {}


def _unchanged_for(url: str, trial: _optuna.RunningTrial) -> float:
    """Seconds, on this process's monotonic clock, since it first saw ``trial``'s heartbeat as
    it is now."""
    now = time.monotonic()
    key = (url, trial.trial_id)
    seen = _sightings.get(key)
    if seen is None or seen[0] != trial.heartbeat:
        _sightings[key] = (trial.heartbeat, now)
        return 0.0
    return now - seen[1]


def _apparent_age(trial: _optuna.RunningTrial, now: datetime.datetime) -> float:
    if trial.heartbeat_age is not None:
        return trial.heartbeat_age
    return (now - trial.started_utc).total_seconds() if trial.started_utc else 0.0


def fail_stale_trials(storage: ResilientStorage, study: optuna.Study, *,
                      grace: float) -> list[_optuna.RunningTrial]:
    """Fail and retry the study's stale trials; returns the RUNNING trials that are not."""
    alive = []
    now = _utcnow()
    one_clock = not storage.url.startswith("sqlite")
    running = storage.running_trials(_optuna.study_id_of(study))
    for trial in running:
        reason = stale_reason(trial, grace, now)
        unchanged = _unchanged_for(storage.url, trial)
        if reason is not None and not (one_clock and trial.heartbeat is not None) \
                and _apparent_age(trial, now) <= grace + SKEW_ALLOWANCE and unchanged < grace:
            reason = None  # another machine's clock may be behind: watch it a while first
        if reason is None:
            alive.append(trial)
        else:
            fail_and_retry(storage, study, trial.trial_id, reason)
    ended = {key for key in _sightings if key[0] == storage.url} \
        - {(storage.url, trial.trial_id) for trial in running}
    for key in ended:
        _sightings.pop(key, None)
    return alive


def settle_running_trials(storage: ResilientStorage, study: optuna.Study, *, grace: float,
                          interval: float, poll: float = 1.0) -> None:
    """Return once no trial of the study is RUNNING without a live heartbeat.

    Stale trials are failed at once. A trial whose heartbeat is recent but does not move (its
    worker died moments ago, say with a launcher killed just before this launch) is waited for
    until the grace period makes it stale, then failed; one whose heartbeat moves belongs to a
    live worker (another launch, another machine) and is left alone."""
    first_seen: dict[int, _optuna.RunningTrial] = {}
    started = time.monotonic()
    deadline = started + grace + interval + 5
    announced = False
    while True:
        pending = []
        for trial in fail_stale_trials(storage, study, grace=grace):
            seen = first_seen.setdefault(trial.trial_id, trial)
            if trial.heartbeat is not None and (seen.heartbeat is None
                                                or trial.heartbeat > seen.heartbeat):
                continue  # its heartbeat moved: a live worker runs it
            pending.append(trial)
        if not pending or time.monotonic() > deadline:
            return
        # A live worker's heartbeat moves within an interval (and a second, for the clock's
        # resolution): warn only of trials still silent after that, not of every healthy one.
        if not announced and time.monotonic() - started > interval + 1:
            numbers = ", ".join(str(t.number) for t in pending)
            log.warning("Trial(s) %s RUNNING with no live heartbeat: waiting up to %.0f s (the "
                        "grace period) to fail them as lost, unless their worker beats.",
                        numbers, grace)
            announced = True
        time.sleep(poll)
