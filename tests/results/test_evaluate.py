"""hpo/results/evaluate.py: `hpo evaluate` measures the chosen trial on the test split once, from
its checkpoint or by training its params again, and records the figure on the study."""

from __future__ import annotations

from pathlib import Path

import optuna
import optuna_dashboard
import pytest
from typer.testing import CliRunner

from hpo.cli import app
from hpo.data import builtin, load_splits, load_test
from hpo.run import launch
from hpo.train import loop
from hpo.train.checkpoints import load_checkpoint, saved_checkpoints
from hpo.train.models import MLP
from tests.helpers import make_spec, pruned_only_study, run_inline

runner = CliRunner()


def test_evaluate_measures_once_and_records(finished_study_copy, mnist_dir: Path) -> None:
    url, artifacts = finished_study_copy
    env = {"HPO_ARTIFACT_DIR": str(artifacts)}
    args = ["evaluate", "mnist-mlp", "--storage", url, "--data-dir", str(mnist_dir)]
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.stderr
    assert "Test accuracy of trial" in result.stdout and "500 test images" in result.stdout
    assert "from its checkpoint model" in result.stdout
    study = optuna.load_study(study_name="mnist-mlp", storage=url)
    recorded = study.user_attrs["test_accuracy"]
    assert 0.5 < recorded["value"] <= 1 and recorded["source"] == "checkpoint"
    note = optuna_dashboard.get_note(study)  # hpo's summary, with the measurement
    assert (f"**Test accuracy:** {recorded['value']:.4f} (trial {recorded['trial']}, 500 "
            "held-out images, checkpoint model") in note
    again = runner.invoke(app, args, env=env)
    assert "pass --again to measure again" in again.stdout
    assert f"{recorded['value']:.4f}" in again.stdout


def test_evaluate_retrains_when_there_is_no_checkpoint(finished_study_copy, mnist_dir: Path,
                                                       tmp_path: Path) -> None:
    url, _ = finished_study_copy
    study = optuna.load_study(study_name="mnist-mlp", storage=url)
    uncheckpointed = [t.number for t in study.trials if t.state.name == "COMPLETE"
                      and t.number not in saved_checkpoints(study)]
    number = uncheckpointed[0] if uncheckpointed else study.best_trial.number
    result = runner.invoke(app, ["evaluate", "mnist-mlp", "--storage", url, "--data-dir",
                                 str(mnist_dir), "--trial", str(number), "--retrain"],
                           env={"HPO_ARTIFACT_DIR": str(tmp_path / "empty")})
    assert result.exit_code == 0, result.stderr
    assert "from its retrained model" in result.stdout


@pytest.fixture
def logreg_study(tmp_path: Path, mnist_dir: Path) -> tuple[str, Path]:
    """One logistic-regression trial on the small MNIST (1000 validation and 500 test images),
    trained for an epoch, with its checkpoint in the returned folder."""
    url = f"sqlite:///{tmp_path / 'logreg.db'}"
    artifacts = tmp_path / "logreg-artifacts"
    spec = make_spec(url, "logreg-loss", trials=1, epochs=1, data_dir=str(mnist_dir),
                     artifact_dir=str(artifacts), keep_checkpoints=1)
    launch.prepare(launch.Plan.of(spec)).study.enqueue_trial(
        {"loss": "cross_entropy", "lr": 0.1, "init_seed": 0})
    run_inline(spec)
    return url, artifacts


def evaluate(url: str, mnist_dir: Path, artifacts: Path, *args: str):
    return runner.invoke(app, ["evaluate", "logreg-loss", "--storage", url, "--data-dir",
                               str(mnist_dir), *args], env={"HPO_ARTIFACT_DIR": str(artifacts)})


