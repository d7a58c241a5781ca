"""hpo/results/evaluate.py: `hpo evaluate` measures the chosen trial on the test split once, from
its checkpoint or by training its params again, and records the figure on the study."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from hpo.cli import app
from hpo.train.checkpoints import saved_checkpoints

runner = CliRunner()


def test_evaluate_measures_once_and_records(finished_study, mnist_dir: Path) -> None:
    url, artifacts = finished_study
    env = {"HPO_ARTIFACT_DIR": str(artifacts)}
    args = ["evaluate", "mnist-mlp", "--storage", url, "--data-dir", str(mnist_dir)]
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.stderr
    assert "Test accuracy of trial" in result.stdout and "500 test images" in result.stdout
    assert "from its checkpoint model" in result.stdout
    study = optuna.load_study(study_name="mnist-mlp", storage=url)
    recorded = study.user_attrs["test_accuracy"]
    assert 0.5 < recorded["value"] <= 1 and recorded["source"] == "checkpoint"
    note = [v for k, v in study._storage.get_study_system_attrs(study._study_id).items()
            if k.startswith("dashboard:note")]
    assert note, "the dashboard note was not written"
    again = runner.invoke(app, args, env=env)
    assert "pass --again to measure again" in again.stdout
    assert f"{recorded['value']:.4f}" in again.stdout


def test_evaluate_retrains_when_there_is_no_checkpoint(finished_study, mnist_dir: Path,
                                                       tmp_path: Path) -> None:
    url, _ = finished_study
    study = optuna.load_study(study_name="mnist-mlp", storage=url)
    uncheckpointed = [t.number for t in study.trials if t.state.name == "COMPLETE"
                      and t.number not in saved_checkpoints(study)]
    number = uncheckpointed[0] if uncheckpointed else study.best_trial.number
    result = runner.invoke(app, ["evaluate", "mnist-mlp", "--storage", url, "--data-dir",
                                 str(mnist_dir), "--trial", str(number), "--retrain"],
                           env={"HPO_ARTIFACT_DIR": str(tmp_path / "empty")})
    assert result.exit_code == 0, result.stderr
    assert "from its retrained model" in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--trial", "99"], "has no trial 99"),
])
def test_evaluate_bad_trials(finished_study, args, message) -> None:
    url, _ = finished_study
    result = runner.invoke(app, ["evaluate", "mnist-mlp", "--storage", url, *args])
    assert result.exit_code == 1 and message in result.stderr


def test_evaluate_needs_a_completed_trial(tmp_path: Path) -> None:
    from hpo import registry
    from hpo.storage import records as study_store
    from hpo.storage.database import open_storage

    url = f"sqlite:///{tmp_path / 'e.db'}"
    seed_preset = registry.resolve("mnist-mlp-seed").definition
    study, _ = study_store.create_or_resume(open_storage(url), seed_preset, "empty",
                                            synthetic=True, spec={"study": "mnist-mlp-seed"})
    study.add_trial(optuna.trial.create_trial(
        params={"lr": 0.1}, distributions={"lr": seed_preset.search_space["lr"]},
        state=optuna.trial.TrialState.PRUNED, intermediate_values={1: 0.1}))
    result = runner.invoke(app, ["evaluate", "empty", "--storage", url])
    assert result.exit_code == 1 and "no completed trial" in result.stderr
    pruned_only = runner.invoke(app, ["report", "empty", "--storage", url])
    assert pruned_only.exit_code == 1 and "nothing to plot" in pruned_only.stderr


