"""hpo/_optuna.py: each Optuna internal hpo relies on still behaves as hpo assumes, so an
Optuna upgrade that changes one fails here, by name, rather than somewhere downstream."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.storages import RDBStorage

from hpo import _optuna
from hpo.storage.engine import open_storage


@pytest.fixture
def study(sqlite_url: str) -> optuna.Study:
    return optuna.create_study(study_name="s", storage=open_storage(sqlite_url))


def test_ids_and_storage_of_a_study_and_its_trials(study: optuna.Study) -> None:
    trial = study.ask()
    storage = _optuna.storage_of(study)
    study_id = _optuna.study_id_of(study)
    assert storage.get_study_name_from_id(study_id) == "s"
    trial_id = _optuna.trial_id_of(trial)
    assert storage.get_trial(trial_id).number == trial.number
    assert _optuna.trial_id_of(study.trials[0]) == trial_id


def test_the_cache_wraps_an_rdb_backend_and_can_forget_a_study(study: optuna.Study) -> None:
    storage = _optuna.storage_of(study)
    assert isinstance(storage, _optuna.CachedStorage)
    assert isinstance(_optuna.backend_of(storage), RDBStorage)
    study.ask()
    _optuna.forget_cached_trials(storage, _optuna.study_id_of(study))
    assert len(study.get_trials()) == 1  # read back from the database


def test_the_optimize_flag_lets_grid_sampling_stop_an_ask_and_tell_loop(sqlite_url: str) -> None:
    study = optuna.create_study(storage=sqlite_url,
                                sampler=optuna.samplers.GridSampler({"x": [0.0]}))
    _optuna.enter_optimize_loop(study)
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    study.tell(trial, 1.0)  # the grid is spent: GridSampler calls study.stop(), which needs it
    assert study._thread_local.in_optimize_loop is True


def test_study_artifacts_are_recorded_under_the_prefix_hpo_overwrites(study: optuna.Study,
                                                                      tmp_path) -> None:
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    file = tmp_path / "weights.pt"
    file.write_bytes(b"0")
    artifact_id = upload_artifact(artifact_store=FileSystemArtifactStore(str(tmp_path)),
                                  file_path=str(file), study_or_trial=study)
    key = f"{_optuna.ARTIFACT_ATTR_PREFIX}{artifact_id}"
    storage = _optuna.storage_of(study)
    attrs = storage.get_study_system_attrs(_optuna.study_id_of(study))
    assert json.loads(attrs[key])["artifact_id"] == artifact_id
    storage.set_study_system_attr(_optuna.study_id_of(study), key, json.dumps(None))
    attrs = storage.get_study_system_attrs(_optuna.study_id_of(study))
    assert json.loads(attrs[key]) is None  # the value the dashboard's delete button writes


def test_a_retried_trial_names_its_original(sqlite_url: str) -> None:
    """The public route for what hpo once read as the "failed_trial" system attribute."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    study = optuna.create_study(storage=sqlite_url)
    original = study.ask({"x": FloatDistribution(0, 1)})
    study.tell(original, state=optuna.trial.TrialState.FAIL)
    RetryHeartbeatStaleTrialCallback()(study, study.trials[0])
    retry = study.trials[1]
    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == original.number
    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(study.trials[0]) is None


def test_running_trials_read_heartbeats_and_start_times(study: optuna.Study) -> None:
    """hpo's stale check reads Optuna's heartbeat table and its UTC start column."""
    import datetime

    storage = _optuna.storage_of(study)
    rdb = _optuna.backend_of(storage)
    silent, beating = study.ask(), study.ask()
    rdb.record_heartbeat(_optuna.trial_id_of(beating))
    finished = study.ask()
    study.tell(finished, 1.0)
    found = {t.number: t for t in _optuna.running_trials(rdb, _optuna.study_id_of(study))}
    assert set(found) == {silent.number, beating.number}
    assert found[silent.number].heartbeat is None and found[silent.number].heartbeat_age is None
    assert found[beating.number].heartbeat is not None
    assert 0 <= found[beating.number].heartbeat_age < 60
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    assert abs((now - found[silent.number].started_utc).total_seconds()) < 60


def test_calls_inside_calls_on_join_the_connection_s_transaction(study: optuna.Study) -> None:
    """A rolled-back transaction takes every storage call made inside it along."""
    storage = _optuna.storage_of(study)
    rdb = _optuna.backend_of(storage)
    trial_id = _optuna.trial_id_of(study.ask())
    with rdb.engine.connect() as connection:
        transaction = connection.begin()
        with _optuna.calls_on(rdb, connection):
            rdb.set_trial_user_attr(trial_id, "k", "v")
            assert rdb.get_trial(trial_id).user_attrs == {"k": "v"}  # seen inside
        transaction.rollback()
    assert rdb.get_trial(trial_id).user_attrs == {}
    rdb.set_trial_user_attr(trial_id, "k", "after")  # the storage's own sessions are back
    assert rdb.get_trial(trial_id).user_attrs == {"k": "after"}


def test_grid_sampling_records_each_trial_s_point(sqlite_url: str) -> None:
    study = optuna.create_study(storage=sqlite_url, sampler=optuna.samplers.GridSampler(
        {"x": [0.0, 0.5, 1.0]}, seed=0))
    _optuna.enter_optimize_loop(study)
    for value in (1.0, None):  # one finished, one still running
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        if value is not None:
            study.tell(trial, value)
    finished, running = study.trials
    assert finished.system_attrs["grid_id"] != running.system_attrs["grid_id"]
    assert _optuna.grid_points_tried(study.get_trials()) == {finished.system_attrs["grid_id"]}
    assert finished.system_attrs["grid_id"] in range(3)  # an index into the grid's points


def test_the_dashboard_lists_a_trial_artifact_recorded_on_the_study(study: optuna.Study
                                                                     ) -> None:
    from tests.helpers import dashboard_study

    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    storage, study_id = _optuna.storage_of(study), _optuna.study_id_of(study)
    second = study.trials[1]
    key = _optuna.trial_artifact_key(_optuna.trial_id_of(second), "abc-1")
    meta = {"artifact_id": "abc-1", "filename": "w.pt", "mimetype": "application/octet-stream",
            "encoding": None}
    storage.set_study_system_attr(study_id, key, json.dumps(meta))  # after the trial finished
    shown = dashboard_study(storage, study_id)
    assert [t["artifacts"] for t in shown["trials"]] == [[], [meta]]
    assert shown["artifacts"] == []  # not on the study's own list
    storage.set_study_system_attr(study_id, key, json.dumps(None))  # evicted
    assert [t["artifacts"] for t in dashboard_study(storage, study_id)["trials"]] == [[], []]


def test_a_study_note_written_by_hpo_is_the_dashboards(study: optuna.Study) -> None:
    import optuna_dashboard

    storage, study_id = _optuna.storage_of(study), _optuna.study_id_of(study)
    long = "x" * (2 * _optuna.NOTE_CHUNK_LENGTH + 5)
    _optuna.write_study_note(storage, study_id, long)
    assert optuna_dashboard.get_note(study) == long
    _optuna.write_study_note(storage, study_id, "short")
    assert optuna_dashboard.get_note(study) == "short"  # the longer note's chunks emptied
    optuna_dashboard.save_note(study, "edited in the dashboard")  # its editor's own route
    attrs = storage.get_study_system_attrs(study_id)
    assert _optuna.read_study_note(attrs) == (3, "edited in the dashboard")