def test_evaluate_measures_the_test_split_not_the_validation_split(logreg_study,
                                                                   mnist_dir: Path) -> None:
    url, artifacts = logreg_study
    result = evaluate(url, mnist_dir, artifacts)
    assert result.exit_code == 0, result.stderr
    assert "on 500 test images" in result.stdout  # the validation split has 1000
    study = optuna.load_study(study_name="logreg-loss", storage=url)
    recorded = study.user_attrs["test_accuracy"]
    assert (recorded["trial"], recorded["images"], recorded["source"]) == (0, 500, "checkpoint")

    # The figure is the checkpoint's accuracy on the test images, measured here independently.
    model = MLP(784, [], 10)
    model.load_state_dict(load_checkpoint(study, 0, artifacts))
    test_x, test_y = load_test(builtin("mnist"), mnist_dir, device="cpu")
    splits = load_splits(builtin("mnist"), mnist_dir, device="cpu")
    on_test = loop.accuracy(model, test_x, test_y)
    on_validation = loop.accuracy(model, splits.val_x, splits.val_y)
    assert on_test != on_validation  # so that the check below tells the two apart
    assert recorded["value"] == on_test
    assert f"{on_test:.4f} ({on_test:.2%}) on 500 test images" in result.stdout


def test_evaluate_retrains_automatically_when_there_is_no_checkpoint(
        logreg_study, mnist_dir: Path, tmp_path: Path) -> None:
    url, _ = logreg_study
    result = evaluate(url, mnist_dir, tmp_path / "no-checkpoints-here")  # no --retrain
    assert result.exit_code == 0, result.stderr
    assert "on 500 test images" in result.stdout
    assert "Recorded on the study (from its retrained model)." in result.stdout
    recorded = optuna.load_study(study_name="logreg-loss", storage=url).user_attrs[
        "test_accuracy"]
    assert (recorded["images"], recorded["source"]) == (500, "retrained")
    assert 0.5 < recorded["value"] <= 1  # the params train to a real model again


def test_again_measures_a_recorded_trial_again(logreg_study, mnist_dir: Path) -> None:
    url, artifacts = logreg_study
    assert evaluate(url, mnist_dir, artifacts).exit_code == 0
    study = optuna.load_study(study_name="logreg-loss", storage=url)
    measured = study.user_attrs["test_accuracy"]
    # Without --again the recorded figure is shown, whatever it is; with it, measured anew.
    study.set_user_attr("test_accuracy", {**measured, "value": 0.1234})
    shown = evaluate(url, mnist_dir, artifacts)
    assert shown.exit_code == 0, shown.stderr
    assert "0.1234 (12.34%)" in shown.stdout and "pass --again to measure again" in shown.stdout
    again = evaluate(url, mnist_dir, artifacts, "--again")
    assert again.exit_code == 0, again.stderr
    assert f"{measured['value']:.4f}" in again.stdout and "0.1234" not in again.stdout
    assert "Recorded on the study (from its checkpoint model)." in again.stdout
    recorded = optuna.load_study(study_name="logreg-loss", storage=url).user_attrs[
        "test_accuracy"]
    assert recorded["value"] == measured["value"]


@pytest.mark.parametrize(("args", "message"), [
    (["--trial", "99"], "Study 'logreg-loss' has no trial 99 (trials 0-1): pass an existing "
                        "--trial, or leave it out for the best."),
    (["--trial", "1"], "Trial 1 of 'logreg-loss' is PRUNED, not COMPLETE: evaluate a completed "
                       "trial (see 'hpo trials')."),
], ids=["no such trial", "not complete"])
def test_evaluate_bad_trials(logreg_study, args, message) -> None:
    url, _ = logreg_study
    study = optuna.load_study(study_name="logreg-loss", storage=url)
    study.add_trial(optuna.trial.create_trial(
        params=study.trials[0].params, distributions=study.trials[0].distributions,
        state=optuna.trial.TrialState.PRUNED, intermediate_values={1: 0.1}))
    result = runner.invoke(app, ["evaluate", "logreg-loss", "--storage", url, *args])
    assert result.exit_code == 1 and message in " ".join(result.stderr.split())


def test_evaluate_needs_a_completed_trial(tmp_path: Path) -> None:
    url = pruned_only_study(tmp_path)
    result = runner.invoke(app, ["evaluate", "empty", "--storage", url])
    assert result.exit_code == 1 and "no completed trial" in result.stderr
