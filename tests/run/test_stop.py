"""hpo stop in one process: the mark, its refusals, what status shows, and a worker obeying
it (plain: no new trial; --now: the running trial interrupted, queued again, resumed later)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from hpo import reads
from hpo.cli import app
from hpo.run import launch
from hpo.run.budget import LocalBudget, counted
from hpo.run.stop import mark_stopped, who
from hpo.run.worker import StopRequest
from hpo.storage.attributes import RESUMED_FROM_ATTR, worker_records
from hpo.train.resume import resume_path
from tests.helpers import make_spec, make_worker, pruned_only_study, run_inline, running_trials
from tests.run.test_worker import RecordedEvents

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_stop_marks_the_study_and_refuses_bad_input(tmp_path: Path) -> None:
    url = pruned_only_study(tmp_path)
    result = invoke("stop", "nope", "--storage", url)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: There is no study named 'nope' in {url} (studies there: empty): check the "
        "name, point --storage (or HPO_STORAGE) at the storage that holds it, or start it with "
        "'hpo launch'.")

    result = invoke("stop", "empty", "--storage", url)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"Study empty stopped by {who()} at ")
    assert "finish their current trials within one heartbeat interval and exit." in \
        result.stdout

    again = invoke("stop", "empty", "--storage", url)
    assert again.exit_code == 1
    message = again.stderr.strip()
    assert message.startswith(f"Error: Study 'empty' is already stopped by {who()} at ")
    assert message.endswith(": its workers end on their own, and 'hpo launch' or 'hpo worker' "
                            "on it clears the mark.")
    assert "Traceback" not in again.stderr and message.count("\n") == 0

    # A plain stop may become a stop --now, once.
    assert invoke("stop", "empty", "--now", "--storage", url).exit_code == 0
    again = invoke("stop", "empty", "--now", "--storage", url)
    assert again.exit_code == 1 and " with --now: its workers end on their own" in again.stderr


def test_status_shows_a_stopped_study_on_its_fast_path(tmp_path: Path, capsys) -> None:
    url = pruned_only_study(tmp_path)
    assert reads.answer(["status", "--storage", url]) == 0
    assert "(hpo stop)" not in capsys.readouterr().out
    mark = mark_stopped(url, "empty", now=False, outage_tolerance=0)
    assert reads.answer(["status", "--storage", url]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"Study empty was stopped by {mark['by']} at {mark['at']} (hpo stop): 'hpo launch' or "
        "'hpo worker' on it goes on.")


def test_a_worker_starts_no_trial_on_a_stopped_study(sqlite_url: str, mnist_dir: Path) -> None:
    spec = make_spec(sqlite_url, trials=3, data_dir=str(mnist_dir))
    study = launch.prepare(launch.Plan.of(spec)).study
    mark = mark_stopped(sqlite_url, spec.study_name, now=False, outage_tolerance=0)
    events = RecordedEvents()
    assert make_worker(spec, budget=LocalBudget(3), events=events).run() == 0
    assert [t.state for t in study.get_trials()] == [TrialState.WAITING]  # the baseline
    [(_, fields)] = [e for e in events.sent if e[0] == "study_done"]
    assert fields["stopped"] == mark
    assert fields["reason"] == f"the study was stopped by {mark['by']} at {mark['at']} (hpo stop)"


def test_a_launch_clears_the_mark_and_says_so(sqlite_url: str, mnist_dir: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    spec = make_spec(sqlite_url, trials=1, data_dir=str(mnist_dir))
    launch.prepare(launch.Plan.of(spec))
    mark = mark_stopped(sqlite_url, spec.study_name, now=True, outage_tolerance=0)
    with caplog.at_level("WARNING"):
        study = run_inline(spec)
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE]
    assert study.user_attrs["stopped"] is None
    assert f"Study mnist-mlp was stopped by {mark['by']} at {mark['at']} with --now; this " \
           "launch clears the mark and goes on." in caplog.messages


@pytest.fixture
def stop_handlers():
    """The worker process's signal handlers (StopRequest.install), put back afterwards."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    stop = StopRequest()
    stop.install()
    yield stop
    for sig, handler in saved.items():
        signal.signal(sig, handler)


