"""Nothing stuck RUNNING, workers that die with their launcher, a lost database that ends the
launch with one sentence, and end-of-launch summaries that add up."""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from hpo.definition import StudyDefinition
from hpo.storage.attributes import FAIL_REASON_ATTR
from hpo.train.models import MLP
from tests.helpers import hpo_process, make_spec, run_inline, running_trials, wait_for

SUMMARY = re.compile(r"(\d+) trial\(s\) finished in this launch \(([^)]*)\)")


def trials_of(url: str, name: str = "mnist-mlp") -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials()


def retried_number(trial: optuna.trial.FrozenTrial) -> int | None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def worker_pid(trial: optuna.trial.FrozenTrial) -> int:
    return int(trial.user_attrs["worker"].rsplit(":", 1)[1])


def summary_counts(stdout: str) -> tuple[int, dict[str, int]]:
    """The end-of-launch line's total and its breakdown by state."""
    match = SUMMARY.search(stdout)
    assert match, stdout
    shown = {}
    for part in match.group(2).split(", "):
        if part != "none":
            n, state = part.split(" ", 1)
            shown[state] = int(n)
    return int(match.group(1)), shown


@pytest.fixture
def launches():
    """Starts ``hpo`` subprocesses (in their own session) and, whatever the test's outcome,
    kills what is left of them, workers included, so a failed test leaves nothing training."""
    started: list[subprocess.Popen] = []

    def start(*args: str, **kwargs) -> subprocess.Popen:
        process = hpo_process(*args, new_session=True, **kwargs)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# -- the stale check (in-process, SQLite) ---------------------------------------------------


def test_an_orphan_running_trial_without_heartbeat_is_failed_and_retried(
        sqlite_url: str, mnist_dir: Path) -> None:
    """The database died inside study.ask(): the trial row exists, it never sent a heartbeat.
    Optuna's own stale check skips it for ever; hpo's fails it once the grace period passed."""
    from hpo.run import launch

    spec = make_spec(sqlite_url, trials=1, data_dir=str(mnist_dir), grace_period=3)
    study = launch.prepare(launch.Plan.of(spec)).study
    orphan = study.ask()  # the enqueued baseline, now RUNNING with no heartbeat
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as db:
        long_ago = (datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
                    - datetime.timedelta(hours=1))  # Optuna stores it as naive UTC
        db.execute("UPDATE trials SET datetime_start = ? WHERE trial_id = ?",
                   (long_ago.isoformat(" "), orphan._trial_id))

    run_inline(spec)

    trials = trials_of(sqlite_url)
    lost = trials[orphan.number]
    assert lost.state == TrialState.FAIL
    assert lost.user_attrs[FAIL_REASON_ATTR].startswith("worker lost"), lost.user_attrs
    retry = [t for t in trials if retried_number(t) == orphan.number]
    # The orphan was the enqueued baseline: its retry ran the same params.
    assert len(retry) == 1 and retry[0].params == lost.system_attrs["fixed_params"]
    assert retry[0].state == TrialState.COMPLETE
    assert FAIL_REASON_ATTR not in retry[0].user_attrs  # the retry does not read "worker lost"
    assert not [t for t in trials if t.state == TrialState.RUNNING]


def test_a_trial_failed_by_the_heartbeat_check_says_why(sqlite_url: str, mnist_dir: Path) -> None:
    from hpo.run import launch

    spec = make_spec(sqlite_url, trials=1, data_dir=str(mnist_dir), grace_period=3)
    prepared = launch.prepare(launch.Plan.of(spec))
    storage, study = prepared.storage, prepared.study
    dead = study.ask()
    storage.rdb.record_heartbeat(dead._trial_id)
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as db:  # its last beat, long ago
        db.execute("UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, '-1 hour')")

    run_inline(spec)

    lost = trials_of(sqlite_url)[dead.number]
    assert lost.state == TrialState.FAIL
    reason = lost.user_attrs.get(FAIL_REASON_ATTR)
    assert reason and reason.startswith("worker lost") and "heartbeat" in reason, reason


