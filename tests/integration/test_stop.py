"""hpo stop across processes: a launch with 2 workers and, beside it, an `hpo worker` (stopped
plainly: their trials finish, none starts) or a second launch (stopped with --now: their trials
end FAIL "stopped", queued again), on SQLite and PostgreSQL, every process exiting 0 and saying
who stopped the study."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from benchmarks.stop_latency import STUDY, stop_workers
from tests.postgres import PASSWORD

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


# The plain stop ends a launch and an `hpo worker`; the stop --now, two launches.
@pytest.mark.parametrize(("now", "joiner"), [(False, "worker"), (True, "launch")],
                         ids=["plain", "now"])
def test_stop_ends_every_worker_of_the_study(storage_url: str, mnist_dir: Path,
                                             tmp_path: Path, now: bool, joiner: str) -> None:
    result = stop_workers(storage_url, tmp_path, now=now, heartbeat_interval=2,
                          epochs=200 if now else 6, data_dir=str(mnist_dir), joiner=joiner)
    assert result.exit_codes == [0, 0], result.outputs
    # No command line shows PostgreSQL's password (ps, taken while all three trained).
    assert f"-m hpo {joiner} {STUDY}" in result.command_lines, result.command_lines
    assert PASSWORD not in result.command_lines
    study = optuna.load_study(study_name=STUDY, storage=storage_url)
    mark = study.user_attrs["stopped"]
    for out, err in result.outputs:
        assert f"The study was stopped by {mark['by']} at {mark['at']}" in out, (out, err)
        assert "Traceback" not in err and PASSWORD not in out + err
    trials = study.get_trials()
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    # No trial started once the mark was in storage (the retries of --now wait for the next
    # launch).
    assert not [t.number for t in trials if t.number > result.last_marked
                and t.state != TrialState.WAITING]
    stopped = [t.number for t in trials if t.user_attrs.get("fail_reason") == "stopped"]
    at_stop = [trials[number] for number in result.running_at_stop]
    assert len(at_stop) == 3
    if now:
        # Seen within one heartbeat interval (2 s) and failed at once: far from 200 epochs.
        assert result.from_mark < 30
        # Those still running once the mark was in storage (the study's guards may prune a
        # trial of those running just before).
        assert set(result.running_at_stop) & set(stopped), stopped
        assert all(trials[n].state == TrialState.FAIL for n in stopped)
        retries = [t for t in trials if t.state == TrialState.WAITING
                   and t.system_attrs.get("failed_trial") is not None]
        assert sorted(t.system_attrs["failed_trial"] for t in retries) == stopped
        for out, _err in result.outputs:  # each launch counts the trials it had running
            assert "more stopped by 'hpo stop --now'" in out, out
    else:
        assert not stopped
        assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in at_stop)
