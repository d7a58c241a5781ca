"""hpo/results/summary.py: reading a study back: the trials listing, counts and the best trial,
the export and the wasted epochs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from typer.testing import CliRunner

from hpo.cli import app
from hpo.errors import HpoError
from hpo.results.summary import best_trial, export_csv, export_json, ranked, summarize

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
    assert next(r["value"] for r in top) == max(values) and len(top) == 2
    pruned = json.loads(runner.invoke(app, ["trials", "mnist-mlp", "--storage", url,
                                            "--state", "pruned", "--json"]).stdout)
    assert pruned and all(r["state"] == "PRUNED" for r in pruned)
    table = runner.invoke(app, ["trials", "mnist-mlp", "--storage", url])
    assert table.exit_code == 0 and "epochs" in table.stdout and "lr=" in table.stdout


def test_the_top_trials_are_completed_ones_unless_a_state_is_asked_for(tmp_path) -> None:
    """A pruned trial's value is the early epoch it stopped at: it is not among the best."""
    url = f"sqlite:///{tmp_path / 't.db'}"
    study = optuna.create_study(study_name="t", storage=url, direction="maximize")
    for state, value in ((TrialState.COMPLETE, 0.90), (TrialState.PRUNED, 0.99),
                         (TrialState.COMPLETE, 0.95)):
        study.add_trial(optuna.trial.create_trial(state=state, value=value,
                                                  intermediate_values={1: value}))
    top = json.loads(runner.invoke(app, ["trials", "t", "--storage", url, "--top", "2",
                                         "--json"]).stdout)
    assert [(r["number"], r["state"]) for r in top] == [(2, "COMPLETE"), (0, "COMPLETE")]
    pruned = json.loads(runner.invoke(app, ["trials", "t", "--storage", url, "--top", "1",
                                            "--state", "pruned", "--json"]).stdout)
    assert [r["number"] for r in pruned] == [1]


def test_wasted_epochs_count_trials_that_end_below_the_baseline() -> None:
    from hpo.results.summary import wasted_epochs
    from hpo.storage.attributes import BASELINE_ATTR

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
    assert wasted.describe("val_accuracy") == (
        "5 of the 9 epochs run besides the baseline's (56%) went to 2 trial(s) that ended "
        "below the baseline's val_accuracy 0.9800")
    only_last = wasted_epochs(study, study.get_trials()[-2:])
    assert (only_last.wasted, only_last.epochs) == (3, 4)



def test_wasted_epochs_of_a_minimize_study_are_those_of_trials_that_end_above_the_baseline(
        ) -> None:
    from hpo.results.summary import wasted_epochs
    from hpo.storage.attributes import BASELINE_ATTR

    study = optuna.create_study(direction="minimize")
    for values, state, extra in (([0.5, 0.3], TrialState.COMPLETE, {BASELINE_ATTR: True}),
                                 ([0.6, 0.5, 0.4], TrialState.PRUNED, {}),  # above: wasted
                                 ([0.4, 0.2], TrialState.COMPLETE, {})):  # beat it
        study.add_trial(optuna.trial.create_trial(
            state=state, value=values[-1] if state == TrialState.COMPLETE else None,
            intermediate_values=dict(enumerate(values, start=1)),
            user_attrs={"epochs_run": len(values), **extra}))
    wasted = wasted_epochs(study)
    assert (wasted.wasted, wasted.epochs, wasted.trials) == (3, 5, 1)


def hand_made_study(direction: str = "maximize") -> optuna.Study:
    """Trials 0-4: complete 0.7, pruned, complete 0.9, failed, complete 0.9 (a tie)."""
    study = optuna.create_study(direction=direction, study_name="made")
    study.set_user_attr("definition", "toy")
    study.set_user_attr("dataset", "mnist")
    study.set_user_attr("metric", "val_accuracy")
    space = {"lr": FloatDistribution(1e-6, 1.0, log=True)}
    for number, (state, value) in enumerate([(TrialState.COMPLETE, 0.7), (TrialState.PRUNED, None),
                                             (TrialState.COMPLETE, 0.9), (TrialState.FAIL, None),
                                             (TrialState.COMPLETE, 0.9)]):
        study.add_trial(create_trial(
            state=state, value=value, params={"lr": 10.0 ** -(number + 1)}, distributions=space,
            intermediate_values={1: value if value is not None else float("nan")},
            user_attrs={"epochs_run": 1, "note": {"n": number}}))
    return study


def test_summarize_counts_every_state_and_finds_the_best() -> None:
    found = summarize(hand_made_study())
    assert found.counts == {"COMPLETE": 3, "PRUNED": 1, "FAIL": 1, "RUNNING": 0, "WAITING": 0}
    assert (found.best_trial, found.best_value) == (2, 0.9)  # the first of a tie
    assert (found.name, found.definition, found.dataset, found.metric) == (
        "made", "toy", "mnist", "val_accuracy")
    assert found.last_activity is not None
    bare = summarize(optuna.create_study(study_name="bare"))
    assert (bare.best_trial, bare.definition, bare.metric, bare.last_activity) == (
        None, "-", "value", None)


