"""Faults on one machine (SQLite): a worker killed mid-trial, Ctrl-C and SIGTERM to the
launcher, and many workers racing through many short trials."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.run.budget import counted_finished
from tests.helpers import hpo_process, running_trials, wait_for

pytestmark = pytest.mark.slow


def load_trials(url: str, name: str = "mnist-mlp") -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials()


def assert_nothing_running(trials: list[optuna.trial.FrozenTrial]) -> None:
    stuck = [t.number for t in trials if t.state in (TrialState.RUNNING,)]
    assert not stuck, f"trials left RUNNING: {stuck}"


def test_sigkill_mid_trial_retries_same_params_and_meets_budget(tmp_path: Path,
                                                                mnist_dir: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    launch = hpo_process("launch", "mnist-mlp", "--trials", "4", "--workers", "2",
                         "--data-dir", str(mnist_dir), "--epochs", "10", "--storage", url,
                         "--seed", "3", "--heartbeat-interval", "1", "--grace-period", "3")
    victim = wait_for(lambda: running_trials(url, "mnist-mlp"), what="a trial mid-way")[0]
    os.kill(int(victim.user_attrs["worker"].split(":")[1]), signal.SIGKILL)
    _out, err = launch.communicate(timeout=300)
    assert launch.returncode == 0, err

    trials = load_trials(url)
    assert counted_finished(trials) == 4
    assert_nothing_running(trials)
    killed = trials[victim.number]
    assert killed.state == TrialState.FAIL
    assert killed.user_attrs["fail_reason"].startswith("worker lost")
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1
    assert retries[0].params == killed.params and retries[0].state.is_finished()
    assert "restarting it" in err  # the launcher replaced the dead worker


@pytest.mark.parametrize("signals", [[signal.SIGINT], [signal.SIGTERM],
                                     [signal.SIGINT, signal.SIGINT]],
                         ids=["ctrl-c", "sigterm", "double-ctrl-c"])
def test_stopping_the_launcher_leaves_nothing_running(tmp_path: Path, mnist_dir: Path,
                                                      signals) -> None:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    launch = hpo_process("launch", "mnist-mlp", "--trials", "20", "--workers", "2",
                         "--data-dir", str(mnist_dir), "--epochs", "50", "--storage", url,
                         "--pruner", "none")
    wait_for(lambda: len(running_trials(url, "mnist-mlp")) == 2, what="two running trials")
    started = time.monotonic()
    for sig in signals:
        launch.send_signal(sig)
        time.sleep(0.3)
    out, err = launch.communicate(timeout=120)
    assert launch.returncode == 130, err
    assert time.monotonic() - started < 60
    trials = load_trials(url)
    assert_nothing_running(trials)
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert len(stopped) == 2
    # Each interrupted trial is queued again with the same params (the next launch resumes
    # it) and does not count, so the summary's "queued again" is true after two signals too.
    waiting = {t.system_attrs.get("failed_trial"): t for t in trials
               if t.state == TrialState.WAITING}
    assert sorted(waiting) == sorted(t.number for t in stopped), waiting
    for trial in stopped:
        reason = trial.user_attrs["fail_reason"]
        assert reason.startswith("interrupted") or reason.startswith("worker lost"), reason
        assert waiting[trial.number].params == trial.params
    assert counted_finished(trials) == 0
    assert "queued again" in out and "0 trial(s) finished in this launch" in out, out
    assert "resuming the interrupted trials first" in err, err
    assert "Traceback" not in err


def test_many_workers_many_short_trials_sqlite(tmp_path: Path, mnist_dir: Path) -> None:
    many_short_trials(f"sqlite:///{tmp_path / 'hpo.db'}", mnist_dir)


def many_short_trials(url: str, mnist_dir: Path, *, workers: int = 4, trials: int = 40) -> None:
    launch = hpo_process("launch", "logreg-loss", "--trials", str(trials), "--workers",
                         str(workers), "--epochs", "1", "--storage", url, "--data-dir",
                         str(mnist_dir), "--sampler", "random", "--keep-checkpoints", "0")
    _out, err = launch.communicate(timeout=600)
    assert launch.returncode == 0, err
    assert "database is locked" not in err
    done = load_trials(url, "logreg-loss")
    numbers = [t.number for t in done]
    assert len(numbers) == len(set(numbers)) == trials
    assert sorted(numbers) == list(range(trials))
    assert counted_finished(done) == trials
    assert all(t.state == TrialState.COMPLETE for t in done), [t.user_attrs for t in done]
    assert len({t.user_attrs["worker"] for t in done}) == workers
