"""Creating, resuming and reading hpo studies in storage.

A study carries what a reader needs to trust its numbers (user attributes, shown in the
dashboard): the definition that made it, the metric, the dataset and whether it was synthetic,
the hpo version, and the launch spec of its latest launch (hpo.spec), which ``hpo worker`` and
``hpo evaluate`` reuse. Every check that can refuse a launch runs before anything is written.
The attribute names are in hpo.storage.attributes.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.distributions import check_distribution_compatibility
from optuna.exceptions import DuplicatedStudyError
from optuna.study import StudyDirection

from hpo import __version__
from hpo.definition import StudyDefinition
from hpo.errors import HpoError, first_line
from hpo.storage.attributes import (
    BASELINE_ATTR,
    DATASET_ATTR,
    DEFINITION_ATTR,
    HPO_VERSION_ATTR,
    METRIC_ATTR,
    SPEC_ATTR,
    SYNTHETIC_ATTR,
)
from hpo.storage.retry import ResilientStorage
from hpo.storage.snapshot import no_such_study
from hpo.storage.urls import mask_url

# Optuna's studies.study_name column is a VARCHAR(512): PostgreSQL refuses longer names with
# a driver error, SQLite stores them. Both are refused up front, the same way.
MAX_STUDY_NAME = 512


def check_study_name(name: str) -> None:
    """HpoError unless ``name`` fits the storage's study-name column."""
    if len(name) > MAX_STUDY_NAME:
        raise HpoError(f"The study name '{name[:40]}…' is {len(name)} characters long, and "
                       f"storage holds names of at most {MAX_STUDY_NAME}: choose a shorter "
                       "--study-name.")


def study_names(storage: ResilientStorage) -> list[str]:
    try:
        return [study.study_name for study in storage.get_all_studies()]
    except (ValueError, TypeError, KeyError) as error:  # Optuna parses every study's attributes
        raise HpoError(f"{mask_url(storage.url)} holds a study row that hpo cannot read "
                       f"({first_line(error, typed=True, limit=120)}): it was changed outside "
                       "hpo and Optuna; restore the database from a backup, or repair that "
                       "row.") from None


def load(storage: ResilientStorage, name: str, **kwargs: Any) -> optuna.Study:
    """Load an existing study, or raise HpoError naming the studies that do exist."""
    names = study_names(storage)
    if name not in names:
        raise no_such_study(name, names, mask_url(storage.url))
    return optuna.load_study(study_name=name, storage=storage, **kwargs)


def check_compatible(storage: ResilientStorage, name: str, definition: StudyDefinition, *,
                     synthetic: bool) -> bool:
    """Raise HpoError if the existing study ``name`` cannot take trials of ``definition``.

    Returns whether the study exists. Reads only.
    """
    if name not in study_names(storage):
        return False
    study_id = storage.get_study_id_from_name(name)
    attrs = storage.get_study_user_attrs(study_id)
    where = f"study '{name}' in {mask_url(storage.url)}"
    directions = storage.get_study_directions(study_id)
    if directions != [StudyDirection[definition.direction.upper()]]:
        goal = ", ".join(d.name.lower() for d in directions)
        raise HpoError(
            f"The {where} has direction {goal}, but {definition.name} must "
            f"{definition.direction} {definition.metric_name}: choose another --study-name."
        )
    made_by = attrs.get(DEFINITION_ATTR)
    if made_by != definition.name:
        origin = f"by study definition '{made_by}'" if made_by else "outside hpo"
        raise HpoError(
            f"The {where} was created {origin}, not by '{definition.name}': choose another "
            "--study-name."
        )
    if bool(attrs.get(SYNTHETIC_ATTR)) != synthetic:
        if synthetic:
            raise HpoError(
                f"The {where} holds trials on real {definition.dataset_name} data, and --synthetic "
                "would mix in synthetic ones: drop --synthetic, or choose another --study-name."
            )
        raise HpoError(
            f"The {where} holds trials on synthetic data: add --synthetic to continue it, or "
            "choose another --study-name for real data."
        )
    for trial in storage.get_all_trials(study_id, deepcopy=False):
        for param, distribution in trial.distributions.items():
            declared = definition.search_space.get(param)
            problem = None
            if declared is None:
                problem = f"parameter '{param}' is not in the search space of {definition.name}"
            else:
                try:
                    check_distribution_compatibility(distribution, declared)
                except ValueError:
                    problem = f"parameter '{param}' was searched as {distribution}, not {declared}"
            if problem:
                raise HpoError(
                    f"The {where} has an incompatible search space ({problem}): choose "
                    "another --study-name."
                )
    return True


def create_or_resume(storage: ResilientStorage, definition: StudyDefinition, name: str, *,
                     synthetic: bool, spec: Mapping[str, Any]) -> tuple[optuna.Study, bool]:
    """Create the study or check and resume it. Returns (study, created)."""
    check_study_name(name)
    if name in study_names(storage):
        _wait_for_creator(storage, name)
    check_compatible(storage, name, definition, synthetic=synthetic)
    direction = StudyDirection[definition.direction.upper()]
    try:
        storage.create_new_study([direction], name)
        created = True
    except DuplicatedStudyError:  # another worker created it a moment ago
        _wait_for_creator(storage, name)
        check_compatible(storage, name, definition, synthetic=synthetic)
        created = False
    study = optuna.load_study(study_name=name, storage=storage)
    if created:
        study.set_user_attr(SYNTHETIC_ATTR, synthetic)
        study.set_user_attr(METRIC_ATTR, definition.metric_name)
        study.set_user_attr(DATASET_ATTR, definition.dataset_name + (" (synthetic)" if synthetic
                                                                     else ""))
        study.set_user_attr(HPO_VERSION_ATTR, __version__)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([definition.metric_name])
        if definition.baseline is not None:
            study.enqueue_trial(dict(definition.baseline), user_attrs={BASELINE_ATTR: True})
        # Written last: other processes take it as the sign that the study is complete.
        study.set_user_attr(DEFINITION_ATTR, definition.name)
    study.set_user_attr(SPEC_ATTR, dict(spec))
    return study, created


def _wait_for_creator(storage: ResilientStorage, name: str, seconds: float = 15.0) -> None:
    """A study that another process is creating has no definition attribute for a moment."""
    study_id = storage.get_study_id_from_name(name)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if DEFINITION_ATTR in storage.get_study_user_attrs(study_id) \
                or storage.get_all_trials(study_id, deepcopy=False):
            return
        time.sleep(0.2)


def recorded_spec(study: optuna.Study) -> dict[str, Any]:
    """The study-wide part of its latest launch spec (hpo.spec.RECORDED), or {}."""
    return dict(study.user_attrs.get(SPEC_ATTR) or {})


def stored_spec(storage: ResilientStorage, name: str) -> dict[str, Any] | None:
    """The recorded spec of the stored study ``name``, or None if there is no such study."""
    if name not in study_names(storage):
        return None
    return recorded_spec(optuna.load_study(study_name=name, storage=storage))

