"""The launch behind ``hpo launch`` and ``hpo worker``, from the command's flags to its summary.

1. :func:`plan` resolves the study reference, checks the storage URL and opens the storage
   (where it exists yet), then decides every setting: the flags, then the spec recorded on the
   study, then the definition's defaults. It writes nothing, so every refusal comes first.
2. :func:`prepare` checks the data and the definition's readiness, then creates or resumes the
   study and records the spec on it.
3. :func:`run` starts the workers under a supervisor, which they report their trials to.
4. :func:`summarize` reads back the trials this launch ran, counted as the budget counts them.

:func:`execute` runs 2-4 with a progress display; the CLI prints what it returns. The definition
and the storage are resolved and opened once and passed along; only worker processes, which
cannot share them, resolve the reference and open the storage again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import optuna

from hpo import _optuna, registry, settings
from hpo.definition import StudyDefinition
from hpo.errors import HpoError
from hpo.registry import ResolvedStudy
from hpo.results import note
from hpo.results.summary import (
    STATE_ORDER,
    BestFound,
    WastedEpochs,
    best_found,
    best_trial_or_none,
    wasted_epochs,
)
from hpo.run import presence, stop
from hpo.run.budget import counted, replaced_by_retries
from hpo.run.supervisor import Display, NoDisplay, SuperviseResult, Supervisor
from hpo.search.algorithms import check_sampler
from hpo.spec import (
    GRACE_PERIOD,
    HEARTBEAT_INTERVAL,
    LaunchSpec,
    check_recorded,
    option_problem,
)
from hpo.storage import records
from hpo.storage.attributes import (
    FAIL_REASON_ATTR,
    INTERRUPTED_REASON,
    STOPPED_REASON,
    metric_name,
)
from hpo.storage.engine import open_storage
from hpo.storage.retry import ResilientStorage
from hpo.storage.urls import StorageUrl, check_storage_url

if TYPE_CHECKING:
    from rich.console import Console

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """What a launch will do, decided before anything is written."""

    spec: LaunchSpec
    definition: StudyDefinition
    location: StorageUrl
    # Open already, or None where the SQLite file does not exist yet (prepare creates it) or a
    # dry run could not reach the database.
    storage: ResilientStorage | None = None
    worker: bool = False  # hpo worker: no budget of its own to fall short of

    @classmethod
    def of(cls, spec: LaunchSpec) -> Plan:
        """The plan of a spec built by hand (tests, benchmarks): its storage opens in prepare."""
        return cls(spec, registry.resolve(spec.study).definition,
                   check_storage_url(spec.storage_url))


@dataclass(frozen=True)
class Prepared:
    plan: Plan
    storage: ResilientStorage
    study: optuna.Study
    created: bool
    budget: int | None  # trials this launch runs; None: until stopped or the study's total
    note: str | None  # something the user should know, e.g. the grid has fewer points left


@dataclass(frozen=True)
class Summary:
    """The trials this launch's workers ran (not a concurrent launch's)."""

    study_name: str
    storage: str  # masked
    states: dict[str, int]  # the trials that count, by state (in STATE_ORDER, none left out)
    lost: int  # failed with their worker and queued again: their retries count instead
    stopped: int  # interrupted by hpo stop --now and queued again, likewise
    interrupted: int  # interrupted by a signal (Ctrl-C, SIGTERM) and queued again, likewise
    metric: str
    wasted: WastedEpochs | None
    best: optuna.trial.FrozenTrial | None
    found: BestFound | None  # when the study found its best trial

    @property
    def finished(self) -> int:
        return sum(self.states.values())


@dataclass(frozen=True)
class Result:
    summary: Summary
    interrupted: bool
    shortfall: str | None  # why fewer trials than the budget finished, for hpo launch
    done: str | None = None  # why the study needed no more trials (--patience, --timeout, ...)
    stopped: dict[str, Any] | None = None  # the stop mark (hpo stop) its workers obeyed


def plan(reference: str | None, *, worker: bool, study_name: str | None, storage_url: str,
         data_dir: str, flags: Mapping[str, Any], dry_run: bool = False,
         **local: Any) -> Plan:
    """The plan for ``reference`` (for ``hpo worker``, also a stored study's name).

    ``flags`` are the recorded settings given on the command line (None: not given), and
    ``trials``; ``flags['options']`` the study-specific options given; ``flags['timeout']``
    (hpo launch only) becomes the deadline recorded for every worker. ``local`` are the other
    LaunchSpec fields of this machine. A dry run plans without the study's recorded spec when
    the database cannot be reached (yet)."""
    given_options = {k: v for k, v in flags.get("options", {}).items() if v is not None}
    if not worker:  # each launch has its own wall clock: no deadline unless it sets one
        timeout = flags.get("timeout")
        flags = {**flags, "deadline": time.time() + timeout if timeout else None}
    _check_option_values(given_options)
    location = check_storage_url(storage_url)
    local.setdefault("outage_tolerance", settings.outage_tolerance())
    storage = None
    if location.exists:
        try:
            storage = open_storage(
                location, heartbeat_interval=local.get("heartbeat_interval", HEARTBEAT_INTERVAL),
                grace_period=local.get("grace_period", GRACE_PERIOD),
                outage_tolerance=local["outage_tolerance"])
        except HpoError as error:
            if not dry_run:
                raise
            log.warning("Planning without the study's recorded settings: %s", error)
    if worker:
        resolved, name, recorded = _study_for_worker(
            storage, location, reference, study_name,
            given_flags={key for key, value in flags.items() if value is not None})
    else:
        if reference is None:
            raise HpoError("No study given: name one (see 'hpo studies'), or give a file such "
                           "as my_study.py.")
        resolved, stored_name = _resolve_or_stored(storage, location, reference)
        name = study_name or stored_name or resolved.definition.name
        recorded = records.stored_spec(storage, name) if storage is not None else None
    records.check_study_name(name)
    definition = resolved.definition
    for key in given_options:
        if key not in definition.options:
            raise HpoError(f"--{key} does not apply to {definition.name}: it has "
                           f"{', '.join('--' + k for k in definition.options) or 'no options'}.")
    spec = LaunchSpec.build(definition, reference=resolved.reference, study_name=name,
                            recorded=recorded, flags=flags, storage_url=storage_url,
                            data_dir=data_dir, trials=flags.get("trials"), **local)
    check_sampler(spec.sampler, definition)
    if spec.trials is None and not worker:
        # A grid search defaults to the whole grid; anything else to the definition's budget.
        default = definition.grid_size if spec.sampler == "grid" else definition.trials
        spec = replace(spec, trials=default)
    return Plan(spec, definition, location, storage, worker)


def _check_option_values(options: Mapping[str, Any]) -> None:
    """The options given as flags (hpo launch --subset, ...), checked before anything else by
    the rules that also check them when read back from storage."""
    for name, value in options.items():
        must = option_problem(name, value)
        if must is not None:
            raise HpoError(f"--{name} must be {must}, not {value!r}.")


def _study_for_worker(storage: ResilientStorage | None, location: StorageUrl,
                      given: str | None, study_name: str | None,
                      given_flags: Collection[str] = ()
                      ) -> tuple[ResolvedStudy, str, dict[str, Any] | None]:
    """Which study ``hpo worker`` joins: a stored study resolves the reference recorded on it
    (so every machine trains the same definition); otherwise ``given`` is resolved, and the
    study will be created with the definition's defaults."""
    names = records.study_names(storage) if storage is not None else []
    name = study_name or (given if given in names else None)
    recorded = records.stored_spec(storage, name) if storage is not None and name in names \
        else None
    # Checked before the reference is imported: storage is not to be trusted (hpo.spec).
    recorded = check_recorded(recorded, str(name), given=given_flags)
    reference = recorded.get("study")
    if reference:
        resolved = registry.resolve_recorded(reference, str(name), named=given)
        check_recorded(recorded, str(name), given=given_flags, definition=resolved.definition)
        if given and given != name:
            other, _ = _resolve_or_stored(storage, location, given)
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
    resolved, stored_name = _resolve_or_stored(storage, location, given)
    return resolved, study_name or stored_name or resolved.definition.name, recorded


def _resolve_or_stored(storage: ResilientStorage | None, location: StorageUrl, reference: str
                       ) -> tuple[ResolvedStudy, str | None]:
    """``reference`` resolved, and None; or, where it is no installed name, file or module but
    a stored study's name, that study's recorded reference and its name (so 'hpo launch NAME'
    resumes a study launched from a file). Otherwise one sentence naming the storage too."""
    try:
        return registry.resolve(reference), None
    except registry.UnknownStudy:
        names = records.study_names(storage) if storage is not None else []
        if storage is not None and reference in names:
            recorded = check_recorded(records.stored_spec(storage, reference), reference)
            if recorded.get("study"):
                return registry.resolve_recorded(recorded["study"], reference), reference
        known = ", ".join(registry.installed_names()) or "none installed"
        raise HpoError(
            f"Unknown study '{reference}': it is no installed study ({known}), file or module, "
            f"and the storage {location.masked} holds no study of that name (it holds "
            f"{', '.join(names) or 'none'}); point --storage (or {settings.STORAGE_ENV}) at the "
            "storage that holds it, or give its file (my_study.py) or module "
            "(mypkg.studies:NAME).") from None


def prepare(plan: Plan) -> Prepared:
    """Check the data and the study, then create or resume it. Nothing is written before
    every check has passed."""
    from hpo import data

    spec, definition = plan.spec, plan.definition
    data.prepare(data.dataset_of(definition, synthetic=spec.synthetic), Path(spec.data_dir))
    if definition.check_ready is not None:
        definition.check_ready(spec.options)
    storage = plan.storage or open_storage(
        plan.location, heartbeat_interval=spec.heartbeat_interval,
        grace_period=spec.grace_period, outage_tolerance=spec.outage_tolerance)
    study, created = records.create_or_resume(storage, definition, spec.study_name,
                                              synthetic=spec.synthetic, spec=spec.record())
    stop.clear(study)  # a study stopped with hpo stop runs again, and the user is told
    presence.forget_stale(study)
    budget, note = spec.trials, None
    if spec.sampler == "grid" and definition.grid_size is not None:
        left = definition.grid_size - len(_optuna.grid_points_tried(
            study.get_trials(deepcopy=False)))
        if budget is None or budget > left:
            if budget is not None:
                note = (f"The grid of {definition.name} has {left} untried point(s) left, so "
                        f"this launch runs {left} trial(s), not {budget}.")
            budget = left
    return Prepared(plan, storage, study, created, budget, note)


def run(prepared: Prepared, display: Display | None = None) -> SuperviseResult:
    """Run the workers of the spec's slots until the budget is spent, the study holds its
    total, or the user stops them."""
    if prepared.budget == 0:
        return SuperviseResult(0, False, [])
    with display or NoDisplay() as shown:
        return Supervisor(storage=prepared.storage, study=prepared.study,
                          spec=prepared.plan.spec, budget=prepared.budget, display=shown).run()


def summarize(prepared: Prepared, outcome: SuperviseResult) -> Summary:
    study = prepared.study
    everything = study.get_trials(deepcopy=False)
    ran = set(outcome.trials)
    mine = [t for t in everything if t.number in ran]
    counts = [t for t in counted(everything) if t.number in ran]
    replaced = replaced_by_retries(everything)
    reasons = [str(t.user_attrs.get(FAIL_REASON_ATTR, "")) for t in mine if t.number in replaced]
    stopped = sum(reason == STOPPED_REASON for reason in reasons)
    interrupted = sum(reason.startswith(INTERRUPTED_REASON) for reason in reasons)
    states = {state: n for state in STATE_ORDER
              if (n := sum(t.state.name == state for t in counts))}
    return Summary(study.study_name, prepared.plan.location.masked, states,
                   lost=len(reasons) - stopped - interrupted, stopped=stopped,
                   interrupted=interrupted, metric=metric_name(study),
                   wasted=wasted_epochs(study, mine),
                   best=cast(optuna.trial.FrozenTrial | None, best_trial_or_none(study)),
                   found=best_found(study, everything))


def execute(plan: Plan, *, console: Console, dashboard_port: int | None = None) -> Result:
    """Prepare, serve the dashboard if asked, run the workers with a progress display on
    ``console``, and summarize."""
    from hpo.results import dashboard
    from hpo.run.progress import LaunchProgress

    if dashboard_port is not None:
        dashboard.check_port("127.0.0.1", dashboard_port)  # refused before the study is written
    prepared = prepare(plan)
    if prepared.note:
        log.warning(prepared.note)
    if dashboard_port is not None:
        url = dashboard.start_in_background(prepared.storage, port=dashboard_port,
                                            artifact_dir=plan.spec.artifact_dir)
        console.print(f"Dashboard: {url}", markup=False)
    spec, definition = plan.spec, plan.definition
    progress = LaunchProgress(
        console=console, study_name=spec.study_name, storage_label=plan.location.masked,
        metric=definition.metric_name, maximize=definition.maximize, budget=prepared.budget,
        epochs=spec.epochs, slots=list(spec.slots))
    outcome = run(prepared, progress)
    note.refresh(prepared.study)  # once every worker has gone: the dashboard's note says so
    shortfall = None
    slots = ", ".join(map(str, outcome.failed_slots)) or "?"
    if outcome.done is None and not outcome.interrupted:
        if not plan.worker and prepared.budget is not None \
                and outcome.counted < prepared.budget:
            shortfall = (f"Only {outcome.counted} of {prepared.budget} trials finished "
                         f"because worker(s) {slots} kept failing: see the errors above.")
        elif set(outcome.failed_slots) >= {slot.index for slot in spec.slots}:
            # hpo worker has no budget to fall short of, but a machine whose every worker gave
            # up must not exit 0, which a Kubernetes Job or Slurm array takes for success.
            shortfall = (f"Every worker of this machine failed (worker(s) {slots}) after "
                         f"{outcome.counted} trial(s): see the errors above, fix the cause and "
                         "run the command again.")
    return Result(summarize(prepared, outcome), outcome.interrupted, shortfall, outcome.done,
                  outcome.stopped)
