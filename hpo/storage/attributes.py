"""The names of the attributes hpo records on studies and trials, in one place.

They are what the dashboard shows and what every reader of a study (status, report, evaluate,
workers on other machines) looks up. This module imports nothing heavy, so the read-only
commands can use it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

# On studies (user attributes):
DEFINITION_ATTR = "definition"  # the definition's name, written last when a study is created
SYNTHETIC_ATTR = "synthetic"
METRIC_ATTR = "metric"
DATASET_ATTR = "dataset"
HPO_VERSION_ATTR = "hpo_version"
SPEC_ATTR = "launch_spec"  # the recorded part of the latest LaunchSpec (hpo.spec.RECORDED)
TEST_ATTR = "test_accuracy"  # hpo evaluate's measurement, recorded once
# hpo stop's mark: {"by": "user@host", "at": "2026-12-02 11:00:00 UTC", "now": bool}, set to
# None when a later launch clears it (Optuna has no call that deletes a study attribute).
STOP_ATTR = "stopped"
# A live worker's record, "worker:HOST:PID": its device, origin, trial, epoch and latest value,
# refreshed with its heartbeat (hpo.run.presence); None once it exits.
WORKER_ATTR_PREFIX = "worker:"

# On trials (user attributes):
BASELINE_ATTR = "baseline"  # the trial enqueued from StudyDefinition.baseline
FAIL_REASON_ATTR = "fail_reason"
ORIGIN_ATTR = "origin"  # where its worker came from: launch, hpo worker, a Slurm task, a pod
# How the fail_reason of a trial whose worker was lost begins (killed, crashed, stopped beating):
# such a trial does not count against a budget, because its retry, with the same params, does.
LOST_REASON = "worker lost"
STOPPED_REASON = "stopped"  # the fail_reason of a trial that hpo stop --now interrupted
# How the fail_reason of a trial its worker was asked to stop (a signal) begins: like a stopped
# one, it is queued again and its retry, which resumes it, counts in its place.
INTERRUPTED_REASON = "interrupted"
PRUNED_REASON_ATTR = "pruned_reason"
EPOCHS_RUN_ATTR = "epochs_run"
RESUMED_FROM_ATTR = "resumed_from_epoch"  # a retry that went on from its original's epoch
SECONDS_PER_EPOCH_ATTR = "seconds_per_epoch"


def file_name_of(study_name: str) -> str:
    """The study's name as one file or folder name (reports, resume points): study names come
    from storage, which anyone with the dashboard can write, so they must not point anywhere
    else, and names of up to 512 characters must fit the file system's 255 bytes. A name that
    is not already safe and short gets a hash of the whole name, so two never share a file."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", study_name).strip("._") or "study"
    if safe != study_name or len(safe) > 80:
        safe = f"{safe[:80]}-{hashlib.sha1(study_name.encode()).hexdigest()[:8]}"
    return safe


def metric_name(study: Any) -> str:
    """The study's metric (what its values measure), "value" for studies hpo did not make."""
    return str(study.user_attrs.get(METRIC_ATTR, "value"))


# Everything below reads back what hpo wrote, from storage that anyone with the dashboard's
# API can also write: a value of the wrong type or range is ignored (with a warning where it
# costs something), never a traceback or a loop.


def recorded_count(attrs: dict[str, Any], name: str, *, default: int, most: int) -> int:
    """The count hpo recorded as the user attribute ``name`` (epochs_run, ...): a whole number
    in 0..``most``; ``default`` if it is missing, and, with a warning, if it is not one."""
    value = attrs.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
        log.warning("Ignoring the recorded %s %.60r: it is not a whole number in 0..%d; using "
                    "%d.", name, value, most, default)
        return default
    return value


def stop_mark(attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The study's stop mark (hpo stop), from its user attributes; None if it runs freely.
    Only its known fields, as text (and ``now`` only if it is true itself), go on."""
    mark = attrs.get(STOP_ATTR)
    if not isinstance(mark, dict) or not mark.get("at"):
        return None
    return {"by": str(mark.get("by") or "someone")[:200], "at": str(mark["at"])[:200],
            "now": mark.get("now") is True}


def describe_stop(mark: dict[str, Any]) -> str:
    """'stopped by ann@node1 at 2026-12-02 11:00:00 UTC' (with ' with --now' if so)."""
    return (f"stopped by {mark.get('by', 'someone')} at {mark['at']}"
            + (" with --now" if mark.get("now") else ""))


def worker_records(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    """The study's worker records (hpo.run.presence), in the order of their keys."""
    return [value for key, value in sorted(attrs.items())
            if key.startswith(WORKER_ATTR_PREFIX) and isinstance(value, dict)]


def is_stale(record: Any, now: datetime) -> bool:
    """Whether a worker record is past its grace period, or unreadable (then it is stale too:
    nothing can show it alive)."""
    if not isinstance(record, dict):
        return True
    age, grace = heartbeat_age(record, now), record.get("grace_period")
    return age is None or isinstance(grace, bool) or not isinstance(grace, int | float) \
        or not age <= grace


def heartbeat_age(record: dict[str, Any], now: datetime) -> float | None:
    """Seconds since the worker's last heartbeat (``now`` aware), or None if unreadable."""
    try:
        return (now - datetime.fromisoformat(record["heartbeat"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        return None
