"""hpo/results/note.py: hpo's summary in the dashboard's study note, refreshed by the workers
and hpo evaluate, with what a person writes below it kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import optuna
import optuna_dashboard
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from hpo.results import note
from hpo.storage.attributes import METRIC_ATTR, TEST_ATTR, WORKER_ATTR_PREFIX

NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def study(sqlite_url: str) -> optuna.Study:
    """Two complete trials, a pruned and a failed one, and one worker on trial 4."""
    study = optuna.create_study(study_name="s", storage=sqlite_url, direction="maximize")
    study.set_user_attr(METRIC_ATTR, "accuracy")
    space = {"x": FloatDistribution(0, 1)}
    for value in (0.91, 0.95):
        study.add_trial(create_trial(value=value, params={"x": value}, distributions=space))
    study.add_trial(create_trial(state=TrialState.PRUNED, params={"x": 0.1},
                                 distributions=space, intermediate_values={1: 0.5}))
    study.add_trial(create_trial(state=TrialState.FAIL, params={"x": 0.2},
                                 distributions=space))
    study.set_user_attr(f"{WORKER_ATTR_PREFIX}gpu-box:4242", {
        "host": "gpu-box", "pid": 4242, "device": "GPU 0", "device_name": "H200",
        "threads": 4, "origin": "launch, Slurm job 77 task 3", "trial": 4, "epoch": 2,
        "value": 0.9312, "grace_period": 30,
        "heartbeat": (NOW - timedelta(seconds=3)).isoformat()})
    return study


def test_the_note_summarizes_trials_best_test_and_workers(study: optuna.Study) -> None:
    text = note.note_text(study, now=NOW)
    assert "- **Trials:** 2 complete, 1 pruned, 1 fail" in text
    assert "- **Best accuracy:** 0.9500 (trial 1)" in text
    assert "- **Test accuracy:** not measured yet (`hpo evaluate`)" in text
    assert "**Workers** (1, as of this note; `hpo status s` shows them live)" in text
    assert ("gpu-box:4242  GPU 0 H200, 4 thread(s)  trial 4, epoch 2, accuracy 0.9312  "
            "heartbeat 3 s ago  launch, Slurm job 77 task 3") in text
    study.set_user_attr(TEST_ATTR, {"trial": 1, "value": 0.9487, "images": 10000,
                                    "source": "checkpoint", "measured_at": "2026-12-02 12:30"})
    study.set_user_attr(f"{WORKER_ATTR_PREFIX}gpu-box:4242", None)  # the worker has exited
    text = note.note_text(study, now=NOW)
    assert ("- **Test accuracy:** 0.9487 (trial 1, 10000 held-out images, checkpoint model, "
            "measured once by `hpo evaluate` on 2026-12-02 12:30)") in text
    assert "**Workers** (0," in text and "none running" in text


def test_refresh_writes_the_dashboards_note_and_keeps_the_persons_part(study: optuna.Study
                                                                       ) -> None:
    optuna_dashboard.save_note(study, "Baseline looks odd, check the data.")  # written by hand
    note.refresh(study)
    first = optuna_dashboard.get_note(study)
    assert first.startswith("### hpo summary, ")
    assert first.endswith(f"{note.KEEP_BELOW}\nBaseline looks odd, check the data.")
    study.add_trial(create_trial(value=0.99, params={"x": 0.99},
                                 distributions={"x": FloatDistribution(0, 1)}))
    note.refresh(study)
    second = optuna_dashboard.get_note(study)
    assert "- **Best accuracy:** 0.9900 (trial 4)" in second
    assert second.count("### hpo summary") == 1  # rewritten, not appended
    assert second.endswith(f"{note.KEEP_BELOW}\nBaseline looks odd, check the data.")


def test_a_note_that_cannot_be_written_costs_nothing(study: optuna.Study,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise RuntimeError("database is locked")

    monkeypatch.setattr(study._storage, "set_study_system_attr", refuse)
    note.refresh(study)  # no exception


@pytest.mark.slow
def test_workers_refresh_the_note_as_trials_end(finished_study) -> None:
    url, _ = finished_study
    study = optuna.load_study(study_name="mnist-mlp", storage=url)
    text = optuna_dashboard.get_note(study)
    complete = sum(t.state == TrialState.COMPLETE for t in study.trials)
    assert f"- **Trials:** {complete} complete" in text
    assert f"(trial {study.best_trial.number})" in text
    assert "none running" in text  # the last worker refreshed it as it exited