# -- workers die with their launcher (real launches) ----------------------------------------


@pytest.mark.slow
def test_workers_die_with_their_sigkilled_launcher(tmp_path: Path, mnist_dir: Path,
                                                   launches) -> None:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    launcher = launches("launch", "mnist-mlp", "--trials", "20", "--workers", "2",
                        "--data-dir", str(mnist_dir), "--epochs", "50", "--storage", url,
                        "--pruner", "none", "--heartbeat-interval", "1")
    running = wait_for(lambda: len(running_trials(url, "mnist-mlp", min_epochs=0)) == 2
                       and running_trials(url, "mnist-mlp", min_epochs=0), timeout=300,
                       what="two running trials")
    pids = [worker_pid(t) for t in running]
    assert all(alive(pid) for pid in pids)
    launcher.kill()  # the launcher alone, as the OOM killer or `kill -9` would
    launcher.wait()
    wait_for(lambda: not any(alive(pid) for pid in pids), timeout=10,
             what=f"the workers {pids} to die with their launcher")


def test_a_worker_whose_launcher_is_gone_kills_itself_without_prctl(tmp_path: Path) -> None:
    """The fallback where prctl is unavailable: a thread that watches the parent."""
    pid_file = tmp_path / "grandchild.pid"
    grandchild = (
        "import os, time, sys; from hpo.run.supervisor import die_with_parent; "
        f"die_with_parent(os.getppid(), use_prctl=False); open({str(pid_file)!r}, 'w')"
        ".write(str(os.getpid())); time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c",
                               f"import subprocess, sys, time; subprocess.Popen([sys.executable, "
                               f"'-c', {grandchild!r}]); time.sleep(60)"])
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text(), timeout=30,
                 what="the grandchild")
        child = int(pid_file.read_text())
        parent.kill()
        parent.wait()
        wait_for(lambda: not alive(child), timeout=10, what="the orphan to kill itself")
    finally:
        if parent.poll() is None:
            parent.kill()


@pytest.mark.slow
def test_a_relaunch_after_a_power_cut_leaves_nothing_running(tmp_path: Path, mnist_dir: Path,
                                                             launches) -> None:
    """Launcher and workers SIGKILLed together; the relaunch is shorter than the grace period,
    and still returns only once the dead trial is failed, saying so."""
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    hb = ["--heartbeat-interval", "1", "--grace-period", "20"]
    data = ["--data-dir", str(mnist_dir)]
    first = launches("launch", "mnist-mlp", "--trials", "5", *data, "--epochs", "50",
                     "--storage", url, "--pruner", "none", *hb)
    victim = wait_for(lambda: running_trials(url, "mnist-mlp", min_epochs=0), timeout=300,
                      what="a running trial")[0]
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()

    second = launches("launch", "mnist-mlp", "--trials", "1", *data, "--epochs", "1",
                      "--storage", url, "--pruner", "none", *hb)
    _out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    trials = trials_of(url)
    assert not [t.number for t in trials if t.state == TrialState.RUNNING], err
    lost = trials[victim.number]
    assert lost.state == TrialState.FAIL
    assert lost.user_attrs[FAIL_REASON_ATTR].startswith("worker lost")
    assert f"Trial {victim.number} failed: worker lost" in " ".join(err.split()), err


