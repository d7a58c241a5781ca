"""Every attribute hpo reads back from storage besides the launch spec (issue 18, Part 2):
trial user attributes (epochs_run), the retry records, the stop mark, the workers' records and
the recorded test accuracy. Storage is writable by anyone with the dashboard's API, so a
hostile value is ignored (with a warning where it costs something) or said in one sentence:
never a traceback, a restart loop or a trial that completes without training."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from typer.testing import CliRunner

from hpo.cli import app
from hpo.run import presence
from hpo.storage.attributes import STOP_ATTR, stop_mark
from tests.helpers import make_spec

HOSTILE_COUNTS = ["abc", -1, 10**12, True, [1], {"a": 1}, 2.5]


def study_at(url: str) -> optuna.Study:
    return optuna.create_study(study_name="s", storage=url, direction="maximize")


def finished(epochs_run: Any, *, baseline: bool = False, value: float = 0.5,
             system_attrs: dict[str, Any] | None = None) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(
        params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)}, value=value,
        intermediate_values={1: value, 2: value}, system_attrs=system_attrs,
        user_attrs={"epochs_run": epochs_run, "baseline": baseline})


@pytest.mark.parametrize("bad", HOSTILE_COUNTS, ids=repr)
def test_a_hostile_epochs_run_counts_the_trials_reported_epochs(bad, sqlite_url: str,
                                                                caplog) -> None:
    from hpo.results.summary import epochs_run, wasted_epochs

    study = study_at(sqlite_url)
    study.add_trial(finished(2, baseline=True, value=0.9))
    study.add_trial(finished(bad, value=0.1))
    with caplog.at_level(logging.WARNING):
        assert epochs_run(study.trials[1]) == 2  # its curve's length
        wasted = wasted_epochs(study)
    assert wasted is not None and (wasted.wasted, wasted.epochs) == (2, 2)
    assert "Ignoring the recorded epochs_run" in caplog.text


@pytest.mark.parametrize("bad", [*HOSTILE_COUNTS, 0, None], ids=repr)
def test_evaluate_retrains_the_specs_epochs_where_epochs_run_is_hostile(bad) -> None:
    from hpo.results.evaluate import epochs_to_retrain

    spec = make_spec("sqlite:///x.db", epochs=3)
    assert epochs_to_retrain(finished(bad), spec) == 3
    assert epochs_to_retrain(finished(2), spec) == 2


@pytest.mark.parametrize("system_attrs", [
    {"failed_trial": "x"}, {"failed_trial": 7}, {"failed_trial": 5}, {"failed_trial": -1},
    {"failed_trial": True}, {"retry_history": ["x"]}, {"retry_history": [99]},
    {"retry_history": "0", "failed_trial": None}, {"failed_trial": 1.5},
], ids=repr)
def test_a_hostile_retry_record_makes_no_retry(system_attrs, sqlite_url: str, caplog) -> None:
    from hpo.train.resume import original_trial_number

    study = study_at(sqlite_url)
    for _ in range(5):
        study.add_trial(finished(2))
    study.add_trial(finished(2, system_attrs=system_attrs))
    with caplog.at_level(logging.WARNING):
        assert original_trial_number(study.trials[5]) is None


def test_a_good_retry_record_is_followed_to_the_first_trial(sqlite_url: str) -> None:
    from hpo.train.resume import original_trial_number

    study = study_at(sqlite_url)
    for _ in range(5):
        study.add_trial(finished(2))
    study.add_trial(finished(2, system_attrs={"failed_trial": 1, "retry_history": [1, 3]}))
    assert original_trial_number(study.trials[5]) == 1


@pytest.mark.parametrize(("mark", "expected"), [
    ("yes", None), ([1], None), ({"by": "x"}, None), ({"at": ""}, None),
    ({"at": "now", "now": "no"}, {"by": "someone", "at": "now", "now": False}),
    ({"at": 5, "by": ["a"], "now": 1}, {"by": "['a']", "at": "5", "now": False}),
    ({"at": "t", "by": "ann", "now": True, "extra": {"x": 1}},
     {"by": "ann", "at": "t", "now": True}),
], ids=repr)
def test_a_hostile_stop_mark_is_read_as_text_and_now_only_when_true(mark, expected) -> None:
    assert stop_mark({STOP_ATTR: mark}) == expected


def hostile_workers() -> dict[str, Any]:
    """Worker records as anyone could write them, and one live one (f), stamped now: a record
    made at import would be stale by the time a slow run reaches the test."""
    return {
        "worker:a:1": {"heartbeat": "now", "grace_period": 30},
        "worker:b:2": {"heartbeat": datetime.now(UTC).isoformat(), "grace_period": "abc"},
        "worker:c:3": "not a record",
        "worker:d:4": {"heartbeat": 12, "grace_period": [30]},
        "worker:e:5": {"host": "../x", "pid": None, "heartbeat": datetime.now(UTC).isoformat(),
                       "grace_period": float("nan")},
        "worker:f:6": {"heartbeat": (datetime.now(UTC) - timedelta(seconds=5)).isoformat(),
                       "grace_period": 30, "trial": [1], "epoch": {"x": 1}, "value": "v",
                       "device": None, "threads": "many"},
    }


def test_hostile_worker_records_are_cleared_by_the_next_launch(sqlite_url: str) -> None:
    study = study_at(sqlite_url)
    for key, record in hostile_workers().items():
        study.set_user_attr(key, record)
    presence.forget_stale(study)
    left = {key: value for key, value in optuna.load_study(
        study_name="s", storage=sqlite_url).user_attrs.items() if value is not None}
    assert set(left) == {"worker:f:6"}  # the one with a fresh heartbeat inside its grace


def test_status_shows_hostile_records_and_marks_without_a_traceback(sqlite_url: str) -> None:
    study = study_at(sqlite_url)
    study.add_trial(finished(2))
    for key, record in hostile_workers().items():
        study.set_user_attr(key, record)
    study.set_user_attr(STOP_ATTR, {"at": ["x"], "by": {"a": 1}, "now": "no"})
    for args in (["status"], ["status", "s"], ["status", "s", "--json"]):
        result = CliRunner().invoke(app, [*args, "--storage", sqlite_url])
        assert result.exit_code == 0 and result.exception is None, result.output
    assert "stopped by {'a': 1} at ['x']" in result.output or "--json" in args


@pytest.mark.parametrize("record", ["x", [1], {"trial": 0}, {"trial": 0, "value": "high",
                                    "images": 1, "source": "s", "measured_at": "t"},
                                    {"trial": 0, "value": 7.0, "images": 1, "source": "s",
                                     "measured_at": "t"}], ids=repr)
def test_a_hostile_recorded_test_accuracy_is_measured_again(record, caplog) -> None:
    from hpo.results.evaluate import _recorded_test

    with caplog.at_level(logging.WARNING):
        assert _recorded_test(record) is None
    assert "measuring again" in caplog.text
    good = {"trial": 0, "value": 0.9, "images": 10, "source": "checkpoint", "measured_at": "t"}
    assert _recorded_test(good) == good
