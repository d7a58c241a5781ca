"""A retried trial resumes from its last epoch (reliability round 2, part C).

Every epoch a trial trained by ``TrialRun.fit`` saves a resume point under
``<artifact_dir>/resume/<study>/<original trial number>.pt``; the retry of a trial whose worker
died loads it, re-reports the curve so far and trains only the remaining epochs. A corrupt or
foreign file is ignored with a warning.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from hpo import _optuna
from hpo.run import launch
from hpo.run.budget import LocalBudget
from studies.mnist_mlp import STUDY as MNIST
from tests.helpers import (
    hpo_process,
    make_spec,
    make_worker,
    run_inline,
    wait_for,
    write_mnist,
)


def left_in(folder: Path) -> list[Path]:
    """What a study's resume folder holds; the folder goes with its last resume point."""
    return list(folder.iterdir()) if folder.exists() else []


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Smaller than conftest's: these tests compare curves, they need no accuracy."""
    return write_mnist(tmp_path_factory.mktemp("mnist-small"), n_train=1000, n_test=100)


class WorkerDied(BaseException):
    """Stands for SIGKILL in-process: nothing in the worker catches it, nothing is told."""


class Epochs:
    """Records the epochs a worker trains (its progress events); dies after ``die_at``."""

    def __init__(self, die_at: int | None = None, check: Any = None) -> None:
        self.die_at = die_at
        self.check = check
        self.trained: list[tuple[int, int]] = []  # (trial, epoch)

    def emit(self, kind: str, **fields: Any) -> None:
        if kind != "epoch":
            return
        self.trained.append((fields["trial"], fields["epoch"]))
        if self.check is not None:
            self.check(fields)
        if fields["epoch"] == self.die_at:
            raise WorkerDied


def spec_for(url: str, mnist_dir: Path, artifacts: Path, **fields: Any):
    defaults: dict[str, Any] = dict(epochs=5, trials=1, data_dir=str(mnist_dir),
                                    artifact_dir=str(artifacts))
    defaults.update(fields)
    return make_spec(url, "mnist-mlp", **defaults)


def resume_dir(artifacts: Path, study: str = "mnist-mlp") -> Path:
    return artifacts / "resume" / study


def kill_first_trial(spec, at_epoch: int) -> optuna.Study:
    """Run trial 0 until ``at_epoch`` and let its worker die there; then do what the launcher
    does on seeing it die: fail the trial and queue it again with the same params."""
    launch.prepare(launch.Plan.of(spec))
    worker = make_worker(spec, budget=LocalBudget(1), events=Epochs(die_at=at_epoch))
    with pytest.raises(WorkerDied):
        worker.run()
    study = worker.study
    (victim,) = study.get_trials(states=(TrialState.RUNNING,))
    assert len(victim.intermediate_values) == at_epoch
    worker.storage.set_trial_state_values(_optuna.trial_id_of(victim), TrialState.FAIL)
    RetryHeartbeatStaleTrialCallback()(study, worker.storage.get_trial(
        _optuna.trial_id_of(victim)))
    return study


def run_retry(spec) -> tuple[optuna.Study, Epochs]:
    epochs = Epochs()
    worker = make_worker(spec, budget=LocalBudget(1), events=epochs)
    worker.run()
    return worker.study, epochs


