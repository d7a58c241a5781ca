"""The worker loop, run in this process: pruning, the baseline, failures inside trials,
presets, and a trial failed under the worker's feet by a peer."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from hpo.definition import StudyDefinition
from hpo.run import launch
from hpo.run.budget import LocalBudget, counted_finished
from hpo.train.models import MLP
from studies.mnist_mlp import BASELINE
from studies.mnist_mlp import STUDY as MNIST
from tests.helpers import make_spec, make_worker, run_inline

BAD = {**BASELINE, "lr": 0.1}  # stays near chance, as in the seed report
# mnist-mlp with a constant floor, which needs no peers (the default floor learns from them).
FLOORED = replace(MNIST, name="mnist-floored", floor=0.5)


def states(study: optuna.Study) -> list[str]:
    return [t.state.name for t in study.get_trials(deepcopy=False)]


def test_baseline_trial_is_enqueued_once(sqlite_url: str, mnist_dir: Path) -> None:
    request = make_spec(sqlite_url, trials=1, data_dir=str(mnist_dir))
    study = run_inline(request)  # the baseline, enqueued at creation, runs first
    run_inline(request)  # resuming does not enqueue it again: this runs a sampled trial
    trials = study.get_trials()
    baselines = [t for t in trials if t.user_attrs.get("baseline")]
    assert len(trials) == 2 and len(baselines) == 1
    assert baselines[0].number == 0 and baselines[0].params == BASELINE
    assert baselines[0].state == TrialState.COMPLETE


def test_trials_record_device_epochs_and_speed(sqlite_url: str, mnist_dir: Path) -> None:
    study = run_inline(make_spec(sqlite_url, trials=1, epochs=2, data_dir=str(mnist_dir)))
    trial = study.trials[0]
    assert trial.user_attrs["device"] == "cpu"
    assert trial.user_attrs["epochs_run"] == 2
    assert trial.user_attrs["seconds_per_epoch"] > 0
    assert sorted(trial.intermediate_values) == [1, 2]
    assert study.user_attrs["definition"] == "mnist-mlp"
    assert study.user_attrs["metric"] == "val_accuracy"
    assert study.user_attrs["synthetic"] is False


def test_pruning_really_prunes(sqlite_url: str, mnist_dir: Path) -> None:
    """A trial below the floor stops after its first epoch: the floor needs no peers, so the
    baseline is the only other trial."""
    request = make_spec(sqlite_url, "tests.run.test_worker:FLOORED", trials=1, epochs=2,
                        pruner="median", data_dir=str(mnist_dir))
    study = run_inline(request)  # the baseline
    study.enqueue_trial(BAD)
    study = run_inline(request)
    last = study.trials[-1]
    assert last.params["lr"] == BAD["lr"]
    assert last.state == TrialState.PRUNED
    assert list(last.intermediate_values) == [1]  # stopped after its first epoch
    assert "at epoch 1 is below the floor 0.5" in last.user_attrs["pruned_reason"]
    assert states(study)[0] == "COMPLETE"  # the baseline


def test_baseline_is_never_pruned(sqlite_url: str, mnist_dir: Path) -> None:
    """BAD, below the floor at every epoch, trains to its end when it is the baseline."""
    request = make_spec(sqlite_url, "tests.run.test_worker:FLOORED", trials=1, epochs=2,
                        pruner="median", data_dir=str(mnist_dir))
    study = run_inline(request)
    study.enqueue_trial(BAD, user_attrs={"baseline": True})
    study = run_inline(request)
    assert study.trials[-1].params == BAD and study.trials[-1].state == TrialState.COMPLETE
    assert study.trials[-1].intermediate_values[1] < 0.5  # below the floor: pruned otherwise


def _faulty_objective(trial: optuna.Trial, run) -> float:
    trial.suggest_float("x", 0.0, 1.0)
    kind = ["ok", "exception", "nan_loss", "oom", "inf", "ok"][trial.number]
    if kind == "exception":
        raise RuntimeError("disk on fire")
    if kind == "oom":
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    if kind == "inf":
        return math.inf
    model = MLP(784, [8], 10)
    if kind == "nan_loss":
        with torch.no_grad():
            model[0].bias.fill_(float("nan"))
    return run.fit(model, lr=1e-3, batch_size=100)


FAULTY = StudyDefinition(
    name="faulty", summary="test", dataset="mnist", objective=_faulty_objective,
    search_space={"x": FloatDistribution(0.0, 1.0)}, build_model=lambda p: MLP(784, [8], 10),
    epochs=1, trials=6, pruner="none", sampler="random",
)


def test_errors_inside_trials_fail_only_that_trial(sqlite_url: str, mnist_dir: Path) -> None:
    study = run_inline(make_spec(sqlite_url, "tests.run.test_worker:FAULTY", trials=6,
                                    data_dir=str(mnist_dir)))
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "FAIL", "FAIL", "FAIL",
                                              "COMPLETE"]
    reasons = [t.user_attrs.get("fail_reason", "") for t in trials]
    assert reasons[1] == "RuntimeError: disk on fire"
    assert reasons[2].startswith("TrainingDiverged: the training loss became nan")
    assert reasons[3].startswith("CUDA out of memory")
    assert reasons[4] == "the objective returned inf"
    assert counted_finished(trials) == 6


def _peer_fails_me(trial: optuna.Trial, run) -> float:
    trial.suggest_float("x", 0.0, 1.0)
    if trial.number == 0:
        # What a peer's heartbeat check does to a trial it believes dead.
        trial.storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    return run.fit(MLP(784, [], 10), lr=1e-2, batch_size=100)


PEER = StudyDefinition(
    name="peer", summary="test", dataset="mnist", objective=_peer_fails_me,
    search_space={"x": FloatDistribution(0.0, 1.0)}, build_model=lambda p: MLP(784, [], 10),
    epochs=1, pruner="none", sampler="random")


def test_trial_failed_by_a_peer_does_not_crash_the_worker(sqlite_url: str,
                                                          mnist_dir: Path) -> None:
    study = run_inline(make_spec(sqlite_url, "tests.run.test_worker:PEER", trials=2,
                                    data_dir=str(mnist_dir)))
    # The abandoned trial does not use up the budget: two more trials ran to an end.
    assert states(study) == ["FAIL", "COMPLETE", "COMPLETE"]
    assert "fail_reason" not in study.trials[0].user_attrs




class RecordedEvents:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def emit(self, kind: str, **fields: Any) -> None:
        self.sent.append((kind, fields))


def _study_whose_best_is_two_trials_old(spec) -> optuna.Study:
    """The study of ``spec``: the baseline waits, enqueued as trial 0, then the best (a value no
    trial can beat) and two pruned trials have finished."""
    study = launch.prepare(launch.Plan.of(spec)).study
    study.add_trial(optuna.trial.create_trial(value=2.0))
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED,
                                                  intermediate_values={1: 0.1}))
    return study


def test_a_worker_stops_once_patience_is_spent(sqlite_url: str, mnist_dir: Path) -> None:
    """Patience 3 with two trials since the best: the worker runs one more trial (the baseline,
    which cannot beat the best), then stops with its budget of five unspent."""
    spec = make_spec(sqlite_url, trials=5, patience=3, data_dir=str(mnist_dir))
    study = _study_whose_best_is_two_trials_old(spec)
    events = RecordedEvents()
    ran = make_worker(spec, budget=LocalBudget(5), events=events).run()
    assert ran == 1
    assert states(study) == ["COMPLETE", "COMPLETE", "PRUNED", "PRUNED"]
    assert ("study_done", {"reason": "3 finished trials in a row brought no new best "
                                     "(--patience)"}) in events.sent


def test_a_worker_starts_no_trial_after_the_deadline(sqlite_url: str, mnist_dir: Path) -> None:
    spec = make_spec(sqlite_url, trials=5, deadline=time.time() - 1, data_dir=str(mnist_dir))
    study = _study_whose_best_is_two_trials_old(spec)
    events = RecordedEvents()
    assert make_worker(spec, budget=LocalBudget(5), events=events).run() == 0
    assert states(study) == ["WAITING", "COMPLETE", "PRUNED", "PRUNED"]
    [(_, fields)] = [e for e in events.sent if e[0] == "study_done"]
    assert fields["reason"].startswith("the launch's --timeout ran out at ")


def test_the_study_wide_total_counts_pruned_and_failed_trials(sqlite_url: str,
                                                              mnist_dir: Path) -> None:
    """--total 4 with a complete, a pruned and a failed trial already finished: one more trial
    (the waiting baseline) and the study is done, whatever this worker's own budget."""
    spec = make_spec(sqlite_url, trials=5, total=4, data_dir=str(mnist_dir))
    study = launch.prepare(launch.Plan.of(spec)).study
    study.add_trial(optuna.trial.create_trial(value=0.5))
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED,
                                              intermediate_values={1: 0.1}))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    events = RecordedEvents()
    assert make_worker(spec, budget=LocalBudget(5), events=events).run() == 1
    assert states(study) == ["COMPLETE", "COMPLETE", "PRUNED", "FAIL"]
    assert ("study_done", {"reason": "the study holds its total of 4 trials"}) in events.sent


