"""hpo/results/summary.py: reading a study back: the trials listing, counts and the best trial,
the export and the wasted epochs."""

from __future__ import annotations

import json

import optuna
from optuna.trial import TrialState
from typer.testing import CliRunner

from hpo.cli import app

runner = CliRunner()


def test_trials_lists_filters_and_ranks(finished_study) -> None:
    url, _ = finished_study
    result = runner.invoke(app, ["trials", "mnist-mlp", "--storage", url, "--json"])
    records = json.loads(result.stdout)
    assert len(records) == 6
    assert {"number", "state", "value", "params", "duration_s"} <= set(records[0])
    top = json.loads(runner.invoke(app, ["trials", "mnist-mlp", "--storage", url, "--top", "2",
                                         "--json"]).stdout)
    values = [r["value"] for r in records if r["state"] == "COMPLETE"]
    assert [r["value"] for r in top][0] == max(values) and len(top) == 2
    pruned = json.loads(runner.invoke(app, ["trials", "mnist-mlp", "--storage", url,
                                            "--state", "pruned", "--json"]).stdout)
    assert pruned and all(r["state"] == "PRUNED" for r in pruned)
    table = runner.invoke(app, ["trials", "mnist-mlp", "--storage", url])
    assert table.exit_code == 0 and "epochs" in table.stdout and "lr=" in table.stdout


def test_wasted_epochs_count_trials_that_end_below_the_baseline() -> None:
    from hpo.definition import BASELINE_ATTR
    from hpo.results.summary import wasted_epochs

    study = optuna.create_study(direction="maximize")

    def add(values: list[float], state: TrialState, baseline: bool = False) -> None:
        study.add_trial(optuna.trial.create_trial(
            state=state, value=values[-1] if state == TrialState.COMPLETE else None,
            intermediate_values=dict(enumerate(values, start=1)),
            user_attrs={"epochs_run": len(values), **({BASELINE_ATTR: True} if baseline else {})}))

    assert wasted_epochs(study) is None  # no baseline yet, nothing to measure against
    add([0.95, 0.97, 0.98], TrialState.COMPLETE, baseline=True)
    add([0.93, 0.95], TrialState.PRUNED)  # ended below: 2 wasted
    add([0.96, 0.975, 0.985], TrialState.COMPLETE)  # beat the baseline: not wasted
    add([0.96, 0.97, 0.979], TrialState.COMPLETE)  # completed below: 3 wasted
    add([0.99], TrialState.PRUNED)  # pruned, yet last seen above the baseline: not wasted
    wasted = wasted_epochs(study)
    assert (wasted.wasted, wasted.epochs, wasted.trials) == (5, 9, 2)
    assert wasted.baseline_value == 0.98
    assert wasted.describe("val_accuracy") == ("5 of 9 epochs (56%) went to 2 trial(s) that "
                                               "ended below the baseline's val_accuracy 0.9800")
    only_last = wasted_epochs(study, study.get_trials()[-2:])
    assert (only_last.wasted, only_last.epochs) == (3, 4)