def test_retry_resumes_from_the_last_epoch_with_an_unbroken_curve(
        tmp_path: Path, mnist_dir: Path, sqlite_url: str) -> None:
    artifacts = tmp_path / "artifacts"
    spec = spec_for(sqlite_url, mnist_dir, artifacts)
    kill_first_trial(spec, at_epoch=3)
    # One resume point for the dead trial, the latest, written whole (no temporary left).
    assert sorted(p.name for p in resume_dir(artifacts).iterdir()) == ["0.pt"]

    study, epochs = run_retry(spec)
    retry = study.trials[1]
    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == 0
    assert retry.state == TrialState.COMPLETE
    assert epochs.trained == [(1, 4), (1, 5)]  # only the two remaining epochs
    assert retry.user_attrs["resumed_from_epoch"] == 3
    assert retry.user_attrs["epochs_run"] == 5  # the trial's whole curve, as evaluate needs
    assert retry.user_attrs["seed"] == study.trials[0].user_attrs["seed"]

    # The same trial trained without a break, in another study of the same seed.
    unbroken = run_inline(make_spec(sqlite_url, "mnist-mlp", study_name="unbroken", epochs=5,
                                    trials=1, data_dir=str(mnist_dir)))
    expected = unbroken.trials[0]
    assert retry.intermediate_values == expected.intermediate_values
    assert retry.value == expected.value
    # The trial ended COMPLETE: its resume point is gone.
    assert left_in(resume_dir(artifacts)) == []


# mnist-mlp whose baseline (trial 0, the one these tests kill) trains with dropout, so that a
# resume must restore the random number generators too: the masks are drawn from them.
DROPOUT = replace(MNIST, name="mnist-dropout", baseline={**MNIST.baseline, "dropout": 0.3})


def test_a_resumed_trial_with_dropout_trains_as_an_unbroken_one(
        tmp_path: Path, mnist_dir: Path, sqlite_url: str) -> None:
    reference = "tests.train.test_resume:DROPOUT"
    spec = make_spec(sqlite_url, reference, epochs=4, trials=1, data_dir=str(mnist_dir),
                     artifact_dir=str(tmp_path / "artifacts"))
    kill_first_trial(spec, at_epoch=2)
    study, epochs = run_retry(spec)
    retry = study.trials[1]
    assert retry.params["dropout"] == 0.3 and epochs.trained == [(1, 3), (1, 4)]
    unbroken = run_inline(make_spec(sqlite_url, reference, study_name="unbroken", epochs=4,
                                    trials=1, data_dir=str(mnist_dir))).trials[0]
    assert retry.intermediate_values == unbroken.intermediate_values  # epoch by epoch
    assert retry.value == unbroken.value


def test_a_retry_of_a_retry_resumes_from_the_original_trials_point(
        tmp_path: Path, mnist_dir: Path, sqlite_url: str) -> None:
    artifacts = tmp_path / "artifacts"
    spec = spec_for(sqlite_url, mnist_dir, artifacts)
    study = kill_first_trial(spec, at_epoch=2)
    worker = make_worker(spec, budget=LocalBudget(1), events=Epochs(die_at=3))
    with pytest.raises(WorkerDied):
        worker.run()
    (second,) = study.get_trials(states=(TrialState.RUNNING,))
    assert second.user_attrs["resumed_from_epoch"] == 2
    worker.storage.set_trial_state_values(_optuna.trial_id_of(second), TrialState.FAIL)
    RetryHeartbeatStaleTrialCallback()(study, worker.storage.get_trial(
        _optuna.trial_id_of(second)))

    study, epochs = run_retry(spec)
    third = study.trials[2]
    assert third.state == TrialState.COMPLETE
    assert epochs.trained == [(2, 4), (2, 5)]
    assert third.user_attrs["resumed_from_epoch"] == 3
    assert len(third.intermediate_values) == 5


def _corrupt_garbage(path: Path) -> None:
    path.write_bytes(b"\x00not a checkpoint" * 100)


def _corrupt_truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


def _foreign_keys(path: Path) -> None:
    torch.save({"hello": torch.zeros(3)}, path)


def _other_params(path: Path) -> None:
    point = torch.load(path, weights_only=True)
    point["params"] = {**point["params"], "lr": 0.5}
    torch.save(point, path)


def _other_network(path: Path) -> None:
    point = torch.load(path, weights_only=True)
    model = point["training"]["model"]
    first = next(iter(model))
    model[first] = torch.zeros(3, 3)
    torch.save(point, path)


class Sneaky:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("touch pwned",))


def _code_in_pickle(path: Path) -> None:
    torch.save({"format": "hpo-resume/1", "params": Sneaky()}, path)


