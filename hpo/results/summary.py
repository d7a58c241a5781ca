"""Reading a study back: counts by state, the best trial, wasted epochs and rows for export.

Everything here works on Optuna's Study and FrozenTrial and equally on the snapshot objects of
hpo.storage.snapshot (the read-only commands' fast path), so it compares states and directions
by name and imports neither optuna nor torch.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hpo.definition import is_better
from hpo.errors import HpoError
from hpo.storage import attributes

if TYPE_CHECKING:
    import optuna

    from hpo.storage.snapshot import StoredStudy, StoredTrial

    # What these functions read, from Optuna's objects or from a snapshot.
    Study = optuna.Study | StoredStudy
    FrozenTrial = optuna.trial.FrozenTrial | StoredTrial

STATE_ORDER = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


@dataclass(frozen=True)
class StudySummary:
    name: str
    definition: str
    dataset: str
    metric: str
    counts: dict[str, int]
    best_value: float | None
    best_trial: int | None
    last_activity: datetime | None
    stopped: dict[str, Any] | None = None  # its stop mark (hpo stop), until a launch clears it
    workers: list[dict[str, Any]] = field(default_factory=list)  # hpo.run.presence's records


def summarize(study: Study) -> StudySummary:
    trials = study.get_trials(deepcopy=False)
    counts = Counter(t.state.name for t in trials)
    best = best_trial_or_none(study, trials)
    times = [moment for t in trials
             if (moment := t.datetime_complete or t.datetime_start) is not None]
    attrs = study.user_attrs
    return StudySummary(
        name=study.study_name,
        definition=str(attrs.get(attributes.DEFINITION_ATTR, "-")),
        dataset=str(attrs.get(attributes.DATASET_ATTR, "-")),
        metric=attributes.metric_name(study),
        counts={state: counts.get(state, 0) for state in STATE_ORDER},
        best_value=best.value if best else None,
        best_trial=best.number if best else None,
        last_activity=max(times) if times else None,
        stopped=attributes.stop_mark(attrs),
        workers=attributes.worker_records(attrs),
    )


def worker_state(record: dict[str, Any], now: datetime) -> tuple[float | None, bool]:
    """A worker record's heartbeat age in seconds, and whether it is stale (past its grace
    period, or unreadable)."""
    return attributes.heartbeat_age(record, now), attributes.is_stale(record, now)


def describe_worker(record: dict[str, Any], metric: str, now: datetime) -> str:
    """One line of ``hpo status STUDY`` for a worker record (hpo.run.presence)."""
    device = str(record.get("device", "?"))
    if record.get("device_name"):
        device += f" {record['device_name']}"
    if record.get("threads") is not None:
        device += f", {record['threads']} thread(s)"
    trial = record.get("trial")
    doing = "between trials" if trial is None else f"trial {trial}"
    if trial is not None and record.get("epoch") is not None:
        doing += f", epoch {record['epoch']}"
        if isinstance(record.get("value"), int | float):
            doing += f", {metric} {record['value']:.4f}"
    age, stale = worker_state(record, now)
    beat = "heartbeat ?" if age is None else f"heartbeat {max(age, 0):.0f} s ago"
    return (f"{record.get('host', '?')}:{record.get('pid', '?')}  {device}  {doing}  {beat}"
            f"{' (stale)' if stale else ''}  {record.get('origin', '?')}")


def best_trial_or_none(study: Study, trials: Sequence[FrozenTrial] | None = None
                       ) -> FrozenTrial | None:
    chosen: Sequence[FrozenTrial] = trials if trials is not None \
        else study.get_trials(deepcopy=False)
    complete = [t for t in chosen if t.state.name == "COMPLETE" and t.value is not None]
    return ranked(study, complete)[0] if complete else None


def ranked(study: Study, trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """``trials`` that have a value, best first for the study's direction (stable on ties)."""
    maximize = study.direction.name == "MAXIMIZE"
    valued = [(t.value, t) for t in trials if t.value is not None]
    ordered = sorted(valued, key=lambda pair: -pair[0] if maximize else pair[0])
    return [t for _, t in ordered]


def best_trial(study: Study) -> FrozenTrial:
    best = best_trial_or_none(study)
    if best is None:
        raise HpoError(f"Study '{study.study_name}' has no completed trial yet: run "
                       f"'hpo launch' or 'hpo worker' on it first.")
    return best


@dataclass(frozen=True)
class BestFound:
    """When the study's best trial completed: how far into the study, in time and compute."""

    trial: int
    minutes_in: float  # from the start of the study's first trial
    compute_share: float  # of the trial-seconds the study has spent, those spent by then

    def describe(self) -> str:
        return (f"trial {self.trial}, found {self.minutes_in:.1f} minutes in, after "
                f"{self.compute_share:.0%} of the study's compute")


def best_found(study: Study, trials: Sequence[FrozenTrial] | None = None) -> BestFound | None:
    """When the best trial was found; None before any trial has completed. Compute is counted
    in trial-seconds, summed over the workers, of the trials that have ended."""
    chosen = trials if trials is not None else study.get_trials(deepcopy=False)
    best = best_trial_or_none(study, chosen)
    if best is None or best.datetime_complete is None:
        return None
    found = best.datetime_complete
    spans = [(t.datetime_start, t.datetime_complete) for t in chosen
             if t.datetime_start is not None and t.datetime_complete is not None]
    start = min(begin for begin, _ in spans)
    total = sum((end - begin).total_seconds() for begin, end in spans)
    before = sum(max(0.0, (min(end, found) - begin).total_seconds()) for begin, end in spans)
    return BestFound(best.number, (found - start).total_seconds() / 60,
                     before / total if total > 0 else 1.0)


