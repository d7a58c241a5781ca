"""Who is working on a study: each worker's record, a study user attribute refreshed with its
heartbeat, which ``hpo status STUDY`` lists and optuna-dashboard shows.

The record is "worker:HOST:PID" (hpo.storage.attributes.WORKER_ATTR_PREFIX): host and pid, the
device (GPU index and name, or CPU and its threads), where the worker came from (launch or
``hpo worker``, and a Slurm job and array task or a Kubernetes pod from the environment), the
trial, epoch and latest value it is on, and its last heartbeat with the grace period past which
it counts as stale. One attribute per worker, so workers never rewrite each other's records.
A worker clears its own when it exits; a launch clears those gone stale (:func:`forget_stale`).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import optuna

from hpo import _optuna
from hpo.spec import WorkerSlot
from hpo.storage.attributes import WORKER_ATTR_PREFIX, is_stale
from hpo.storage.retry import ResilientStorage

log = logging.getLogger(__name__)


def origin_of(started_by: str, environ: Mapping[str, str] | None = None) -> str:
    """Where a worker came from: ``started_by`` ("launch", "hpo worker"), and the Slurm job
    and array task or the Kubernetes pod that runs it, when the environment says so."""
    env = os.environ if environ is None else environ
    parts = [started_by]
    job = env.get("SLURM_ARRAY_JOB_ID") or env.get("SLURM_JOB_ID")
    if job:
        task = env.get("SLURM_ARRAY_TASK_ID")
        parts.append(f"Slurm job {job}" + (f" task {task}" if task else ""))
    pod = env.get("POD_NAME") or (env.get("HOSTNAME") if env.get("KUBERNETES_SERVICE_HOST")
                                  else None)
    if pod:
        parts.append(f"Kubernetes pod {pod}")
    return ", ".join(parts)


def device_of(slot: WorkerSlot) -> dict[str, Any]:
    if slot.device == "cpu":
        return {"device": "CPU", "threads": slot.threads}
    import torch

    return {"device": f"GPU {slot.cuda_visible_devices}",
            "device_name": torch.cuda.get_device_name(0), "threads": slot.threads}


class Presence:
    """This worker's record on ``study``."""

    def __init__(self, storage: ResilientStorage, study: optuna.Study, slot: WorkerSlot, *,
                 started_by: str, grace_period: float) -> None:
        self.storage = storage
        self.study_id = _optuna.study_id_of(study)
        host, pid = socket.gethostname(), os.getpid()
        self.key = f"{WORKER_ATTR_PREFIX}{host}:{pid}"
        self.record: dict[str, Any] = {
            "host": host, "pid": pid, **device_of(slot), "origin": origin_of(started_by),
            "trial": None, "epoch": None, "value": None, "grace_period": grace_period}

    def on(self, trial: int | None, epoch: int | None = None, value: float | None = None
           ) -> None:
        self.record.update(trial=trial, epoch=epoch, value=value)

    def write(self, *, retry: bool = True) -> None:
        """Write the record with a fresh heartbeat. ``retry``: through an outage, as the trial
        loop's calls do; the heartbeat thread writes without (it writes again next interval)."""
        record = {**self.record, "heartbeat": datetime.now(UTC).isoformat(timespec="seconds")}
        storage = self.storage if retry else self.storage.rdb
        storage.set_study_user_attr(self.study_id, self.key, record)

    def clear(self) -> None:
        """Drop the record (set to None: Optuna cannot delete a study attribute)."""
        try:
            self.storage.rdb.set_study_user_attr(self.study_id, self.key, None)
        except Exception as error:  # a launch clears it later, once it is stale
            log.debug("Could not clear the worker record %s: %s", self.key, error)


def forget_stale(study: optuna.Study) -> None:
    """Drop the records of workers gone for longer than their grace period."""
    storage = _optuna.storage_of(study)
    study_id = _optuna.study_id_of(study)
    now = datetime.now(UTC)
    # By key, not by the record's host and pid: a record that is not one (anyone can write
    # storage) goes too.
    for key, record in storage.get_study_user_attrs(study_id).items():
        if key.startswith(WORKER_ATTR_PREFIX) and record is not None and is_stale(record, now):
            storage.set_study_user_attr(study_id, key, None)