class SlowEpochs(RecordedEvents):
    """At least 0.5 s an epoch (the worker reports each from its loop), so that the stop
    lands mid-trial however fast a warm process trains."""

    def emit(self, kind: str, **fields) -> None:
        super().emit(kind, **fields)
        if kind == "epoch":
            time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["hpo stop --now", "SIGTERM"])
def test_an_interrupted_trial_is_queued_again_and_a_later_launch_resumes_it(
        sqlite_url: str, mnist_dir: Path, tmp_path: Path, stop_handlers: StopRequest,
        how: str) -> None:
    """hpo stop --now, or a signal (Kubernetes evicting a pod, Slurm preempting a task, a user's
    kill): the trial ends FAIL, is queued again with the same params and does not count; the
    next launch resumes it from its last epoch (docs/faults.md)."""
    import os

    artifacts = tmp_path / "artifacts"
    spec = make_spec(sqlite_url, trials=3, epochs=12, data_dir=str(mnist_dir),
                     artifact_dir=str(artifacts), heartbeat_interval=1)
    launch.prepare(launch.Plan.of(spec))

    def stop_mid_trial() -> None:
        from tests.helpers import wait_for

        wait_for(lambda: running_trials(sqlite_url, spec.study_name, min_epochs=2),
                 what="a trial two epochs in")
        # The worker's record says what it runs, refreshed with the heartbeat (hpo status).
        records = wait_for(lambda: [r for r in worker_records(optuna.load_study(
            study_name=spec.study_name, storage=sqlite_url).user_attrs) if r["epoch"]],
            what="the worker's record of an epoch")
        seen.extend(records)
        if how == "SIGTERM":
            os.kill(os.getpid(), signal.SIGTERM)  # handled in the main thread, mid-trial
        else:
            mark_stopped(sqlite_url, spec.study_name, now=True, outage_tolerance=0)

    seen: list[dict] = []
    stopper = threading.Thread(target=stop_mid_trial)
    stopper.start()
    events = SlowEpochs()
    ran = make_worker(spec, budget=LocalBudget(3), events=events, stop=stop_handlers).run()
    stopper.join()
    assert ran == 0
    study = optuna.load_study(study_name=spec.study_name, storage=sqlite_url)
    stopped, retry = study.get_trials()
    reason = stopped.user_attrs["fail_reason"]
    assert stopped.state == TrialState.FAIL
    assert reason == "stopped" if how != "SIGTERM" else \
        reason == "interrupted: the worker was asked to stop"
    assert retry.state == TrialState.WAITING and retry.params == stopped.params
    assert counted(study.get_trials()) == []  # the retry will count in its place
    assert 2 <= stopped.user_attrs["epochs_run"] < 12
    assert resume_path(artifacts, spec.study_name, stopped.number).exists()
    finished = [fields for kind, fields in events.sent if kind == "trial_finished"]
    assert [f["state"] for f in finished] == \
        ["STOPPED" if how != "SIGTERM" else "INTERRUPTED"]
    if how != "SIGTERM":
        assert ("study_done", {"reason": events.sent[-1][1]["reason"],
                               "stopped": events.sent[-1][1]["stopped"]}) == events.sent[-1]
        assert events.sent[-1][1]["stopped"]["now"] is True
    [record] = seen
    assert (record["trial"], record["device"], record["origin"]) == (stopped.number, "CPU",
                                                                     "launch")
    assert record["value"] == stopped.intermediate_values[record["epoch"]]
    assert not worker_records(study.user_attrs)  # cleared as the worker exited

    study = run_inline(make_spec(sqlite_url, trials=1, epochs=12, data_dir=str(mnist_dir),
                                 artifact_dir=str(artifacts)))
    resumed = study.get_trials()[retry.number]
    assert resumed.state.is_finished()
    assert resumed.user_attrs[RESUMED_FROM_ATTR] == len(stopped.intermediate_values)
    assert [t.number for t in counted(study.get_trials())] == [retry.number]


