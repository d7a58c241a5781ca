"""Who is working on a study: each worker's record, and `hpo status STUDY` listing them."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hpo import reads
from hpo.run.presence import origin_of
from hpo.storage.engine import open_storage
from tests.helpers import pruned_only_study


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, "launch"),
    ({"SLURM_JOB_ID": "812", "SLURM_ARRAY_JOB_ID": "800", "SLURM_ARRAY_TASK_ID": "3"},
     "launch, Slurm job 800 task 3"),
    ({"SLURM_JOB_ID": "812"}, "launch, Slurm job 812"),
    ({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "HOSTNAME": "hpo-worker-7xk2p"},
     "launch, Kubernetes pod hpo-worker-7xk2p"),
    ({"HOSTNAME": "laptop"}, "launch"),  # not a pod: HOSTNAME alone says nothing
    ({"POD_NAME": "hpo-worker-0"}, "launch, Kubernetes pod hpo-worker-0"),
])
def test_a_worker_says_where_it_came_from(environ: dict[str, str], expected: str) -> None:
    assert origin_of("launch", environ) == expected


def _record(pid: int, age: float, **fields):
    beat = datetime.now(UTC) - timedelta(seconds=age)
    return {"host": "gpu7", "pid": pid, "device": "CPU", "threads": 2, "origin": "hpo worker",
            "trial": None, "epoch": None, "value": None, "grace_period": 30,
            "heartbeat": beat.isoformat(timespec="seconds"), **fields}


def test_status_lists_the_live_workers_on_its_fast_path(tmp_path: Path, capsys) -> None:
    url = pruned_only_study(tmp_path)
    storage = open_storage(url)
    study_id = storage.get_study_id_from_name("empty")
    storage.set_study_user_attr(study_id, "worker:gpu7:11", _record(
        11, 3, device="GPU 1", device_name="NVIDIA H200", threads=4, trial=5, epoch=2,
        value=0.91234, origin="launch, Slurm job 800 task 3"))
    storage.set_study_user_attr(study_id, "worker:gpu7:12", _record(12, 95))
    storage.set_study_user_attr(study_id, "worker:gpu7:13", None)  # exited

    assert reads.answer(["status", "empty", "--storage", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3] == "Workers on empty (2):"
    # The heartbeat's age depends on how long this took: 3 s and a little more.
    assert re.fullmatch(r"  gpu7:11  GPU 1 NVIDIA H200, 4 thread\(s\)  trial 5, epoch 2, "
                        r"val_accuracy 0\.9123  heartbeat [3-9] s ago  launch, Slurm job 800 "
                        r"task 3", lines[-2]), lines[-2]
    assert re.fullmatch(r"  gpu7:12  CPU, 2 thread\(s\)  between trials  heartbeat 9\d s ago "
                        r"\(stale\)  hpo worker", lines[-1]), lines[-1]

    assert reads.answer(["status", "empty", "--json", "--storage", url]) == 0
    [study] = json.loads(capsys.readouterr().out)["studies"]
    assert study["counts"]["pruned"] == 1
    live, stale = study["workers"]
    assert (live["pid"], live["trial"], live["epoch"], live["stale"]) == (11, 5, 2, False)
    assert live["device_name"] == "NVIDIA H200" and 2 <= live["heartbeat_age_s"] <= 10
    assert (stale["pid"], stale["stale"]) == (12, True)
