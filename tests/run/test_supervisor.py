"""hpo/run/supervisor.py: each worker process starts with its GPU and thread count in its real
environment; the launch spends its --trials exactly; a worker that dies is restarted and its
trial failed and queued again with the same params."""

from __future__ import annotations

import io
import itertools
import logging
import multiprocessing
import os
import time

import optuna
import pytest
import torch
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
from rich.console import Console

from hpo.definition import Dataset, Splits, StudyDefinition
from hpo.run import launch, supervisor
from hpo.run.budget import counted_finished
from hpo.run.channel import Channel
from hpo.run.devices import plan_workers
from hpo.run.progress import LaunchProgress
from tests.helpers import make_spec, wait_for
from tests.run import probe


def test_each_worker_process_starts_with_its_own_gpu_and_threads(
        monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    """CUDA_VISIBLE_DEVICES must be in the spawned child's environment before CUDA starts:
    the child reports what it really finds in os.environ."""
    monkeypatch.setenv("HPO_GPU_COUNT", "4")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")  # the node's: must not leak through
    monkeypatch.setenv("OMP_NUM_THREADS", "16")
    gpu_slots = plan_workers(gpus="1,3", cores=4)
    cpu_slot = plan_workers(gpus="none", workers=3, cores=3)[2]
    slots = (*gpu_slots, cpu_slot)
    spec = make_spec(sqlite_url, slots=slots)
    # The real Supervisor._start (and _child_environment); only the worker's body is a probe.
    monkeypatch.setattr(supervisor, "_worker_process", probe.report_environment)
    watcher = supervisor.Supervisor(storage=None, study=None, spec=spec, budget=1)
    for slot in slots:
        watcher._start(slot)
    reported: dict[int, dict] = {}
    deadline = time.monotonic() + 120
    while len(reported) < len(slots) and time.monotonic() < deadline:
        for _, (_, index, environment) in watcher._receive(timeout=1):
            reported[index] = environment
    for process in watcher.processes.values():
        process.join(timeout=60)
    assert reported == {
        0: {"CUDA_VISIBLE_DEVICES": "5", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"},
        1: {"CUDA_VISIBLE_DEVICES": "7", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"},
        # A CPU worker sees no GPU at all: set and empty, not unset.
        2: {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    }
    # The launcher's own environment is as it was.
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "4,5,6,7"
    assert os.environ["OMP_NUM_THREADS"] == "16" and "MKL_NUM_THREADS" not in os.environ


# -- whole launches of a trivial study: no data to load, trials that take no time ----------

TINY = Dataset(
    name="tiny",
    load_splits=lambda data_dir, options: Splits(torch.zeros(4, 1), torch.zeros(4).long(),
                                                 torch.zeros(2, 1), torch.zeros(2).long(), 2),
    load_test=lambda data_dir, options: (torch.zeros(2, 1), torch.zeros(2).long()),
)


def _instant(trial: optuna.Trial, run) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    run.report(x, 1)
    return x


def _dies_in_trial_one(trial: optuna.Trial, run) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    if trial.number == 1:
        os._exit(7)  # the worker process dies mid-trial, as if killed
    return x


def definition(name: str, objective) -> StudyDefinition:
    return StudyDefinition(name=name, summary="test", dataset=TINY, objective=objective,
                           search_space={"x": FloatDistribution(0.0, 1.0)},
                           build_model=lambda params: torch.nn.Linear(1, 2), epochs=1,
                           sampler="random", pruner="none")


INSTANT = definition("instant", _instant)
DYING = definition("dying", _dies_in_trial_one)


def launch_inline(spec) -> tuple[supervisor.SuperviseResult, list[optuna.trial.FrozenTrial]]:
    """What 'hpo launch' does after planning: prepare the study, supervise its workers."""
    prepared = launch.prepare(launch.Plan.of(spec))
    progress = LaunchProgress(console=Console(file=io.StringIO()), study_name=spec.study_name,
                              storage_label="test", metric="val_accuracy", maximize=True,
                              budget=prepared.budget, epochs=spec.epochs, slots=list(spec.slots))
    result = launch.run(prepared, progress)
    return result, optuna.load_study(study_name=spec.study_name,
                                     storage=spec.storage_url).get_trials()


@pytest.mark.slow
def test_two_worker_processes_run_exactly_the_budget(sqlite_url: str) -> None:
    spec = make_spec(sqlite_url, "tests.run.test_supervisor:INSTANT", trials=5,
                     slots=tuple(plan_workers(gpus="none", workers=2, cores=2)))
    result, trials = launch_inline(spec)
    assert result.counted == 5 and not result.interrupted and result.failed_slots == []
    assert len(trials) == 5 and all(t.state == TrialState.COMPLETE for t in trials)


@pytest.mark.slow
def test_a_dead_worker_is_restarted_and_its_trial_retried(sqlite_url: str,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    spec = make_spec(sqlite_url, "tests.run.test_supervisor:DYING", trials=3)
    result, trials = launch_inline(spec)
    assert result.counted == 3 and result.failed_slots == []
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL,
                                         TrialState.COMPLETE, TrialState.COMPLETE]
    assert counted_finished(trials) == 3  # the retry takes the dead trial's place
    lost = trials[1]
    assert lost.user_attrs["fail_reason"] == ("worker lost: its worker process exited with "
                                              "code 7")
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == 1]
    assert retry.params == lost.params
    assert "exited with code 7; restarting it (1/3)" in caplog.text


def test_worker_logs_and_events_reach_the_launcher(sqlite_url: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    spec = make_spec(sqlite_url)
    progress = LaunchProgress(console=Console(file=io.StringIO()), study_name="s",
                              storage_label="test", metric="val_accuracy", maximize=True,
                              budget=2, epochs=1, slots=list(spec.slots))
    watcher = supervisor.Supervisor(storage=None, study=None, spec=spec, budget=2,
                                    display=progress)
    reader, writer = multiprocessing.Pipe(duplex=False)
    watcher.channels[0] = reader
    channel = Channel(writer)
    channel.emit("trial_finished", trial=3, state="COMPLETE", value=0.9, reason=None)
    channel.put(logging.LogRecord("hpo.run.worker", logging.WARNING, __file__, 1,
                                  "from the worker process", None, None))
    watcher._drain_events(timeout=2)
    assert (progress.done, progress.best_trial, progress.best_value) == (1, 3, 0.9)
    assert watcher.trials == {3}  # the launcher's own record of its trials, not the display's
    assert "from the worker process" in caplog.text


def test_a_worker_killed_mid_message_silences_no_other(sqlite_url: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL while a worker sends its events: its pipe is dropped, and the worker started in
    its place (and any other) is still heard, and exits. (A queue shared by the workers stayed
    locked: the next worker hung on its first event.)"""
    monkeypatch.setattr(supervisor, "_worker_process", probe.chatter)
    spec = make_spec(sqlite_url)
    watcher = supervisor.Supervisor(storage=None, study=None, spec=spec, budget=1)
    (slot,) = spec.slots
    for _ in range(3):  # a killed writer is nearly always mid-message; three tries make sure
        watcher.restarts[slot.index] = 0
        watcher._start(slot)
        wait_for(lambda: watcher._receive(timeout=0.5), timeout=60, what="the chatter")
        watcher.processes[slot.index].kill()
        watcher.processes[slot.index].join()
        # Read to the end of what it sent, a message cut in half included: the pipe is dropped.
        wait_for(lambda: watcher._receive(timeout=0.5) is not None
                 and slot.index not in watcher.channels, timeout=60, what="its pipe dropped")
        watcher.restarts[slot.index] = 1
        watcher._start(slot)  # in its place: says one thing and exits
        heard = []
        deadline = time.monotonic() + 60
        while not heard and time.monotonic() < deadline:
            heard = [item for _, item in watcher._receive(timeout=0.5)
                     if item[1] == "trial_started"]
        assert heard == [("event", "trial_started", {"trial": 99})]
        watcher.processes[slot.index].join(timeout=30)
        assert watcher.processes[slot.index].exitcode == 0


def test_the_environment_is_restored_even_when_starting_fails(monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    (slot,) = plan_workers(gpus="1", gpu_ids=["0", "1"], cores=2)
    with pytest.raises(RuntimeError, match="spawn failed"), supervisor._child_environment(slot):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
        raise RuntimeError("spawn failed")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1" and "OMP_NUM_THREADS" not in os.environ


class _DeadAtOnce:
    """A worker process that has already exited with code 1 (a crash)."""

    exitcode = 1
    pid = 0

    def is_alive(self) -> bool:
        return False

    def join(self, timeout: float | None = None) -> None:
        pass

    def kill(self) -> None:
        pass


def test_restarts_back_off_instead_of_burning_out(sqlite_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that keeps crashing (a database restarting, say) is restarted after longer
    and longer pauses, not three times within a second."""
    monkeypatch.setattr(supervisor, "RESTART_BACKOFF_SECONDS", 0.2)
    watcher = supervisor.Supervisor(storage=None, study=None, spec=make_spec(sqlite_url),
                                    budget=2)
    started: list[float] = []

    def start(slot) -> None:
        started.append(time.monotonic())
        watcher.processes[slot.index] = _DeadAtOnce()

    monkeypatch.setattr(watcher, "_start", start)
    watcher._watch()
    gaps = [later - earlier for earlier, later in itertools.pairwise(started)]
    assert len(gaps) == supervisor.MAX_RESTARTS_PER_SLOT
    assert [gap >= 0.2 * 2 ** n for n, gap in enumerate(gaps)] == [True] * len(gaps), gaps
    assert watcher.failed_slots == [0]


@pytest.mark.slow
def test_a_worker_that_lost_the_database_exits_with_its_code_and_is_not_restarted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker process's own exit code says "database lost" (not 1, a crash), and the
    launcher restarts nothing: the sentence ends the launch."""
    spec = make_spec("postgresql+psycopg://me:s3cret-pw@127.0.0.1:1/db",
                     "tests.run.test_supervisor:INSTANT", outage_tolerance=1)
    watcher = supervisor.Supervisor(storage=None, study=None, spec=spec, budget=2)
    exits: list[int | None] = []
    monkeypatch.setattr(watcher.display, "worker_exited", lambda index, code: exits.append(code))
    watcher._watch()
    assert exits == [supervisor.EXIT_DATABASE_LOST]
    assert watcher.restarts == {0: 0} and not watcher.restart_at
    assert watcher.database_lost is not None and "unreachable" in watcher.database_lost
    assert "s3cret-pw" not in watcher.database_lost
