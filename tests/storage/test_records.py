"""hpo/storage/records.py: creating a study records what a reader needs to trust it, resuming
checks that the study can take the definition's trials (and refuses, writing nothing, when it
cannot), and the recorded launch spec reads back."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from hpo import __version__
from hpo.definition import StudyDefinition
from hpo.errors import HpoError
from hpo.storage import records
from hpo.storage.attributes import BASELINE_ATTR, metric_name
from hpo.storage.engine import open_storage
from hpo.storage.retry import ResilientStorage

SPACE = {"x": FloatDistribution(0.0, 1.0), "kind": CategoricalDistribution(["a", "b"])}


def definition(**overrides) -> StudyDefinition:
    fields = dict(name="toy", summary="test", dataset="mnist", objective=lambda t, r: 0.0,
                  search_space=SPACE, build_model=lambda p: None, baseline={"x": 0.5, "kind": "a"})
    fields.update(overrides)
    return StudyDefinition(**fields)


@pytest.fixture
def storage(sqlite_url: str) -> ResilientStorage:
    return open_storage(sqlite_url)


def snapshot(storage: ResilientStorage, name: str) -> tuple:
    """Everything a refused launch must leave as it was."""
    study_id = storage.get_study_id_from_name(name)
    return (storage.get_study_user_attrs(study_id), storage.get_study_system_attrs(study_id),
            [(t.number, t.state, t.params) for t in storage.get_all_trials(study_id)])


def test_a_new_study_records_its_origin_and_enqueues_the_baseline(storage) -> None:
    study, created = records.create_or_resume(storage, definition(), "s", synthetic=True,
                                              spec={"study": "toy.py", "epochs": 3})
    assert created and study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert study.user_attrs == {
        "definition": "toy", "metric": "val_accuracy", "dataset": "mnist (synthetic)",
        "synthetic": True, "hpo_version": __version__,
        "launch_spec": {"study": "toy.py", "epochs": 3}}
    assert study.metric_names == ["val_accuracy"]
    (baseline,) = study.get_trials(states=(TrialState.WAITING,))
    assert baseline.user_attrs == {BASELINE_ATTR: True}
    assert baseline.system_attrs["fixed_params"] == {"x": 0.5, "kind": "a"}


def test_resuming_keeps_the_study_and_records_the_new_spec(storage) -> None:
    records.create_or_resume(storage, definition(), "s", synthetic=False, spec={"epochs": 3})
    study, created = records.create_or_resume(storage, definition(), "s", synthetic=False,
                                              spec={"epochs": 5})
    assert not created
    assert len(study.trials) == 1  # the baseline is enqueued once, at creation
    assert records.recorded_spec(study) == {"epochs": 5}


def test_a_minimizing_definition_makes_a_minimizing_study(storage) -> None:
    study, _ = records.create_or_resume(storage, definition(direction="minimize", baseline=None,
                                                            metric_name="loss"),
                                        "s", synthetic=False, spec={})
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert metric_name(study) == "loss" and not study.trials


def add_foreign_trial(storage: ResilientStorage, name: str, params: dict, distributions: dict
                      ) -> None:
    optuna.load_study(study_name=name, storage=storage).add_trial(
        create_trial(params=params, distributions=distributions, value=0.5))


@pytest.mark.parametrize(("setup", "synthetic", "message"), [
    ("minimize", False, "The study 's' in sqlite:///"),
    ("minimize", False, "has direction minimize, but toy must maximize val_accuracy: choose "
                        "another --study-name."),
    ("outside", False, "was created outside hpo, not by 'toy': choose another --study-name."),
    ("other", False, "was created by study definition 'other', not by 'toy'"),
    ("real", True, "holds trials on real mnist data, and --synthetic would mix in synthetic ones: "
                   "drop --synthetic, or choose another --study-name."),
    ("synthetic", False, "holds trials on synthetic data: add --synthetic to continue it"),
    ("unknown param", False, "has an incompatible search space (parameter 'momentum' is not in "
                             "the search space of toy): choose another --study-name."),
    ("other distribution", False, "has an incompatible search space (parameter 'kind' was "
                                  "searched as"),
])
def test_resuming_an_incompatible_study_is_refused_and_writes_nothing(
        storage, setup: str, synthetic: bool, message: str) -> None:
    if setup in ("minimize", "outside"):
        foreign = optuna.create_study(study_name="s", storage=storage,
                                      direction="minimize" if setup == "minimize" else "maximize")
        # With a trial in it, hpo does not wait for a creator to finish writing its attributes.
        foreign.add_trial(create_trial(params={}, distributions={}, value=0.5))
    elif setup == "other":
        records.create_or_resume(storage, definition(name="other"), "s", synthetic=False,
                                 spec={})
    else:
        records.create_or_resume(storage, definition(), "s", synthetic=setup == "synthetic",
                                 spec={})
        if setup == "unknown param":
            add_foreign_trial(storage, "s", {"momentum": 0.9},
                              {"momentum": FloatDistribution(0.0, 1.0)})
        elif setup == "other distribution":
            add_foreign_trial(storage, "s", {"kind": "c"},
                              {"kind": CategoricalDistribution(["c", "d"])})
    before = snapshot(storage, "s")
    with pytest.raises(HpoError) as error:
        records.create_or_resume(storage, definition(), "s", synthetic=synthetic,
                                 spec={"epochs": 99})
    assert message in str(error.value) and "\n" not in str(error.value)
    assert snapshot(storage, "s") == before


def test_check_compatible_reads_only_and_says_whether_the_study_exists(storage) -> None:
    assert records.check_compatible(storage, "s", definition(), synthetic=False) is False
    assert records.study_names(storage) == []
    records.create_or_resume(storage, definition(), "s", synthetic=False, spec={})
    assert records.check_compatible(storage, "s", definition(), synthetic=False) is True


def test_load_names_the_studies_that_exist(storage) -> None:
    with pytest.raises(HpoError, match=r"There is no study named 'x' in sqlite:///.* \(studies "
                                       r"there: none yet\)"):
        records.load(storage, "x")
    records.create_or_resume(storage, definition(), "a", synthetic=False, spec={})
    records.create_or_resume(storage, definition(), "b", synthetic=False, spec={})
    with pytest.raises(HpoError, match=r"\(studies there: a, b\): check the name"):
        records.load(storage, "x")
    assert records.load(storage, "b").study_name == "b"


def test_recorded_spec_reads_the_latest_launch(storage) -> None:
    assert records.stored_spec(storage, "s") is None
    records.create_or_resume(storage, definition(), "s", synthetic=False,
                             spec={"study": "/abs/toy.py", "seed": 7})
    assert records.stored_spec(storage, "s") == {"study": "/abs/toy.py", "seed": 7}
    records.create_or_resume(storage, definition(), "s", synthetic=False,
                             spec={"study": "/abs/toy.py", "seed": 8})
    assert records.stored_spec(storage, "s") == {"study": "/abs/toy.py", "seed": 8}
    bare = optuna.create_study(study_name="bare", storage=storage)
    assert records.recorded_spec(bare) == {}
    assert metric_name(bare) == "value"