# -- summaries ------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_summary_adds_up_after_a_lost_worker(tmp_path: Path, mnist_dir: Path,
                                                 launches) -> None:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    launcher = launches("launch", "mnist-mlp", "--trials", "3", "--data-dir", str(mnist_dir),
                        "--epochs", "5", "--storage", url, "--pruner", "none",
                        "--heartbeat-interval", "1", "--grace-period", "3")
    victim = wait_for(lambda: running_trials(url, "mnist-mlp", min_epochs=0), timeout=300,
                      what="a running trial")[0]
    os.kill(worker_pid(victim), signal.SIGKILL)
    out, err = launcher.communicate(timeout=300)
    assert launcher.returncode == 0, err

    total, shown = summary_counts(out)
    assert total == 3 and sum(shown.values()) == total, out
    assert "lost" in out, out  # the killed trial is reported apart, not counted twice
    trials = trials_of(url)
    retry = [t for t in trials if retried_number(t) == victim.number]
    assert len(retry) == 1 and retry[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert FAIL_REASON_ATTR not in retry[0].user_attrs, retry[0].user_attrs


@pytest.mark.slow
def test_two_launches_on_one_study_report_only_their_own_trials(tmp_path: Path, mnist_dir: Path,
                                                                launches) -> None:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    common = ["--data-dir", str(mnist_dir), "--storage", url, "--pruner", "none", "--trials", "2"]
    setup = launches("launch", "mnist-mlp", "--epochs", "1", *common, "--seed", "1")
    assert setup.wait(timeout=300) == 0, setup.communicate()[1]
    long = launches("launch", "mnist-mlp", "--epochs", "20", *common)
    wait_for(lambda: running_trials(url, "mnist-mlp"), timeout=300,
             what="the long launch's first trial")
    short = launches("launch", "mnist-mlp", "--epochs", "1", *common)
    short_out, short_err = short.communicate(timeout=300)
    long_out, long_err = long.communicate(timeout=300)
    assert short.returncode == 0 and long.returncode == 0, short_err + long_err
    for out in (short_out, long_out):
        total, shown = summary_counts(out)
        assert total == 2 and sum(shown.values()) == 2, out


# -- a database that is gone for good -------------------------------------------------------


def test_an_outage_past_the_tolerance_is_one_sentence_and_is_not_waited_twice() -> None:
    import sqlalchemy.exc

    from hpo.storage.retry import DatabaseUnreachable, call_with_db_retry

    url = "postgresql+psycopg://hpo:s3cret@db.example:5432/hpo"
    calls = []

    def unreachable() -> None:
        calls.append(time.monotonic())
        raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception(
            "connection refused (password s3cret)"))

    started = time.monotonic()
    with pytest.raises(DatabaseUnreachable) as raised:
        call_with_db_retry(unreachable, tolerance=1.0, url=url)
    message = str(raised.value)
    assert message.startswith("The database at 'postgresql+psycopg://hpo:***@db.example:5432/hpo'"
                              " has been unreachable for 1 s: connection refused"), message
    assert "s3cret" not in message and len(calls) > 1
    # The outage goes on: the next call gives up at once instead of waiting a second time.
    started = time.monotonic()
    with pytest.raises(DatabaseUnreachable):
        call_with_db_retry(unreachable, tolerance=1.0, url=url)
    assert time.monotonic() - started < 0.5
    # Once the database answers, the clock starts again.
    assert call_with_db_retry(lambda: 7, tolerance=1.0, url=url) == 7
    calls.clear()
    with pytest.raises(DatabaseUnreachable):
        call_with_db_retry(unreachable, tolerance=1.0, url=url)
    assert len(calls) > 1


def test_the_outage_tolerance_is_settable_from_the_environment(monkeypatch) -> None:
    from hpo import settings
    from hpo.errors import HpoError

    monkeypatch.setenv("HPO_OUTAGE_TOLERANCE", "8")
    assert settings.outage_tolerance() == 8.0
    monkeypatch.setenv("HPO_OUTAGE_TOLERANCE", "soon")
    with pytest.raises(HpoError, match="HPO_OUTAGE_TOLERANCE"):
        settings.outage_tolerance()
    monkeypatch.delenv("HPO_OUTAGE_TOLERANCE")
    assert settings.outage_tolerance() == 120.0