def test_a_survivor_runs_the_retry_of_a_machine_lost_near_the_end(sqlite_url: str) -> None:
    """--total 2, and the other machine died mid-trial (its heartbeat stopped): the survivor
    waits for that trial to be found stale, runs its retry, and the study holds 2 finished
    trials, not 1 COMPLETE, 1 FAIL and a retry left WAITING."""
    from hpo.storage.engine import open_storage

    spec = make_spec(sqlite_url, "tests.run.test_supervisor:INSTANT", trials=None, total=2,
                     heartbeat_interval=1, grace_period=2)
    launch.prepare(launch.Plan.of(spec))
    storage = open_storage(sqlite_url, heartbeat_interval=1, grace_period=2)
    study = optuna.load_study(study_name="instant", storage=storage)
    dead = study.ask()
    dead.suggest_float("x", 0.0, 1.0)
    storage.record_heartbeat(dead._trial_id)  # one beat, then its machine is gone
    worker = make_worker(spec, budget=LocalBudget(None))
    worker.run()
    trials = worker.study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE,
                                         TrialState.COMPLETE]
    assert trials[2].params == trials[0].params  # the retry of the lost trial
    assert counted_finished(trials) == 2


def test_an_artifact_folder_that_cannot_be_written_costs_only_the_files(
        sqlite_url: str, mnist_dir: Path, tmp_path: Path, caplog) -> None:
    """HPO_ARTIFACT_DIR under a file (a read-only mount reads the same): the worker warns, and
    the trial keeps its result; no checkpoint and no resume point is written."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    spec = make_spec(sqlite_url, trials=1, epochs=1, data_dir=str(mnist_dir),
                     artifact_dir=str(blocker / "artifacts"), keep_checkpoints=2)
    study = run_inline(spec)
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE]
    assert "Cannot write checkpoints" in caplog.text
    assert "Could not write the resume point" in caplog.text


def _ends_the_program(trial: optuna.Trial, run) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    if trial.number == 0:
        raise SystemExit(0)
    if trial.number == 1:
        raise KeyboardInterrupt
    return x


def _exiting_study() -> StudyDefinition:
    from tests.run.test_supervisor import definition

    return definition("exiting", _ends_the_program)


EXITING = _exiting_study()


def test_an_objective_that_exits_fails_only_its_trial(sqlite_url: str) -> None:
    """sys.exit() or KeyboardInterrupt raised by the user's objective is that trial's failure,
    with the reason, not a lost worker (3 restarts, 4 FAIL rows of the same params)."""
    study = run_inline(make_spec(sqlite_url, "tests.run.test_worker:EXITING", trials=3))
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "FAIL", "COMPLETE"]
    assert [t.user_attrs.get("fail_reason") for t in trials[:2]] == [
        "the objective called sys.exit(0)", "the objective raised KeyboardInterrupt"]