def test_ranking_follows_the_direction_and_keeps_ties_in_order() -> None:
    study = hand_made_study()
    assert [t.number for t in ranked(study, study.trials)] == [2, 4, 0]
    low = hand_made_study("minimize")
    assert [t.number for t in ranked(low, low.trials)] == [0, 2, 4]
    assert best_trial(low).number == 0


def test_best_trial_of_a_study_without_a_completed_trial_is_one_sentence() -> None:
    with pytest.raises(HpoError, match=r"^Study 'bare' has no completed trial yet: run 'hpo "
                                       r"launch' or 'hpo worker' on it first\.$"):
        best_trial(optuna.create_study(study_name="bare"))


def test_the_csv_export_has_a_column_per_param_and_attribute() -> None:
    rows = list(csv.DictReader(io.StringIO(export_csv(hand_made_study()))))
    assert [row["state"] for row in rows] == ["COMPLETE", "PRUNED", "COMPLETE", "FAIL",
                                              "COMPLETE"]
    assert list(rows[0])[:6] == ["number", "state", "value", "duration_s", "datetime_start",
                                 "datetime_complete"]
    assert rows[2]["params_lr"] == "0.001" and rows[1]["value"] == ""
    assert json.loads(rows[3]["user_attrs_note"]) == {"n": 3}  # nested values as JSON


def test_the_json_export_holds_curves_and_writes_nan_as_null() -> None:
    exported = json.loads(export_json(hand_made_study()))
    assert exported["study"] == "made" and exported["direction"] == "maximize"
    assert exported["user_attrs"]["definition"] == "toy"
    trials = exported["trials"]
    assert [t["number"] for t in trials] == [0, 1, 2, 3, 4]
    assert trials[0]["intermediate_values"] == {"1": 0.7}
    assert trials[1]["intermediate_values"] == {"1": None}  # NaN is not JSON


def test_best_found_gives_the_trial_the_minutes_and_the_share_of_compute() -> None:
    from datetime import datetime, timedelta

    from hpo.results.summary import best_found

    study = optuna.create_study(direction="minimize")
    t0 = datetime(2026, 1, 1, 12, 0, 0)

    def add(start_min: float, end_min: float, value: float | None, state: TrialState) -> None:
        trial = create_trial(state=state, value=value, params={},
                             distributions={})
        trial.datetime_start = t0 + timedelta(minutes=start_min)
        trial.datetime_complete = t0 + timedelta(minutes=end_min)
        study.add_trial(trial)

    assert best_found(study) is None
    # Two workers. The best (lowest) value completes at minute 6; by then the trials had
    # spent 4 + 6 + 2 = 12 trial-minutes of the 4 + 8 + 2 + 4 = 18 they spend in all.
    add(0, 4, 0.5, TrialState.COMPLETE)
    add(0, 8, None, TrialState.PRUNED)
    add(4, 6, 0.2, TrialState.COMPLETE)
    add(6, 10, 0.3, TrialState.COMPLETE)
    found = best_found(study)
    assert found is not None
    assert (found.trial, found.minutes_in) == (2, 6.0)
    assert found.compute_share == pytest.approx(12 / 18)
    assert found.describe() == "trial 2, found 6.0 minutes in, after 67% of the study's compute"


def test_a_resumed_retry_s_first_epochs_count_once_in_the_wasted_epochs(tmp_path: Path) -> None:
    """The original trial, failed with its worker after 3 epochs, counts them; its retry, which
    resumed after epoch 3 and trained 2 more, counts those 2 (issue 18, Part 5)."""
    import optuna
    from optuna.distributions import FloatDistribution

    from hpo.results.summary import wasted_epochs

    study = optuna.create_study(direction="maximize",
                                storage=f"sqlite:///{tmp_path / 'hpo.db'}")
    space = {"x": FloatDistribution(0, 1)}
    study.add_trial(optuna.trial.create_trial(
        params={"x": 0.1}, distributions=space, value=0.9, user_attrs={"baseline": True,
                                                                        "epochs_run": 5},
        intermediate_values={e: 0.9 for e in range(1, 6)}))
    study.add_trial(optuna.trial.create_trial(
        params={"x": 0.5}, distributions=space, state=optuna.trial.TrialState.FAIL,
        intermediate_values={1: 0.1, 2: 0.2, 3: 0.3}))
    study.add_trial(optuna.trial.create_trial(
        params={"x": 0.5}, distributions=space, value=0.5,
        intermediate_values={e: e / 10 for e in range(1, 6)},
        user_attrs={"epochs_run": 5, "resumed_from_epoch": 3}))
    wasted = wasted_epochs(study)
    assert wasted is not None and (wasted.epochs, wasted.wasted, wasted.trials) == (5, 5, 2)
