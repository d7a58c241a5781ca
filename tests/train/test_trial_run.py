"""hpo/train/trial_run.py: what an objective receives. Its seed is the same on every machine,
``report`` records each epoch and stops a trial the pruner rejects (never the baseline), and
``fit`` trains on the study's data and leaves the trained network to checkpoint."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from optuna.distributions import FloatDistribution

from hpo.definition import StudyDefinition
from hpo.storage.attributes import BASELINE_ATTR
from hpo.train.models import MLP
from hpo.train.trial_run import TrialRun, trial_seed
from tests.helpers import make_spec

TOY = StudyDefinition(name="toy", summary="test", dataset="mnist",
                      objective=lambda trial, run: 0.0,
                      search_space={"x": FloatDistribution(0.0, 1.0)},
                      build_model=lambda params: MLP(784, [], 10), floor=0.5, pruner="median",
                      options={"subset": 1.0})


def test_trial_seeds_are_stable_and_differ_between_trials() -> None:
    assert trial_seed(7, 3) == 1_142_723_944  # crc32 of "7:3": the same in every process
    assert len({trial_seed(7, n) for n in range(100)}) == 100
    assert trial_seed(7, 3) != trial_seed(8, 3)
    assert all(0 <= trial_seed(s, n) < 2**31 for s in (0, 2**31 - 1) for n in (0, 10**6))


def test_a_run_carries_the_launch_s_settings(tmp_path: Path) -> None:
    spec = make_spec("", "mnist-mlp", epochs=3, seed=7, data_dir=str(tmp_path),
                     options={"subset": 0.5})
    trial = optuna.trial.FixedTrial({}, number=3)
    run = TrialRun(trial, TOY, spec)
    assert (run.epochs, run.seed, run.options, run.data_dir) == (3, trial_seed(7, 3),
                                                                {"subset": 0.5}, tmp_path)
    assert run.device == torch.device("cpu") and run.dataset.name == "mnist"
    assert TrialRun(trial, TOY, spec, epochs=1).epochs == 1  # evaluate's retraining
    assert TrialRun(trial, TOY, make_spec("", synthetic=True)).dataset.name == "mnist (synthetic)"
    # torch is seeded with the trial's seed before the objective runs.
    TrialRun(trial, TOY, spec)
    first = torch.rand(3)
    TrialRun(trial, TOY, spec)
    assert torch.equal(torch.rand(3), first)


def guarded_study() -> optuna.Study:
    from hpo.search.algorithms import make_pruner

    return optuna.create_study(direction="maximize",
                               pruner=make_pruner("median", TOY, epochs=3))


def test_report_records_each_epoch_and_stops_a_rejected_trial_with_the_reason() -> None:
    study = guarded_study()
    trial = study.ask()
    seen = []
    run = TrialRun(trial, TOY, make_spec(""), on_epoch=lambda epoch, value: seen.append(epoch))
    run.report(0.8, 1)
    with pytest.raises(optuna.TrialPruned, match=r"val_accuracy 0\.3000 at epoch 2 is below "
                                                 r"the floor 0\.5"):
        run.report(0.3, 2)
    assert study.trials[0].intermediate_values == {1: 0.8, 2: 0.3}
    assert seen == [1, 2] and run.epochs_run == 2 and run.seconds_per_epoch >= 0


def test_the_baseline_is_never_stopped() -> None:
    study = guarded_study()
    study.enqueue_trial({}, user_attrs={BASELINE_ATTR: True})
    run = TrialRun(study.ask(), TOY, make_spec(""))
    assert run.is_baseline
    run.report(0.1, 1)  # far below the floor: a trial would stop here
    assert run.epochs_run == 1


def test_report_keeps_the_model_to_checkpoint() -> None:
    run = TrialRun(optuna.trial.FixedTrial({}), TOY, make_spec(""))
    assert run.checkpoint_model is None and run.seconds_per_epoch is None
    model = MLP(784, [], 10)
    run.report(0.9, 1, model=model)
    assert run.checkpoint_model() is model
    whole = MLP(784, [4], 10)
    run.set_checkpoint(lambda: whole)  # e.g. a frozen backbone with the trained head
    assert run.checkpoint_model() is whole


def test_fit_trains_on_the_study_s_data_for_the_launch_s_epochs(mnist_dir: Path) -> None:
    spec = make_spec("", "mnist-mlp", epochs=2, data_dir=str(mnist_dir))
    study = guarded_study()
    run = TrialRun(study.ask(), TOY, spec)
    model = MLP(784, [], 10)
    accuracy = run.fit(model, lr=0.01, batch_size=100)
    assert accuracy > 0.8  # chance is 0.1
    assert study.trials[0].intermediate_values[2] == accuracy
    assert run.epochs_run == 2 and run.checkpoint_model() is model