def test_stop_rides_out_an_outage_then_gives_one_sentence() -> None:
    """hpo stop while the database is down retries for the outage tolerance, as every worker
    does, then says so in one sentence, without the password."""
    started = time.monotonic()
    result = runner.invoke(app, ["stop", "mnist-mlp", "--storage",
                                 "postgresql+psycopg://me:s3cret-pw@127.0.0.1:1/db"],
                           env={"HPO_OUTAGE_TOLERANCE": "2"})
    assert result.exit_code != 0
    assert time.monotonic() - started >= 1.5  # it waited, rather than failing at once
    assert "has been unreachable for 2 s" in result.stderr
    assert "s3cret-pw" not in result.output and "Traceback" not in result.output


STOP_COMMAND = """
import sys
from hpo.__main__ import main
try:
    main()
except SystemExit as exit:
    code = exit.code
heavy = [name for name in ("torch", "optuna", "sqlalchemy") if name in sys.modules]
print("imported: " + (", ".join(heavy) or "nothing heavy"), file=sys.stderr)
sys.exit(code)
"""


def _stop_command(*args: str) -> tuple[int, str, str]:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", STOP_COMMAND, "stop", *args],
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres",
                                                            marks=pytest.mark.postgres)])
def test_hpo_stop_writes_its_mark_without_optuna(backend: str, tmp_path: Path,
                                                 request: pytest.FixtureRequest) -> None:
    """A stop is wanted now, on machines whose cores are busy training: hpo stop writes its
    one row without importing Optuna or SQLAlchemy (seconds there), and the mark is the one
    Optuna's storage, and so every worker, reads."""
    from hpo.storage.attributes import STOP_ATTR, stop_mark

    url = (pruned_only_study(tmp_path) if backend == "sqlite"
           else request.getfixturevalue("postgres_url"))
    if backend == "postgres":
        optuna.create_study(study_name="empty", storage=url)
    code, out, err = _stop_command("empty", "--storage", url)
    assert code == 0, err
    assert err.strip().endswith("imported: nothing heavy"), err
    mark = stop_mark(optuna.load_study(study_name="empty", storage=url).user_attrs)
    assert mark == {"by": who(), "at": mark["at"], "now": False}
    assert out.strip() == (f"Study empty stopped by {who()} at {mark['at']}: its workers, on "
                           "every machine, finish their current trials within one heartbeat "
                           "interval and exit.")
    # A plain stop made a --now one: the row is updated, not added twice.
    code, out, err = _stop_command("empty", "--now", "--storage", url)
    assert code == 0 and err.strip().endswith("imported: nothing heavy"), err
    assert stop_mark(optuna.load_study(study_name="empty", storage=url).user_attrs)["now"] \
        is True
    # A mark cleared by a launch (stored as null) is written over.
    study = optuna.load_study(study_name="empty", storage=url)
    study.set_user_attr(STOP_ATTR, None)
    code, out, err = _stop_command("empty", "--storage", url)
    assert code == 0 and err.strip().endswith("imported: nothing heavy"), err
    assert stop_mark(optuna.load_study(study_name="empty", storage=url).user_attrs) is not None


def test_what_is_not_the_plain_case_goes_the_full_way(tmp_path: Path) -> None:
    """No such study, a study already stopped, a stored mark that is not JSON: the direct path
    writes nothing and the full one (Optuna's storage) gives its sentence."""
    import sqlite3

    from hpo.run.stop import mark_stopped_directly
    from hpo.storage.attributes import STOP_ATTR
    from hpo.storage.urls import sqlite_path

    url = pruned_only_study(tmp_path)
    assert mark_stopped_directly(url, "nope", now=False) is None
    assert mark_stopped_directly(f"sqlite:///{tmp_path / 'absent.db'}", "empty",
                                 now=False) is None
    assert not (tmp_path / "absent.db").exists()
    assert mark_stopped_directly(url, "empty", now=False) is not None
    assert mark_stopped_directly(url, "empty", now=False) is None  # already stopped
    path = sqlite_path(url)
    assert path is not None
    with sqlite3.connect(path) as connection:
        connection.execute('UPDATE study_user_attributes SET value_json = ? WHERE "key" = ?',
                           ("{not json", STOP_ATTR))
    assert mark_stopped_directly(url, "empty", now=True) is None
    code, _out, err = _stop_command("empty", "--now", "--storage", url)
    assert code == 1 and "Traceback" not in err, err
    assert "holds a study row that hpo cannot read (JSONDecodeError: " in err, err
