"""The one number to report: the chosen trial's accuracy on the held-out test set.

The test split is read here and nowhere else, once per trial: the result is recorded on the
study (a user attribute and a dashboard note), and asking again shows the recorded figure
rather than measuring again, so the test set never becomes a second validation set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

import studies
from hpo import data, study_store, training
from hpo.checkpoints import load_checkpoint
from hpo.errors import HpoError
from hpo.trial_run import RunSettings, TrialRun

log = logging.getLogger(__name__)

TEST_ATTR = "test_accuracy"


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
        from hpo.results import best_trial

        return best_trial(study)
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
    attrs = study.user_attrs
    definition_name = attrs.get(study_store.DEFINITION_ATTR)
    if definition_name not in studies.REGISTRY:
        raise HpoError(f"Study '{study.study_name}' was not made by a known hpo study "
                       "definition, so hpo cannot rebuild its networks: evaluate a study that "
                       "'hpo launch' created.")
    definition = studies.get(definition_name)
    trial = pick_trial(study, trial_number)
    recorded = attrs.get(TEST_ATTR)
    if recorded and recorded.get("trial") == trial.number and not again:
        return Evaluation(trial.number, trial.value, recorded["value"], recorded["images"],
                          recorded["source"], recorded["measured_at"], recorded_before=True)

    config = study_store.launch_config(study)
    synthetic = bool(attrs.get(study_store.SYNTHETIC_ATTR))
    settings = RunSettings(
        device=device, epochs=trial.user_attrs.get("epochs_run") or config.get("epochs", 1),
        data_dir=str(data_dir), synthetic=synthetic,
        options=config.get("options", dict(definition.options)), seed=config.get("seed", 0),
    )
    state = None if retrain else load_checkpoint(study, trial.number, artifact_dir)
    if state is None:
        log.info("No checkpoint of trial %d; training its params again (%d epochs).",
                 trial.number, settings.epochs)
        model = _retrain(definition, trial, settings)
        source = "retrained"
    else:
        model = definition.build_model(trial.params)
        model.load_state_dict(state)
        source = "checkpoint"

    if not synthetic:
        data.prepare(definition.dataset, data_dir, synthetic)
    x, y = data.load_test(definition.dataset, data_dir, synthetic=synthetic, device=device)
    transform = None
    if definition.input_transform is not None:
        transform = definition.input_transform(trial.params, settings.options)
    model.to(device)
    # Inputs resized on the fly (224 px for SVHN) need smaller batches than MNIST's vectors.
    accuracy = training.accuracy(model, x, y, transform=transform,
                                 batch_size=256 if transform else training.EVAL_BATCH_SIZE)
    result = Evaluation(trial.number, trial.value, accuracy, len(y), source,
                        datetime.now(timezone.utc).isoformat(timespec="seconds"))
    _record(study, result, definition.metric_name)
    return result


def _retrain(definition: Any, trial: optuna.trial.FrozenTrial,
             settings: RunSettings) -> torch.nn.Module:
    fixed = optuna.trial.FixedTrial(trial.params, number=trial.number)
    for key, value in trial.user_attrs.items():
        fixed.set_user_attr(key, value)
    run = TrialRun(fixed, definition, settings)
    definition.objective(fixed, run)
    if run.checkpoint_model is None:
        raise HpoError(f"Retraining trial {trial.number} produced no network to evaluate.")
    return run.checkpoint_model()


def _record(study: optuna.Study, result: Evaluation, metric: str) -> None:
    study.set_user_attr(TEST_ATTR, {
        "trial": result.trial, "value": result.test_accuracy, "images": result.images,
        "source": result.source, "measured_at": result.measured_at,
    })
    try:
        from optuna_dashboard import save_note

        save_note(study, (
            f"## Test evaluation\n\nTrial {result.trial} ({metric} {result.val_value:.4f}): "
            f"**test accuracy {result.test_accuracy:.4f}** on {result.images} held-out images, "
            f"from its {result.source} model, measured once on {result.measured_at} by "
            "`hpo evaluate`."
        ))
    except Exception as error:  # the attribute above is the record; the note is a courtesy
        log.warning("Could not write the dashboard note: %s", error)
