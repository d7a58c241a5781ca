"""The one number to report: the chosen trial's accuracy on the held-out test set.

The test split is read here and nowhere else, once per trial: the result is recorded on the
study (a user attribute and a dashboard note), and asking again shows the recorded figure
rather than measuring again, so the test set never becomes a second validation set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import optuna
import torch
from optuna.trial import TrialState

from hpo import data, registry
from hpo.definition import StudyDefinition
from hpo.errors import HpoError, first_line
from hpo.results import note
from hpo.spec import MAX_EPOCHS, LaunchSpec, check_recorded
from hpo.storage.attributes import EPOCHS_RUN_ATTR, SPEC_ATTR, TEST_ATTR, recorded_count
from hpo.train import loop
from hpo.train.checkpoints import load_checkpoint
from hpo.train.resume import original_trial_number
from hpo.train.trial_run import TrialRun

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evaluation:
    trial: int
    val_value: float
    test_accuracy: float
    images: int
    source: str  # "checkpoint" or "retrained"
    measured_at: str
    recorded_before: bool = False


def pick_trial(study: optuna.Study, number: int | None) -> optuna.trial.FrozenTrial:
    trials = study.get_trials(deepcopy=False)
    if number is None:
        from hpo.results.summary import best_trial

        return cast(optuna.trial.FrozenTrial, best_trial(study))
    matching = [t for t in trials if t.number == number]
    if not matching:
        raise HpoError(f"Study '{study.study_name}' has no trial {number} (trials 0-"
                       f"{len(trials) - 1}): pass an existing --trial, or leave it out for the "
                       "best.")
    trial = matching[0]
    if trial.state != TrialState.COMPLETE:
        raise HpoError(f"Trial {number} of '{study.study_name}' is {trial.state.name}, not "
                       "COMPLETE: evaluate a completed trial (see 'hpo trials').")
    return trial


def evaluate(study: optuna.Study, *, trial_number: int | None, data_dir: Path,
             artifact_dir: Path, device: str, retrain: bool = False,
             again: bool = False) -> Evaluation:
    # Checked before the reference is imported: storage is not to be trusted (hpo.spec).
    recorded = check_recorded(study.user_attrs.get(SPEC_ATTR), study.study_name)
    reference = recorded.get("study")
    if not reference:
        raise HpoError(f"Study '{study.study_name}' was not made by 'hpo launch', so hpo "
                       "cannot rebuild its networks: evaluate a study that 'hpo launch' "
                       "created.")
    definition = registry.resolve_recorded(reference, study.study_name).definition
    check_recorded(recorded, study.study_name, definition=definition)
    trial = pick_trial(study, trial_number)
    recorded_test = _recorded_test(study.user_attrs.get(TEST_ATTR))
    if recorded_test and recorded_test["trial"] == trial.number and not again:
        return Evaluation(trial.number, _value(trial), recorded_test["value"],
                          recorded_test["images"], recorded_test["source"],
                          recorded_test["measured_at"], recorded_before=True)

    spec = LaunchSpec.build(definition, reference=reference, study_name=study.study_name,
                            recorded=recorded, flags={}, storage_url="", data_dir=str(data_dir))
    epochs = epochs_to_retrain(trial, spec)
    dataset = data.dataset_of(definition, synthetic=spec.synthetic)
    data.prepare(dataset, data_dir)  # missing files are named before anything trains
    state = None if retrain else load_checkpoint(study, trial.number, artifact_dir)
    if state is None:
        log.info("No checkpoint of trial %d; training its params again (%d epochs).",
                 trial.number, epochs)
        model = _retrain(definition, trial, spec, device=device, epochs=epochs)
        source = "retrained"
    else:
        model = definition.build_model(trial.params)
        try:
            model.load_state_dict(state)
        except RuntimeError as error:  # a checkpoint of another network (storage is shared)
            raise HpoError(f"The checkpoint of trial {trial.number} does not fit the network of "
                           f"its params ({first_line(error, limit=120)}): delete it, or pass "
                           "--retrain to train that trial's params again.") from None
        source = "checkpoint"
    x, y = data.load_test(dataset, data_dir, device=device, options=spec.options)
    transform = None
    if definition.input_transform is not None:
        transform = definition.input_transform(trial.params, spec.options)
    model.to(device)
    # Inputs resized on the fly (224 px for SVHN) need smaller batches than MNIST's vectors.
    accuracy = loop.accuracy(model, x, y, transform=transform,
                             batch_size=256 if transform else loop.EVAL_BATCH_SIZE)
    result = Evaluation(trial.number, _value(trial), accuracy, len(y), source,
                        datetime.now(UTC).isoformat(timespec="seconds"))
    _record(study, result)
    return result


def _recorded_test(record: Any) -> dict[str, Any] | None:
    """The test accuracy recorded before, if it is one that hpo evaluate could have written
    (storage is writable by others); otherwise it is ignored, with a warning, and measured
    again."""
    if record is None:
        return None
    fields = {"trial": int, "value": float, "images": int, "source": str, "measured_at": str}
    if isinstance(record, dict) and all(
            isinstance(record.get(key), kind) and not isinstance(record.get(key), bool)
            for key, kind in fields.items()) and 0.0 <= record["value"] <= 1.0:
        return record
    log.warning("Ignoring the recorded test accuracy %.80r: it is not one that hpo evaluate "
                "writes; measuring again.", record)
    return None


def epochs_to_retrain(trial: optuna.trial.FrozenTrial, spec: LaunchSpec) -> int:
    """The epochs the trial trained (its recorded epochs_run, checked: storage is writable by
    others), else the spec's."""
    epochs = recorded_count(trial.user_attrs, EPOCHS_RUN_ATTR, default=spec.epochs,
                            most=MAX_EPOCHS)
    return epochs or spec.epochs


def _retrain(definition: StudyDefinition, trial: optuna.trial.FrozenTrial, spec: LaunchSpec,
             *, device: str, epochs: int) -> torch.nn.Module:
    fixed = optuna.trial.FixedTrial(trial.params, number=trial.number)
    for key, value in trial.user_attrs.items():
        fixed.set_user_attr(key, value)
    # A retried trial trained with its original trial's seed (hpo.train.resume).
    run = TrialRun(fixed, definition, spec, device=device, epochs=epochs,
                   retry_of=original_trial_number(trial))
    # A FixedTrial answers every suggest call with the trial's params, as an objective expects
    # of a Trial; it never prunes.
    definition.objective(cast(optuna.Trial, fixed), run)
    if run.checkpoint_model is None:
        raise HpoError(f"Retraining trial {trial.number} produced no network to evaluate.")
    return run.checkpoint_model()


def _value(trial: optuna.trial.FrozenTrial) -> float:
    return float(trial.value) if trial.value is not None else float("nan")


def _record(study: optuna.Study, result: Evaluation) -> None:
    study.set_user_attr(TEST_ATTR, {
        "trial": result.trial, "value": result.test_accuracy, "images": result.images,
        "source": result.source, "measured_at": result.measured_at,
    })
    note.refresh(study)  # the dashboard's study note shows the test accuracy from now on
