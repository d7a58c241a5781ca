"""hpo/storage/transactions.py: the study lock makes a trial it created inside a failed block
vanish, from the database and from Optuna's cache."""

from __future__ import annotations

import optuna
import pytest

from hpo import _optuna, settings
from hpo.storage.engine import open_storage
from hpo.storage.transactions import fail_if_running, study_lock


def test_the_study_lock_rolls_back_a_trial_created_inside_a_failed_block(sqlite_url: str
                                                                         ) -> None:
    storage = open_storage(sqlite_url)
    study = optuna.create_study(study_name="s", storage=storage)
    study_id = _optuna.study_id_of(study)
    with study_lock(storage, study_id):
        study.ask()
    assert len(study.get_trials()) == 1
    with pytest.raises(RuntimeError, match="lost mid-way"):
        with study_lock(storage, study_id):
            study.ask()
            raise RuntimeError("lost mid-way")
    # Neither the database nor the study's cache holds the rolled-back trial.
    assert [t.number for t in study.get_trials()] == [0]
    assert [t.number for t in optuna.load_study(study_name="s", storage=sqlite_url).trials] == [0]
    assert storage.outage_tolerance == settings.DEFAULT_OUTAGE_TOLERANCE  # restored


def test_fail_if_running_fails_only_a_running_trial_and_writes_nothing_else(sqlite_url: str
                                                                           ) -> None:
    storage = open_storage(sqlite_url)
    study = optuna.create_study(study_name="s", storage=storage)
    running, finished = study.ask(), study.ask()
    study.tell(finished, 1.0)
    assert fail_if_running(storage, _optuna.trial_id_of(running), {"fail_reason": "gone"})
    assert not fail_if_running(storage, _optuna.trial_id_of(running), {"fail_reason": "again"})
    assert not fail_if_running(storage, _optuna.trial_id_of(finished), {"fail_reason": "late"})
    trials = optuna.load_study(study_name="s", storage=sqlite_url).trials
    assert trials[0].state == optuna.trial.TrialState.FAIL
    assert trials[0].user_attrs == {"fail_reason": "gone"}
    assert trials[1].state == optuna.trial.TrialState.COMPLETE and trials[1].user_attrs == {}
