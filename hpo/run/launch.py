"""The launch sequence behind ``hpo launch`` and ``hpo worker``.

1. :func:`build_spec` resolves the study reference and decides every setting: the command's
   flags, then the spec recorded on the study, then the definition's defaults. It reads storage
   and writes nothing, so every refusal comes before the study is touched.
2. :func:`prepare` checks the data and the definition's own readiness, then creates or resumes
   the study and records the spec on it.
3. :func:`run` starts the workers under a supervisor and returns what they did.

The CLI calls the three in order and prints; tests call them directly.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from hpo import _optuna, registry, settings
from hpo.errors import HpoError
from hpo.registry import ResolvedStudy
from hpo.run.progress import LaunchProgress
from hpo.run.supervisor import EXIT_INTERRUPTED, SuperviseResult, Supervisor
from hpo.spec import LaunchSpec
from hpo.storage import records
from hpo.storage.engine import open_storage
from hpo.storage.retry import ResilientStorage
from hpo.storage.urls import check_storage_url, sqlite_path

log = logging.getLogger(__name__)

__all__ = ["EXIT_INTERRUPTED", "Prepared", "build_spec", "open_for", "prepare", "run"]


@dataclass(frozen=True)
class Prepared:
    study: optuna.Study
    created: bool
    budget: int | None  # trials this launch runs; None: until stopped or the study's total
    note: str | None  # something the user should know, e.g. the grid has fewer points left


def build_spec(reference: str | None, *, worker: bool, study_name: str | None,
               storage_url: str, data_dir: str, flags: Mapping[str, Any],
               dry_run: bool = False, **local: Any) -> LaunchSpec:
    """The launch spec for ``reference`` (for ``hpo worker``, also a stored study's name).

    ``flags`` are the recorded settings given on the command line (None: not given), and
    ``trials``; ``local`` the other LaunchSpec fields of this machine. A dry run plans without
    the study's recorded spec when the database cannot be reached (yet)."""
    check_storage_url(storage_url)
    try:
        storage = _open_if_present(storage_url)
    except HpoError as error:
        if not dry_run:
            raise
        log.warning("Planning without the study's recorded settings: %s", error)
        storage = None
    if worker:
        resolved, name, recorded = _study_for_worker(storage, reference, study_name)
    else:
        if reference is None:
            raise HpoError("No study given: name one (see 'hpo studies'), or give a file such "
                           "as my_study.py.")
        resolved = registry.resolve(reference)
        name = study_name or resolved.definition.name
        recorded = records.stored_spec(storage, name) if storage is not None else None
    records.check_study_name(name)
    definition = resolved.definition
    local.setdefault("outage_tolerance", settings.outage_tolerance())
    spec = LaunchSpec.build(definition, reference=resolved.reference, study_name=name,
                            recorded=recorded, flags=flags, storage_url=storage_url,
                            data_dir=data_dir, trials=flags.get("trials"), **local)
    if spec.sampler == "grid" and definition.grid is None:
        raise HpoError(f"Study {definition.name} has no grid: use --sampler tpe or random.")
    if spec.trials is None and not worker:
        # A grid search defaults to the whole grid; anything else to the definition's budget.
        default = definition.grid_size if spec.sampler == "grid" else definition.trials
        spec = dataclasses.replace(spec, trials=default)
    return spec


def _open_if_present(url: str) -> ResilientStorage | None:
    """The storage, or None where it is a SQLite file that does not exist yet (so a refused or
    dry-run launch leaves no empty database behind)."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return None
    return open_storage(url)


def _study_for_worker(storage: ResilientStorage | None, given: str | None,
                      study_name: str | None) -> tuple[ResolvedStudy, str, dict[str, Any] | None]:
    """Which study ``hpo worker`` joins: a stored study resolves the reference recorded on it
    (so every machine trains the same definition); otherwise ``given`` is resolved, and the
    study will be created with the definition's defaults."""
    names = records.study_names(storage) if storage is not None else []
    name = study_name or (given if given in names else None)
    recorded = records.stored_spec(storage, name) if storage is not None and name in names \
        else None
    reference = (recorded or {}).get("study")
    if reference:
        resolved = registry.resolve_recorded(reference, str(name))
        if given and given != name:
            other = registry.resolve(given)
            if other.definition.name != resolved.definition.name:
                raise HpoError(f"Study '{name}' runs the definition "
                               f"'{resolved.definition.name}', not '{other.definition.name}' "
                               f"from '{given}': drop the study argument, or choose another "
                               "--study-name.")
        return resolved, str(name), recorded
    if given is None:
        raise HpoError(f"There is no study named '{study_name}' to join yet: give the study to "
                       "run (a name from 'hpo studies', a file or a module) so it can be "
                       "created.")
    resolved = registry.resolve(given)
    return resolved, study_name or resolved.definition.name, recorded


def open_for(spec: LaunchSpec) -> ResilientStorage:
    return open_storage(spec.storage_url, heartbeat_interval=spec.heartbeat_interval,
                        grace_period=spec.grace_period, outage_tolerance=spec.outage_tolerance)


def prepare(spec: LaunchSpec, storage: ResilientStorage) -> Prepared:
    """Check the data and the study, then create or resume it. Nothing is written before
    every check has passed."""
    from hpo import data

    definition = registry.resolve(spec.study).definition
    data.prepare(data.dataset_of(definition, synthetic=spec.synthetic), Path(spec.data_dir))
    if definition.check_ready is not None:
        definition.check_ready(spec.options)
    study, created = records.create_or_resume(storage, definition, spec.study_name,
                                              synthetic=spec.synthetic, spec=spec.record())
    budget, note = spec.trials, None
    if spec.sampler == "grid" and definition.grid_size is not None:
        left = definition.grid_size - len(_optuna.grid_points_tried(
            study.get_trials(deepcopy=False)))
        if budget is None or budget > left:
            if budget is not None:
                note = (f"The grid of {definition.name} has {left} untried point(s) left, so "
                        f"this launch runs {left} trial(s), not {budget}.")
            budget = left
    return Prepared(study, created, budget, note)


def run(spec: LaunchSpec, storage: ResilientStorage, prepared: Prepared,
        progress: LaunchProgress) -> SuperviseResult:
    """Run the workers of ``spec.slots`` until the budget is spent, the study holds its total,
    or the user stops them."""
    if prepared.budget == 0:
        return SuperviseResult(0, False, [])
    with progress:
        return Supervisor(storage=storage, study=prepared.study, spec=spec,
                          budget=prepared.budget, progress=progress).run()
