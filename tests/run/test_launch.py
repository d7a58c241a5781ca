"""hpo/run/launch.py: the launch sequence. plan decides every setting and refuses before
anything is written, prepare creates or resumes the study, run supervises the workers; and two
whole launches on one SQLite study, read back with the other commands."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from hpo import registry
from hpo.cli import app
from hpo.errors import HpoError
from hpo.run import launch
from hpo.run.budget import counted_finished
from hpo.settings import cpu_count
from hpo.storage import records
from hpo.storage.engine import open_storage
from tests.helpers import make_spec, run_inline

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def build_spec(*args, **kwargs):
    return launch.plan(*args, **kwargs).spec


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
    assert (f"Then: hpo evaluate mnist-mlp --storage {url} (its test accuracy), hpo report "
            f"mnist-mlp --storage {url} (plots and a summary)") in result.stdout
    assert re.search(r"The best was trial \d+, found \d+\.\d minutes in, after \d+% of the "
                     r"study's compute\.", result.stdout)

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
    threads = max(1, cpu_count() // 2)  # the cores divided between the two workers
    assert f"worker 0 -> cpu, {threads} thread(s)" in result.stdout
    assert f"worker 1 -> cpu, {threads} thread(s)" in result.stdout
    assert "budget:   50 trial(s)" in result.stdout


def test_the_recorded_spec_is_what_a_relaunch_and_a_worker_use(sqlite_url: str,
                                                               mnist_dir: Path) -> None:
    run_inline(make_spec(sqlite_url, trials=1, epochs=2, seed=11, pruner="median",
                         data_dir=str(mnist_dir)))
    study = records.load(open_storage(sqlite_url), "mnist-mlp")
    recorded = records.recorded_spec(study)
    assert (recorded["study"], recorded["epochs"], recorded["seed"], recorded["pruner"]) == (
        "mnist-mlp", 2, 11, "median")
    relaunch = build_spec("mnist-mlp", worker=False, study_name=None,
                          storage_url=sqlite_url, data_dir=str(mnist_dir),
                          flags={"epochs": 4})
    assert (relaunch.epochs, relaunch.seed, relaunch.pruner, relaunch.trials) == (
        4, 11, "median", registry.resolve("mnist-mlp").definition.trials)
    joined = build_spec(None, worker=True, study_name="mnist-mlp", storage_url=sqlite_url,
                        data_dir=str(mnist_dir), flags={"trials": None})
    assert (joined.epochs, joined.seed, joined.trials, joined.study) == (2, 11, None, "mnist-mlp")


def test_patience_and_timeout_are_recorded_for_every_worker(sqlite_url: str,
                                                           mnist_dir: Path) -> None:
    """--timeout is this launch's deadline, which a joining worker keeps and a new launch
    does not; --patience is kept like the other recorded settings, and 0 turns it off."""
    def planned(worker: bool, **flags):
        return launch.plan(None if worker else "mnist-mlp", worker=worker,
                           study_name="mnist-mlp", storage_url=sqlite_url,
                           data_dir=str(mnist_dir), flags={"trials": None, **flags})

    before = time.time()
    first = planned(False, timeout=600, patience=7)
    assert before + 600 <= first.spec.deadline <= time.time() + 600
    assert first.spec.patience == 7
    launch.prepare(first)  # records the spec on the study
    joined = planned(True).spec
    assert (joined.deadline, joined.patience) == (first.spec.deadline, 7)
    relaunch = planned(False).spec
    assert (relaunch.deadline, relaunch.patience) == (None, 7)
    assert planned(False, patience=0).spec.patience == 0


def test_a_launch_past_its_timeout_says_it_is_done(tmp_path: Path) -> None:
    """The worker process finds the deadline passed before its first trial: the launch ends
    with none run, says why, and does not call it a failure."""
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    result = invoke("launch", "mnist-mlp", "--trials", "5", "--synthetic", "--epochs", "1",
                    "--timeout", "1", "--storage", url)
    assert result.exit_code == 0, result.stderr
    assert "0 trial(s) finished in this launch" in result.stdout
    assert "Done before the budget: the launch's --timeout ran out at " in result.stdout


@pytest.mark.parametrize("existing", [False, True])
def test_a_launch_resolves_its_study_and_opens_its_storage_once(
        sqlite_url: str, existing: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if existing:
        launch.prepare(launch.Plan.of(make_spec(sqlite_url, synthetic=True)))
    opened, resolved = [], []
    monkeypatch.setattr(launch, "open_storage",
                        lambda *args, **kwargs: opened.append(args) or open_storage(*args,
                                                                                    **kwargs))
    monkeypatch.setattr(launch.registry, "resolve",
                        lambda reference: resolved.append(reference) or
                        registry._resolve(reference))
    plan = launch.plan("mnist-mlp", worker=False, study_name=None, storage_url=sqlite_url,
                       data_dir="data", flags={"trials": 1, "synthetic": True})
    prepared = launch.prepare(plan)
    assert len(opened) == 1 and resolved == ["mnist-mlp"]
    assert prepared.storage is (plan.storage if existing else prepared.storage)
    assert records.recorded_spec(prepared.study)["synthetic"] is True


def test_a_grid_launch_defaults_to_the_whole_grid(sqlite_url: str) -> None:
    spec = build_spec("mnist-mlp-seed", worker=False, study_name=None,
                      storage_url=sqlite_url, data_dir="data", flags={})
    assert spec.sampler == "grid" and spec.trials == 3


def test_a_worker_needs_a_study_it_can_find(sqlite_url: str) -> None:
    from hpo.errors import HpoError

    with pytest.raises(HpoError, match="There is no study named 'nope' to join yet"):
        build_spec(None, worker=True, study_name="nope", storage_url=sqlite_url,
                   data_dir="data", flags={})


def test_a_worker_joining_with_another_definition_is_refused(sqlite_url: str) -> None:
    spec = make_spec(sqlite_url, synthetic=True, study_name="shared")
    launch.prepare(launch.Plan.of(spec))
    with pytest.raises(HpoError, match=re.escape(
            "Study 'shared' runs the definition 'mnist-mlp', not 'logreg-loss' from "
            "'logreg-loss': drop the study argument, or choose another --study-name.")):
        build_spec("logreg-loss", worker=True, study_name="shared",
                   storage_url=sqlite_url, data_dir="data", flags={})
    joined = build_spec("mnist-mlp", worker=True, study_name="shared",
                        storage_url=sqlite_url, data_dir="data", flags={})
    assert (joined.study_name, joined.synthetic) == ("shared", True)  # the recorded data


def test_planning_leaves_no_database_behind(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    spec = build_spec("mnist-mlp", worker=False, study_name=None, storage_url=url,
                      data_dir="data", flags={"trials": 2})
    assert spec.trials == 2 and spec.study_name == "mnist-mlp"
    assert not (tmp_path / "new.db").exists()


def test_a_dry_run_plans_without_a_reachable_database(caplog: pytest.LogCaptureFixture) -> None:
    url = "postgresql+psycopg://me:s3cret@127.0.0.1:1/hpo"
    spec = build_spec("mnist-mlp", worker=False, study_name=None, storage_url=url,
                      data_dir="data", flags={"epochs": 2}, dry_run=True)
    assert spec.epochs == 2 and spec.sampler == "tpe"  # the flag, then the definition
    assert "Planning without the study's recorded settings: Cannot reach the database" \
        in caplog.text
    with pytest.raises(HpoError, match="Cannot reach the database"):
        build_spec("mnist-mlp", worker=False, study_name=None, storage_url=url,
                   data_dir="data", flags={})


def test_prepare_checks_the_data_before_writing_anything(sqlite_url: str, tmp_path: Path
                                                         ) -> None:
    spec = make_spec(sqlite_url, data_dir=str(tmp_path / "empty"))
    with pytest.raises(HpoError, match="MNIST is not in"):
        launch.prepare(launch.Plan.of(spec))
    assert not (tmp_path / "hpo.db").exists()  # not even created
    storage = open_storage(sqlite_url)  # a database that exists gets no study either
    with pytest.raises(HpoError, match="MNIST is not in"):
        launch.prepare(replace(launch.Plan.of(spec), storage=storage))
    assert records.study_names(storage) == []


def test_prepare_creates_then_resumes_with_the_launch_s_budget(sqlite_url: str) -> None:
    spec = make_spec(sqlite_url, synthetic=True, trials=4, seed=5)
    first = launch.prepare(launch.Plan.of(spec))
    assert (first.created, first.budget, first.note) == (True, 4, None)
    assert records.recorded_spec(first.study)["seed"] == 5
    again = launch.prepare(launch.Plan.of(replace(spec, seed=6)))
    assert not again.created and records.recorded_spec(again.study)["seed"] == 6


def test_a_grid_launch_runs_only_the_points_left(sqlite_url: str) -> None:
    spec = make_spec(sqlite_url, "mnist-mlp-seed", synthetic=True, sampler="grid", trials=10)
    study = launch.prepare(launch.Plan.of(spec)).study
    lr = registry.resolve("mnist-mlp-seed").definition.search_space["lr"]
    for grid_id in (0, 2):  # two of the three points tried (one of them twice)
        for _ in range(1 + (grid_id == 2)):
            study.add_trial(optuna.trial.create_trial(
                params={"lr": lr.choices[grid_id]}, distributions={"lr": lr}, value=0.9,
                system_attrs={"grid_id": grid_id}))
    prepared = launch.prepare(launch.Plan.of(spec))
    assert prepared.budget == 1
    assert prepared.note == ("The grid of mnist-mlp-seed has 1 untried point(s) left, so this "
                             "launch runs 1 trial(s), not 10.")


def test_launching_nothing_starts_no_worker(sqlite_url: str, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    """A grid with no point left (a budget of 0) returns at once."""
    from hpo.run import supervisor

    monkeypatch.setattr(supervisor.Supervisor, "_start",
                        lambda self, slot: pytest.fail("a worker was started"))
    plan = launch.Plan.of(make_spec(sqlite_url))
    prepared = launch.Prepared(plan, storage=None, study=None, created=False, budget=0,
                               note=None)
    result = launch.run(prepared)
    assert result == supervisor.SuperviseResult(0, False, [])


def test_a_launch_s_summary_counts_only_its_own_trials(finished_study) -> None:
    """Wasted epochs and states of the trials this launch ran, not of the whole study."""
    from hpo.results.summary import epochs_run
    from hpo.run.supervisor import SuperviseResult

    url, _ = finished_study
    plan = launch.Plan.of(make_spec(url, trials=1))
    storage = open_storage(url)
    study = records.load(storage, "mnist-mlp")
    last = study.trials[-1]
    prepared = launch.Prepared(plan, storage, study, created=False, budget=1, note=None)
    summary = launch.summarize(prepared, SuperviseResult(1, False, [], [last.number]))
    assert summary.finished == 1 and summary.states == {last.state.name: 1}
    assert summary.wasted is not None and summary.wasted.epochs == epochs_run(last)
    whole = launch.summarize(prepared, SuperviseResult(1, False, [],
                                                       [t.number for t in study.trials]))
    assert whole.wasted.epochs > summary.wasted.epochs


# -- a new user's own study, from another folder (issue 18, Part 4) --------------------------

CANCER = '''
import dataclasses
from studies.mnist_mlp import STUDY as MNIST
STUDY = dataclasses.replace(MNIST, name="cancer", baseline=None)
'''


def stored_cancer(folder: Path) -> str:
    """A study launched from the file cancer_study.py in ``folder``, as 'hpo launch' stores it."""
    from tests.helpers import make_spec

    (folder / "cancer_study.py").write_text(CANCER)
    url = f"sqlite:///{folder / 'storage.db'}"
    resolved = registry.resolve(str(folder / "cancer_study.py"))
    spec = replace(make_spec(url), study=resolved.reference, definition="cancer",
                   study_name="cancer")
    records.create_or_resume(open_storage(url), resolved.definition, "cancer",
                             synthetic=False, spec=spec.record())
    return url


def test_launch_by_name_resumes_a_study_launched_from_a_file(tmp_path: Path) -> None:
    url = stored_cancer(tmp_path)
    result = CliRunner().invoke(app, ["launch", "cancer", "--storage", url, "--dry-run"])
    assert result.exit_code == 0, result.stderr + result.stdout
    assert "study:    cancer (definition cancer, from " in result.stdout
    assert "cancer_study.py" in result.stdout


@pytest.mark.parametrize("command", [["worker", "cancer"], ["launch", "cancer"]])
def test_an_unknown_study_names_the_storage_and_creates_no_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = CliRunner().invoke(app, command)
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1 and "Traceback" not in said
    assert "Unknown study 'cancer'" in said and "sqlite:///storage/hpo.db" in said
    assert "point --storage (or HPO_STORAGE)" in said
    assert list(elsewhere.iterdir()) == []  # no ./storage/ left behind