def _fill_the_disk(trial: optuna.Trial, run) -> float:
    """Every trial finds the disk full: SQLite reports SQLITE_FULL for any write that needs a
    new page (PRAGMA max_page_count caps this worker's connections at the file's size)."""
    import sqlalchemy

    from hpo import _optuna

    engine = _optuna.backend_of(_optuna.storage_of(trial.study)).engine

    @sqlalchemy.event.listens_for(engine, "connect")
    def _full(connection, record) -> None:
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count = {pages}")

    engine.dispose()
    trial.suggest_float("x", 0.0, 1.0)
    trial.set_user_attr("notes", "x" * 200_000)  # needs new pages: the disk is full
    return 0.5


FULL_DISK = StudyDefinition(
    name="full-disk", summary="test", dataset="mnist", objective=_fill_the_disk,
    search_space={"x": FloatDistribution(0.0, 1.0)}, build_model=lambda p: MLP(784, [], 10),
    epochs=1, pruner="none", sampler="random")


@pytest.mark.slow
def test_a_full_sqlite_disk_ends_the_launch_with_one_sentence(sqlite_url: str,
                                                               mnist_dir: Path) -> None:
    import multiprocessing

    from rich.console import Console

    from hpo.errors import HpoError
    from hpo.run import launch
    from hpo.run.progress import LaunchProgress

    spec = make_spec(sqlite_url, "tests.integration.test_lifecycle:FULL_DISK", trials=3,
                     data_dir=str(mnist_dir), outage_tolerance=3)
    prepared = launch.prepare(launch.Plan.of(spec))
    progress = LaunchProgress(console=Console(stderr=True), study_name="full-disk",
                              storage_label="x", metric="m", maximize=True, budget=3, epochs=1,
                              slots=list(spec.slots))
    started = time.monotonic()
    with pytest.raises(HpoError) as raised:
        launch.run(prepared, progress)
    message = str(raised.value)
    assert "has been unreachable for 3 s" in message and "disk is full" in message, message
    assert time.monotonic() - started < 60
    assert not multiprocessing.active_children()
    trials = trials_of(sqlite_url, "full-disk")
    assert not [t for t in trials if t.state == TrialState.RUNNING]


@pytest.mark.slow
@pytest.mark.postgres
def test_a_database_gone_for_good_ends_the_launch_cleanly(restartable_postgres, mnist_dir: Path,
                                                          launches) -> None:
    from tests.postgres import PASSWORD

    server = restartable_postgres
    url = server.url()
    hb = ["--heartbeat-interval", "1", "--grace-period", "3"]
    data = ["--data-dir", str(mnist_dir)]
    launcher = launches("launch", "mnist-mlp", "--trials", "3", *data, "--epochs", "50",
                        "--storage", url, "--pruner", "none", *hb,
                        env={**os.environ, "HPO_OUTAGE_TOLERANCE": "8"})
    victim = wait_for(lambda: running_trials(url, "mnist-mlp"), timeout=300,
                      what="a trial mid-way")[0]
    server.stop("immediate")
    stopped = time.monotonic()
    out, err = launcher.communicate(timeout=300)
    took = time.monotonic() - stopped
    assert launcher.returncode not in (0, None), err
    assert took < 8 + 45, f"the launch took {took:.0f} s to give up"
    assert "has been unreachable for 8 s" in err, err
    assert "Traceback" not in err and "max length" not in err, err
    assert PASSWORD not in out + err
    assert not alive(worker_pid(victim))

    server.start()  # back: the next launch fails what the lost one could not mark, at once
    again = launches("launch", "mnist-mlp", "--trials", "1", *data, "--epochs", "1",
                     "--storage", url, "--pruner", "none", *hb)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    trials = trials_of(url)
    assert trials[victim.number].state == TrialState.FAIL
    assert trials[victim.number].user_attrs[FAIL_REASON_ATTR].startswith("worker lost")
    assert not [t for t in trials if t.state == TrialState.RUNNING]