@dataclass(frozen=True)
class WastedEpochs:
    """Epochs spent on trials that ended below the baseline: what pruning could still save."""

    wasted: int  # epochs of the trials that ended below the baseline
    epochs: int  # epochs of all the trials counted (the baseline's own excluded)
    trials: int  # how many trials ended below the baseline
    baseline_value: float

    @property
    def fraction(self) -> float:
        return self.wasted / self.epochs if self.epochs else 0.0

    def describe(self, metric: str) -> str:
        # The baseline's own epochs are in neither count: it is what the others are measured
        # against, and it always trains to the end.
        return (f"{self.wasted} of the {self.epochs} epochs run besides the baseline's "
                f"({self.fraction:.0%}) went to {self.trials} trial(s) that ended below the "
                f"baseline's {metric} {self.baseline_value:.4f}")


def epochs_run(trial: FrozenTrial) -> int:
    from hpo.spec import MAX_EPOCHS

    return attributes.recorded_count(trial.user_attrs, attributes.EPOCHS_RUN_ATTR,
                                     default=len(trial.intermediate_values), most=MAX_EPOCHS)


def epochs_trained(trial: FrozenTrial) -> int:
    """The epochs ``trial`` trained itself: a retry that resumed after epoch r reports the first
    r again, but its original trial already counts them (each epoch counts once)."""
    ran = epochs_run(trial)
    return ran - attributes.recorded_count(trial.user_attrs, attributes.RESUMED_FROM_ATTR,
                                           default=0, most=ran)


def wasted_epochs(study: Study, trials: Sequence[FrozenTrial] | None = None
                  ) -> WastedEpochs | None:
    """Wasted epochs among ``trials`` (default: all the study's finished trials), measured
    against the study's completed baseline trial; None if it has none yet.

    A trial "ends below" the baseline when its last reported value (its value if it
    completed) is worse than the baseline's final value.
    """
    everything = study.get_trials(deepcopy=False)
    baseline = next((t for t in everything if t.user_attrs.get(attributes.BASELINE_ATTR)
                     and t.state.name == "COMPLETE" and t.value is not None), None)
    if baseline is None or baseline.value is None:
        return None
    reference = float(baseline.value)
    maximize = study.direction.name == "MAXIMIZE"
    wasted = epochs = below = 0
    for trial in trials if trials is not None else everything:
        if not trial.state.is_finished() or trial.user_attrs.get(attributes.BASELINE_ATTR):
            continue
        ran = epochs_trained(trial)
        epochs += ran
        last = trial.value if trial.state.name == "COMPLETE" else (
            trial.intermediate_values[trial.last_step] if trial.last_step is not None else None)
        ended_below = last is None or math.isnan(last) or is_better(
            reference, last, maximize=maximize)
        if ended_below and ran:
            wasted += ran
            below += 1
    return WastedEpochs(wasted, epochs, below, reference)


def trial_record(trial: FrozenTrial, *, with_curve: bool = False) -> dict[str, Any]:
    duration = trial.duration.total_seconds() if trial.duration else None
    record: dict[str, Any] = {
        "number": trial.number,
        "state": trial.state.name,
        "value": _finite(trial.value),
        "params": dict(trial.params),
        "user_attrs": dict(sorted(trial.user_attrs.items())),
        "datetime_start": trial.datetime_start.isoformat() if trial.datetime_start else None,
        "datetime_complete": trial.datetime_complete.isoformat()
        if trial.datetime_complete else None,
        "duration_s": round(duration, 3) if duration is not None else None,
    }
    if with_curve:
        record["intermediate_values"] = {
            str(step): value if math.isfinite(value) else None
            for step, value in sorted(trial.intermediate_values.items())
        }
    return record


def json_text(payload: Any, *, default: Callable[[Any], Any] | None = None,
              **kwargs: Any) -> str:
    """``payload`` as JSON that every parser takes: JSON has no NaN or infinity, which
    Python's json module would write as bare NaN and Infinity, so they become null, as they
    do in exported curves. Anything else that is not JSON (a datetime) becomes text."""
    return json.dumps(_finite_everywhere(payload), default=default or _json_default,
                      allow_nan=False, **kwargs)


def _finite_everywhere(value: Any) -> Any:
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, dict):
        return {key: _finite_everywhere(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_everywhere(item) for item in value]
    return value


def export_json(study: Study) -> str:
    payload = {
        "study": study.study_name,
        "direction": study.direction.name.lower(),
        "user_attrs": dict(sorted(study.user_attrs.items())),
        "trials": [trial_record(t, with_curve=True) for t in study.get_trials(deepcopy=False)],
    }
    return json_text(payload, indent=2) + "\n"


def export_csv(study: Study) -> str:
    trials = study.get_trials(deepcopy=False)
    param_names = sorted({name for t in trials for name in t.params})
    attr_names = sorted({name for t in trials for name in t.user_attrs})
    columns = (["number", "state", "value", "duration_s", "datetime_start", "datetime_complete"]
               + [f"params_{name}" for name in param_names]
               + [f"user_attrs_{name}" for name in attr_names])
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for trial in trials:
        record = trial_record(trial)
        row = [record[c] for c in columns[:6]]
        row += [trial.params.get(name) for name in param_names]
        row += [_csv_cell(trial.user_attrs.get(name)) for name in attr_names]
        writer.writerow(["" if cell is None else cell for cell in row])
    return out.getvalue()


def _csv_cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (dict, list)) else value


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _finite(value: float | None) -> float | None:
    """JSON has no infinity or NaN: such a value is exported as empty (None)."""
    return value if value is not None and math.isfinite(value) else None
