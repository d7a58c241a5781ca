"""hpo on a real PostgreSQL server: every command, many workers and machines on one study,
the study-wide total, a machine lost mid-trial, and the database going away for a while."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
from typer.testing import CliRunner

from hpo.cli import app
from hpo.definition import StudyDefinition
from hpo.run import worker as worker_module
from hpo.run.budget import LocalBudget, counted_finished
from hpo.storage.retry import ResilientStorage
from hpo.train.models import MLP
from tests.helpers import (
    hpo_process,
    make_spec,
    make_worker,
    run_inline,
    running_trials,
    wait_for,
)
from tests.integration.test_faults import many_short_trials
from tests.postgres import PASSWORD

pytestmark = pytest.mark.postgres
runner = CliRunner()


def trials_of(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials()


def test_every_command_works_on_postgres(postgres_url: str, mnist_dir: Path,
                                         tmp_path: Path) -> None:
    common = ["--storage", postgres_url]
    outputs = []
    result = runner.invoke(app, ["launch", "mnist-mlp", "--trials", "3", "--workers", "2",
                                 "--epochs", "1", "--data-dir", str(mnist_dir), *common])
    outputs.append(result)
    assert result.exit_code == 0, result.stderr
    result = runner.invoke(app, ["worker", "mnist-mlp", "--trials", "2", "--data-dir",
                                 str(mnist_dir), *common])
    outputs.append(result)
    assert result.exit_code == 0, result.stderr
    assert counted_finished(trials_of(postgres_url, "mnist-mlp")) == 5
    for args in (["status"], ["best", "mnist-mlp", "--json"], ["export", "mnist-mlp"],
                 ["trials", "mnist-mlp"], ["report", "mnist-mlp", "-o", str(tmp_path / "r")],
                 ["evaluate", "mnist-mlp", "--data-dir", str(mnist_dir)],
                 ["launch", "mnist-mlp", "--dry-run"]):
        result = runner.invoke(app, [*args, *common])
        outputs.append(result)
        assert result.exit_code == 0, result.stderr
    for result in outputs:
        assert PASSWORD not in result.stdout + result.stderr
    assert "hpo:***@127.0.0.1" in outputs[-1].stdout
    assert (tmp_path / "r" / "summary.md").exists()

    from hpo.results.dashboard import start_in_background
    from tests.results.test_dashboard import free_port, responds

    dashboard = start_in_background(postgres_url, port=free_port())
    assert responds(f"{dashboard}api/studies")


@pytest.mark.slow
def test_many_workers_many_short_trials_postgres(postgres_url: str, mnist_dir: Path) -> None:
    many_short_trials(postgres_url, mnist_dir)


@pytest.mark.slow
def test_total_stops_workers_on_every_machine(postgres_url: str, mnist_dir: Path) -> None:
    run_inline(make_spec(postgres_url, "logreg-loss", trials=1,
                            data_dir=str(mnist_dir)))
    workers = [hpo_process("worker", "logreg-loss", "--storage", postgres_url, "--total", "12",
                           "--data-dir", str(mnist_dir), "--keep-checkpoints", "0")
               for _ in range(2)]
    for worker in workers:
        _out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
    trials = trials_of(postgres_url, "logreg-loss")
    # The count and the new trial are made under the study's lock: exactly the total.
    assert counted_finished(trials) == 12 and len(trials) == 12
    assert not [t for t in trials if t.state == TrialState.RUNNING]


@pytest.mark.slow
def test_lost_machine_trial_is_failed_by_heartbeat_and_retried(postgres_url: str,
                                                               mnist_dir: Path) -> None:
    """Worker A (a whole machine) dies mid-trial; worker B's heartbeat check fails A's trial
    after the grace period and runs it again with the same params."""
    from hpo.run import launch

    hb = ["--heartbeat-interval", "1", "--grace-period", "3", "--data-dir", str(mnist_dir)]
    launch.prepare(launch.Plan.of(make_spec(postgres_url, epochs=10, pruner="none",
                                            data_dir=str(mnist_dir))))  # the study, no trial
    machine_a = hpo_process("worker", "mnist-mlp", "--storage", postgres_url, "--trials", "3",
                            *hb, new_session=True)
    victim = wait_for(lambda: running_trials(postgres_url, "mnist-mlp"), what="A's trial")[0]
    os.killpg(machine_a.pid, signal.SIGKILL)  # the launcher and its worker, like a power cut
    machine_a.wait()
    machine_b = hpo_process("worker", "mnist-mlp", "--storage", postgres_url, "--trials", "3",
                            *hb)
    _out, err = machine_b.communicate(timeout=300)
    assert machine_b.returncode == 0, err
    trials = trials_of(postgres_url, "mnist-mlp")
    lost = trials[victim.number]
    assert lost.state == TrialState.FAIL
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1 and retry[0].params == lost.params
    assert retry[0].state == TrialState.COMPLETE
    assert not [t for t in trials if t.state == TrialState.RUNNING]


# -- database outages ----------------------------------------------------------------------


class Outage:
    """Lets a test stop the database at exact points inside a trial."""

    def __init__(self) -> None:
        self.reached = {"mid_trial": threading.Event(), "trial_end": threading.Event()}
        self.database_down = {"mid_trial": threading.Event(), "trial_end": threading.Event()}

    def at(self, point: str) -> None:
        self.reached[point].set()
        assert self.database_down[point].wait(60)


OUTAGE = Outage()


def _outage_objective(trial: optuna.Trial, run) -> float:
    trial.suggest_float("x", 0.0, 1.0)
    trial.report(0.5, 1)
    if trial.number == 0:
        OUTAGE.at("mid_trial")  # the next report and the heartbeats hit a dead database
    trial.report(0.6, 2)
    if trial.number == 1:
        OUTAGE.at("trial_end")  # the result is told to a dead database
    return 0.7


OUTAGE_STUDY = StudyDefinition(
    name="outage", summary="test", dataset="mnist", objective=_outage_objective,
    search_space={"x": FloatDistribution(0.0, 1.0)}, build_model=lambda p: MLP(784, [], 10),
    epochs=2, pruner="none", sampler="random")


def test_worker_rides_out_database_outages(restartable_postgres, mnist_dir: Path) -> None:
    from hpo.run import launch

    server = restartable_postgres
    url = server.url()
    spec = make_spec(url, "tests.integration.test_postgres:OUTAGE_STUDY", trials=3, epochs=2,
                     data_dir=str(mnist_dir), heartbeat_interval=1, grace_period=30,
                     outage_tolerance=60)
    launch.prepare(launch.Plan.of(spec))
    worker = make_worker(spec, budget=LocalBudget(3))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    for point in ("mid_trial", "trial_end"):
        assert OUTAGE.reached[point].wait(120), f"the trial never reached {point}"
        server.stop("immediate")
        threading.Timer(4.0, server.start).start()
        OUTAGE.database_down[point].set()
    thread.join(timeout=180)
    assert not thread.is_alive() and not errors, errors
    trials = trials_of(url, "outage")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert [t.value for t in trials] == [0.7] * 3
    assert trials[0].intermediate_values == {1: 0.5, 2: 0.6}


@pytest.mark.slow
def test_launch_survives_a_database_restart_mid_trial(restartable_postgres,
                                                      mnist_dir: Path) -> None:
    server = restartable_postgres
    url = server.url()
    launch = hpo_process("launch", "mnist-mlp", "--trials", "3", "--data-dir", str(mnist_dir),
                         "--epochs", "10", "--storage", url, "--pruner", "none",
                         "--heartbeat-interval", "1")
    wait_for(lambda: running_trials(url, "mnist-mlp"), what="a trial mid-way")
    server.stop("immediate")
    time.sleep(5)
    server.start()
    out, err = launch.communicate(timeout=300)
    assert launch.returncode == 0, err
    trials = trials_of(url, "mnist-mlp")
    assert counted_finished(trials) == 3
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert "Database unreachable" in err
    assert PASSWORD not in out + err


def _restart_objective(trial: optuna.Trial, run) -> float:
    trial.suggest_float("x", 0.0, 1.0)
    trial.report(0.5, 1)
    trial.report(0.6, 2)
    return 0.7


RESTART_STUDY = StudyDefinition(
    name="restart", summary="test", dataset="mnist", objective=_restart_objective,
    search_space={"x": FloatDistribution(0.0, 1.0)}, build_model=lambda p: MLP(784, [], 10),
    epochs=2, pruner="none", sampler="random")

# Where a restart lands: the storage call it hits first, and which of its calls (1-based).
RESTART_PHASES = {
    "creating the study": (ResilientStorage, "create_new_study", 1),
    "a worker's set-up": (worker_module, "open_storage", 1),
    "mid-trial": (ResilientStorage, "set_trial_intermediate_value", 1),
    "between trials": (worker_module, "fail_stale_trials", 2),
}


@pytest.mark.parametrize("phase", RESTART_PHASES)
def test_a_restart_in_every_phase_loses_nothing(restartable_postgres, mnist_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture,
                                                phase: str) -> None:
    """The server restarts just as the given phase makes its storage call: the launcher's and
    the worker's calls ride it out, and every trial completes."""
    from hpo.run import launch

    server = restartable_postgres
    url = server.url()
    owner, name, nth = RESTART_PHASES[phase]
    original = getattr(owner, name)
    calls = []
    back = threading.Timer(3.0, server.start)

    def restart_then_call(*args, **kwargs):
        calls.append(1)
        if len(calls) == nth:
            server.stop("immediate")
            back.start()
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, restart_then_call)
    spec = make_spec(url, "tests.integration.test_postgres:RESTART_STUDY", trials=2, epochs=2,
                     data_dir=str(mnist_dir), outage_tolerance=60)
    try:
        launch.prepare(launch.Plan.of(spec))
        make_worker(spec, budget=LocalBudget(2)).run()
    finally:
        if back.is_alive():
            back.join()  # the server is back before the fixture removes it
    assert len(calls) >= nth, f"the restart never came: {phase} made {len(calls)} call(s)"
    assert "Database unreachable" in caplog.text
    trials = trials_of(url, "restart")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
