"""hpo.storage.snapshot: the read-only commands' fast path reads exactly what Optuna reads
(states, values, infinities, categorical params, curves, attributes), on SQLite and on
PostgreSQL, and falls back to Optuna where its queries do not fit the tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial
from typer.testing import CliRunner

from hpo import _optuna
from hpo.cli import app
from hpo.results import summary
from hpo.storage import snapshot

SPACE = {"lr": FloatDistribution(1e-4, 1.0, log=True), "width": IntDistribution(8, 64),
         "act": CategoricalDistribution(["relu", "gelu", None])}


def make_study(url: str) -> optuna.Study:
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    study.set_user_attr("metric", "val_accuracy")
    study.set_user_attr("launch_spec", {"epochs": 3, "options": {"subset": 0.5}})
    rows = [
        (TrialState.COMPLETE, 0.91, {"lr": 0.01, "width": 32, "act": "gelu"}, {1: 0.5, 2: 0.91}),
        (TrialState.PRUNED, None, {"lr": 0.5, "width": 8, "act": None}, {1: math.nan}),
        (TrialState.FAIL, None, {"lr": 1e-3, "width": 64, "act": "relu"}, {}),
        (TrialState.COMPLETE, math.inf, {"lr": 0.1, "width": 16, "act": "relu"}, {1: math.inf}),
        (TrialState.COMPLETE, 0.97, {"lr": 0.02, "width": 40, "act": "gelu"}, {3: 0.97}),
    ]
    for state, value, params, curve in rows:
        study.add_trial(create_trial(
            state=state, value=value, params=params, distributions=SPACE,
            intermediate_values=curve, user_attrs={"epochs_run": len(curve), "note": {"a": [1]}}))
    running = study.ask()  # RUNNING
    running.suggest_float("lr", 1e-4, 1.0, log=True)
    study.enqueue_trial({"lr": 0.3})  # WAITING
    return study


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


def test_a_snapshot_reads_what_optuna_reads(storage_url: str) -> None:
    make_study(storage_url)
    reader = snapshot.open_snapshot(storage_url)
    assert reader is not None and reader.study_names() == ["s"]
    fast = reader.load("s")
    reader.close()
    slow = optuna.load_study(study_name="s", storage=storage_url)
    assert fast is not None
    assert summary.export_json(fast) == summary.export_json(slow)
    assert summary.export_csv(fast) == summary.export_csv(slow)
    assert summary.summarize(fast) == summary.summarize(slow)
    assert [t.number for t in summary.ranked(fast, fast.get_trials())] == \
        [t.number for t in summary.ranked(slow, slow.get_trials())] == [3, 4, 0]
    exported = json.loads(summary.export_json(fast))
    assert [t["state"] for t in exported["trials"]] == [
        "COMPLETE", "PRUNED", "FAIL", "COMPLETE", "COMPLETE", "RUNNING", "WAITING"]
    assert exported["trials"][1]["params"] == {"lr": 0.5, "width": 8, "act": None}


def test_an_unknown_name_and_a_missing_file_get_one_sentence(sqlite_url: str, tmp_path) -> None:
    make_study(sqlite_url)
    runner = CliRunner()
    result = runner.invoke(app, ["best", "nope", "--storage", sqlite_url])
    assert result.exit_code == 1
    assert "There is no study named 'nope' in" in result.stderr
    assert "(studies there: s)" in result.stderr
    result = runner.invoke(app, ["status", "--storage", f"sqlite:///{tmp_path / 'none.db'}"])
    assert result.exit_code == 1 and "There is no hpo database at" in result.stderr
    assert not (tmp_path / "none.db").exists()  # reading never creates a database


def test_a_schema_it_cannot_read_falls_back_to_optuna(sqlite_url: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    make_study(sqlite_url)
    monkeypatch.setattr(_optuna, "SQL_TRIAL_PARAMS",
                        "SELECT trial_id, no_such_column FROM trial_params WHERE 0 = ?")
    reader = snapshot.open_snapshot(sqlite_url)
    assert reader is not None
    with pytest.raises(Exception, match="no_such_column"):
        reader.load("s")
    reader.close()
    result = CliRunner().invoke(app, ["best", "s", "--storage", sqlite_url, "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["trial"] == 3  # read through Optuna instead


def test_the_fast_path_takes_a_minimize_study_s_lowest_value_as_best(
        tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from hpo import reads

    url = f"sqlite:///{tmp_path / 'm.db'}"
    study = optuna.create_study(study_name="m", storage=url, direction="minimize")
    study.set_user_attr("metric", "val_loss")
    for value in (0.3, 0.1, 0.2):
        study.add_trial(create_trial(value=value, params={"lr": value},
                                     distributions={"lr": SPACE["lr"]}))
    reads.best(url, "m", as_json=True, fast=True)
    payload = json.loads(capsys.readouterr().out)
    assert (payload["trial"], payload["value"], payload["metric"]) == (1, 0.1, "val_loss")


def test_a_locked_database_is_waited_for_aloud_then_refused_in_one_sentence(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process holds the SQLite file exclusively locked: hpo status says it waits, and
    gives up after a bounded time with one sentence, instead of 139 s of silence (issue 18)."""
    import sqlite3
    import subprocess
    import sys
    import time

    from hpo.storage.engine import open_storage

    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    storage = open_storage(url)
    optuna.create_study(study_name="s", storage=storage)
    storage.rdb.engine.dispose()
    holder = sqlite3.connect(tmp_path / "hpo.db", isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE studies SET study_name = 's'")
    try:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", "import sys; from hpo.storage import snapshot; "
             "snapshot.LOCK_WAIT = 2; from hpo.__main__ import main; sys.argv = ['hpo', "
             f"'status', '--storage', {url!r}]; main()"],
            capture_output=True, text=True, timeout=60)
        took = time.monotonic() - started
    finally:
        holder.close()
    said = " ".join(done.stderr.split())
    assert done.returncode == 1 and "Traceback" not in said, said
    assert "Waiting for sqlite:///" in said and "holds the database locked" in said
    assert "stayed locked by another process for 2 s" in said
    assert took < 20
