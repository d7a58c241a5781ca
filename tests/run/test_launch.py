"""hpo/run/launch.py: launching worker processes on one SQLite study and reading the study back,
and the recorded spec that a relaunch and a worker reuse."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from hpo import registry
from hpo.cli import app
from hpo.errors import HpoError
from hpo.run import launch
from hpo.run.worker import counted_finished
from hpo.storage import records
from tests.helpers import make_spec, run_inline

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


@pytest.mark.slow
def test_two_worker_launch_is_exact_and_reads_back(tmp_path: Path, mnist_dir: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    result = invoke("launch", "mnist-mlp", "--trials", "6", "--workers", "2", "--epochs", "2",
                    "--storage", url, "--data-dir", str(mnist_dir), "--seed", "7")
    assert result.exit_code == 0, result.stderr
    study = optuna.load_study(study_name="mnist-mlp", storage=url)
    trials = study.get_trials()
    assert counted_finished(trials) == 6 == len(trials)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert {t.user_attrs["worker"] for t in trials}.__len__() == 2  # both workers ran trials
    assert "Best val_accuracy" in result.stdout and "hpo dashboard" in result.stdout

    # Resuming adds exactly --trials more.
    result = invoke("launch", "mnist-mlp", "--trials", "2", "--workers", "2", "--epochs", "2",
                    "--storage", url, "--data-dir", str(mnist_dir))
    assert result.exit_code == 0, result.stderr
    trials = optuna.load_study(study_name="mnist-mlp", storage=url).get_trials()
    assert counted_finished(trials) == 8

    status = invoke("status", "--storage", url)
    assert status.exit_code == 0
    assert "mnist-mlp" in status.stdout and "complete" in status.stdout

    best = invoke("best", "mnist-mlp", "--json", "--storage", url)
    assert best.exit_code == 0
    payload = json.loads(best.stdout)  # only JSON on stdout
    best_trial = max((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert payload["trial"] == best_trial.number and payload["value"] == best_trial.value
    assert payload["params"] == best_trial.params and payload["metric"] == "val_accuracy"

    exported = invoke("export", "mnist-mlp", "--storage", url)
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert len(rows) == 8 and {"number", "state", "value", "params_lr"} <= set(rows[0])
    out = tmp_path / "trials.json"
    assert invoke("export", "mnist-mlp", "--storage", url, "--output", str(out)).exit_code == 0
    data = json.loads(out.read_text())
    assert len(data["trials"]) == 8
    assert data["trials"][0]["intermediate_values"].keys() == {"1", "2"}


@pytest.mark.slow
def test_synthetic_launch_from_the_issue(tmp_path: Path) -> None:
    """The done-when of the core issue: 6 new finished trials, none running, best printed."""
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    result = invoke("launch", "mnist-mlp", "--trials", "6", "--workers", "2", "--synthetic",
                    "--epochs", "1", "--storage", url)
    assert result.exit_code == 0, result.stderr
    trials = optuna.load_study(study_name="mnist-mlp", storage=url).get_trials()
    assert counted_finished(trials) == 6
    assert all(t.state.is_finished() for t in trials)
    assert "6 trial(s) finished in this launch" in result.stdout
    assert "Wasted epochs: " in result.stdout  # measured against the enqueued baseline


def test_dry_run_prints_the_plan(sqlite_url: str) -> None:
    result = invoke("launch", "mnist-mlp", "--workers", "2", "--synthetic", "--dry-run",
                    "--storage", sqlite_url, "--gpus", "none")
    assert result.exit_code == 0
    assert "worker 0 -> cpu, 1 thread(s)" in result.stdout
    assert "worker 1 -> cpu" in result.stdout
    assert "budget:   50 trial(s)" in result.stdout


def test_the_recorded_spec_is_what_a_relaunch_and_a_worker_use(sqlite_url: str,
                                                               mnist_dir: Path) -> None:
    run_inline(make_spec(sqlite_url, trials=1, epochs=2, seed=11, pruner="median",
                         data_dir=str(mnist_dir)))
    study = records.load(launch.open_for(make_spec(sqlite_url)), "mnist-mlp")
    recorded = records.recorded_spec(study)
    assert (recorded["study"], recorded["epochs"], recorded["seed"], recorded["pruner"]) == (
        "mnist-mlp", 2, 11, "median")
    relaunch = launch.build_spec("mnist-mlp", worker=False, study_name=None,
                                 storage_url=sqlite_url, data_dir=str(mnist_dir),
                                 flags={"epochs": 4})
    assert (relaunch.epochs, relaunch.seed, relaunch.pruner, relaunch.trials) == (
        4, 11, "median", registry.resolve("mnist-mlp").definition.trials)
    joined = launch.build_spec(None, worker=True, study_name="mnist-mlp", storage_url=sqlite_url,
                               data_dir=str(mnist_dir), flags={"trials": None})
    assert (joined.epochs, joined.seed, joined.trials, joined.study) == (2, 11, None, "mnist-mlp")


def test_a_grid_launch_defaults_to_the_whole_grid(sqlite_url: str) -> None:
    spec = launch.build_spec("mnist-mlp-seed", worker=False, study_name=None,
                             storage_url=sqlite_url, data_dir="data", flags={})
    assert spec.sampler == "grid" and spec.trials == 3


def test_a_worker_needs_a_study_it_can_find(sqlite_url: str) -> None:

    with pytest.raises(HpoError, match="There is no study named 'nope' to join yet"):
        launch.build_spec(None, worker=True, study_name="nope", storage_url=sqlite_url,
                          data_dir="data", flags={})