@pytest.mark.parametrize("damage", [_corrupt_garbage, _corrupt_truncated, _foreign_keys,
                                    _other_params, _other_network, _code_in_pickle],
                         ids=["garbage", "truncated", "foreign-keys", "other-params",
                              "other-network", "code-in-pickle"])
def test_a_bad_resume_point_is_ignored_with_a_warning(
        tmp_path: Path, mnist_dir: Path, sqlite_url: str, damage: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    artifacts = tmp_path / "artifacts"
    spec = spec_for(sqlite_url, mnist_dir, artifacts, epochs=3)
    kill_first_trial(spec, at_epoch=2)
    damage(resume_dir(artifacts) / "0.pt")

    with caplog.at_level(logging.WARNING):
        study, epochs = run_retry(spec)
    retry = study.trials[1]
    assert retry.state == TrialState.COMPLETE
    assert epochs.trained == [(1, 1), (1, 2), (1, 3)]  # from scratch
    assert "resumed_from_epoch" not in retry.user_attrs
    assert len(retry.intermediate_values) == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("resume point" in w and "from scratch" in w for w in warnings), warnings
    assert not (tmp_path / "pwned").exists()


def test_a_full_disk_costs_the_resume_point_not_the_trial(
        tmp_path: Path, mnist_dir: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    def no_space(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    from hpo.train import resume

    monkeypatch.setattr(resume.torch, "save", no_space)
    artifacts = tmp_path / "artifacts"
    with caplog.at_level(logging.WARNING):
        study = run_inline(spec_for(sqlite_url, mnist_dir, artifacts, epochs=3))
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE and len(trial.intermediate_values) == 3
    warnings = [r.getMessage() for r in caplog.records if "resume point" in r.getMessage()]
    assert len(warnings) == 1 and "No space left" in warnings[0], warnings
    assert not any(resume_dir(artifacts).glob("*"))  # no temporary file left behind


def test_a_pruned_trial_leaves_no_resume_point(
        tmp_path: Path, mnist_dir: Path, sqlite_url: str) -> None:
    study_file = tmp_path / "strict_study.py"
    study_file.write_text(
        "from studies.mnist_mlp import STUDY\n"
        "import dataclasses\n"
        "STRICT = dataclasses.replace(STUDY, name='strict', floor=1.01, baseline=None)\n"
    )
    artifacts = tmp_path / "artifacts"
    seen: list[bool] = []
    spec = make_spec(sqlite_url, f"{study_file}:STRICT", pruner="median", epochs=3, trials=1,
                     data_dir=str(mnist_dir), artifact_dir=str(artifacts))
    launch.prepare(launch.Plan.of(spec))
    events = Epochs(check=lambda fields: seen.append(
        (resume_dir(artifacts, "strict") / f"{fields['trial']}.pt").exists()))
    worker = make_worker(spec, budget=LocalBudget(1), events=events)
    worker.run()
    (trial,) = worker.study.trials
    assert trial.state == TrialState.PRUNED
    assert seen == [True]  # it had one while it trained
    assert left_in(resume_dir(artifacts, "strict")) == []


def test_study_names_become_one_safe_folder(tmp_path: Path) -> None:
    from hpo.train.resume import resume_path

    for name in ("../../etc", "a/b", ".", "", "ok-name_1.2"):
        path = resume_path(tmp_path, name, 4)
        assert path.parent.parent == tmp_path / "resume", name
        assert path.name == "4.pt"
    assert resume_path(tmp_path, "a/b", 1) != resume_path(tmp_path, "a_b", 1)


# -- a real launch: SIGKILL the worker process at epoch 7 -------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_killed_worker_s_trial_resumes_at_epoch_7_in_a_real_launch(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    # 8,000 training images: epochs long enough (~0.2 s on an idle core) to catch epoch 7.
    data = write_mnist(tmp_path_factory.mktemp("mnist-10k"), n_train=10000, n_test=100)
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    artifacts = tmp_path / "artifacts"
    started = time.monotonic()
    process = hpo_process("launch", "mnist-mlp", "--trials", "1", "--workers", "1",
                          "--epochs", "10", "--pruner", "none", "--sampler", "random",
                          "--seed", "5", "--storage", url, "--data-dir", str(data),
                          "--gpus", "none", "--heartbeat-interval", "1",
                          env={**os.environ, "HPO_ARTIFACT_DIR": str(artifacts)},
                          new_session=True)

    storage = optuna.storages.RDBStorage(url)

    def at_epoch_7() -> optuna.trial.FrozenTrial | None:
        try:
            study_id = storage.get_study_id_from_name("mnist-mlp")
        except KeyError:
            return None
        trials = storage.get_all_trials(study_id, states=(TrialState.RUNNING,))
        return next((t for t in trials if len(t.intermediate_values) >= 7), None)

    try:
        victim = wait_for(at_epoch_7, timeout=540, interval=0.02, what="trial 0 at epoch 7")
        killed_at = len(victim.intermediate_values)
        os.kill(int(victim.user_attrs["worker"].split(":")[1]), signal.SIGKILL)
        _out, err = process.communicate(timeout=540)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    wall = time.monotonic() - started
    assert process.returncode == 0, err
    assert "restarting it" in err

    trials = optuna.load_study(study_name="mnist-mlp", storage=url).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    original, retry = trials
    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == original.number
    assert killed_at == 7, "the test polled too slowly to catch epoch 7"
    assert retry.user_attrs["resumed_from_epoch"] == 7
    assert retry.user_attrs["epochs_run"] - retry.user_attrs["resumed_from_epoch"] == 3
    assert len(retry.intermediate_values) == 10
    for epoch in range(1, 8):
        assert retry.intermediate_values[epoch] == original.intermediate_values[epoch]
    assert left_in(artifacts / "resume" / "mnist-mlp") == []
    print(f"\nkilled at epoch {killed_at}; retry trained "
          f"{retry.user_attrs['epochs_run'] - retry.user_attrs['resumed_from_epoch']} epochs "
          f"in {retry.duration.total_seconds():.1f} s "
          f"({retry.user_attrs['seconds_per_epoch']} s/epoch); the original's 7 epochs took "
          f"{(original.datetime_complete - original.datetime_start).total_seconds():.1f} s; "
          f"whole launch {wall:.1f} s")


@pytest.mark.parametrize("length", [256, 300, 512])
def test_a_study_name_of_up_to_512_characters_keeps_its_resume_point(tmp_path: Path,
                                                                     length: int) -> None:
    """Study names fill Optuna's 512-character column; every file name hpo derives from one is
    bounded and hashed, so a retry never meets "File name too long" (issue 18, Part 3)."""
    from hpo.train.resume import ResumePoint, resume_path

    names = ["a" * length, "a" * (length - 1) + "b"]
    paths = [resume_path(tmp_path, name, 3) for name in names]
    assert paths[0] != paths[1] and all(len(p.parent.name) <= 100 for p in paths)
    point = ResumePoint(paths[0], {"trial": 3})
    point.save([0.5], {"epoch": 1})
    assert paths[0].exists()


def test_the_last_resume_point_of_a_study_takes_its_empty_folder_with_it(tmp_path: Path) -> None:
    """A finished study leaves no empty resume/<study>/ behind (issue 18, Part 5); a folder
    that still holds another trial's point stays."""
    from hpo.train.resume import ResumePoint, resume_path

    first = ResumePoint(resume_path(tmp_path, "s", 1), {"trial": 1})
    second = ResumePoint(resume_path(tmp_path, "s", 2), {"trial": 2})
    first.save([0.5], {"epoch": 1})
    second.save([0.5], {"epoch": 1})
    first.discard()
    assert second.path.exists()
    second.discard()
    assert not second.path.parent.exists()
    first.save([0.6], {"epoch": 1})  # a retry after all: the folder comes back
    assert first.path.exists()
