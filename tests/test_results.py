"""Using results: best-model checkpoints, test evaluation, reports and the trials listing."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from hpo.checkpoints import CheckpointKeeper, load_checkpoint, saved_checkpoints
from hpo.cli import app
from tests.helpers import make_request, run_inline

runner = CliRunner()


@pytest.fixture
def finished_study(tmp_path: Path, mnist_dir: Path) -> tuple[str, Path]:
    """A small real-format MNIST study with complete and pruned trials and checkpoints."""
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    artifacts = tmp_path / "artifacts"
    request = make_request(url, trials=5, epochs=2, pruner="median", data_dir=str(mnist_dir),
                           artifact_dir=str(artifacts), keep_checkpoints=2, sampler="tpe")
    study = run_inline(request)
    study.enqueue_trial({"lr": 0.1, "width": 256, "depth": 4, "shape": "funnel",
                         "batch_size": 100, "dropout": 0.0})
    run_inline(make_request(url, trials=1, epochs=2, pruner="median", data_dir=str(mnist_dir),
                            artifact_dir=str(artifacts), keep_checkpoints=2))
    return url, artifacts


def test_best_trials_keep_bounded_checkpoints(finished_study, tmp_path: Path) -> None:
    url, artifacts = finished_study
    study = optuna.load_study(study_name="mnist-mlp", storage=url)
    kept = saved_checkpoints(study)
    assert 1 <= len(kept) <= 2
    best = max((t for t in study.trials if t.value is not None
                and t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value)
    assert best.number in kept  # the study's best always has its weights
    assert len(list(artifacts.iterdir())) == len(kept)  # evicted files are deleted
    state = load_checkpoint(study, best.number, artifacts)
    assert all(isinstance(t, torch.Tensor) for t in state.values())


def test_eviction_keeps_only_the_best_few(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize",
                                storage=f"sqlite:///{tmp_path / 'k.db'}")
    keeper = CheckpointKeeper(study, tmp_path / "store", keep=2)
    for value in (0.1, 0.5, 0.7, 0.9):
        trial = study.ask()
        assert keeper.offer(trial, lambda: torch.nn.Linear(2, 2), value)
        study.tell(trial, value)
    trial = study.ask()
    assert not keeper.offer(trial, lambda: pytest.fail("built for a worse trial"), 0.2)
    study.tell(trial, 0.2)
    assert sorted(saved_checkpoints(study)) == [2, 3]
    assert len(list((tmp_path / "store").iterdir())) == 2


def test_tampered_checkpoint_is_refused(finished_study) -> None:
    url, artifacts = finished_study
    study = optuna.load_study(study_name="mnist-mlp", storage=url)
    number, meta = next(iter(saved_checkpoints(study).items()))

    class Payload:
        def __reduce__(self):
            return (print, ("this would run on load",))

    import pickle

    (artifacts / meta["artifact_id"]).write_bytes(pickle.dumps(Payload()))
    result = runner.invoke(app, ["evaluate", "mnist-mlp", "--storage", url, "--trial",
                                 str(number)], env={"HPO_ARTIFACT_DIR": str(artifacts)})
    assert result.exit_code == 1
    assert "is not a plain weights file" in result.stderr and "--retrain" in result.stderr


def test_evaluate_measures_once_and_records(finished_study, mnist_dir: Path) -> None:
    url, artifacts = finished_study
    env = {"HPO_ARTIFACT_DIR": str(artifacts)}
    args = ["evaluate", "mnist-mlp", "--storage", url, "--data-dir", str(mnist_dir)]
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.stderr
    assert "Test accuracy of trial" in result.stdout and "200 test images" in result.stdout
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
    import studies
    from hpo import study_store
    from hpo.storage import open_storage

    url = f"sqlite:///{tmp_path / 'e.db'}"
    study, _ = study_store.create_or_resume(open_storage(url), studies.get("mnist-mlp-seed"),
                                            "empty", synthetic=True, config={})
    study.add_trial(optuna.trial.create_trial(
        params={"lr": 0.1}, distributions={"lr": studies.get("mnist-mlp-seed").search_space["lr"]},
        state=optuna.trial.TrialState.PRUNED, intermediate_values={1: 0.1}))
    result = runner.invoke(app, ["evaluate", "empty", "--storage", url])
    assert result.exit_code == 1 and "no completed trial" in result.stderr
    pruned_only = runner.invoke(app, ["report", "empty", "--storage", url])
    assert pruned_only.exit_code == 1 and "nothing to plot" in pruned_only.stderr


def test_report_writes_real_images_and_a_summary(finished_study, tmp_path: Path) -> None:
    url, _ = finished_study
    out = tmp_path / "report"
    result = runner.invoke(app, ["report", "mnist-mlp", "--storage", url, "--output", str(out)])
    assert result.exit_code == 0, result.stderr
    names = {"optimization_history", "intermediate_values", "param_importances",
             "parallel_coordinate"}
    for name in names:
        with Image.open(out / f"{name}.png") as image:
            image.verify()
        with Image.open(out / f"{name}.png") as image:
            assert image.format == "PNG" and image.width >= 600 and image.height >= 400
            assert len(image.convert("L").getcolors(256)) > 10  # not a blank canvas
    summary = (out / "summary.md").read_text()
    for name in names:
        assert f"({name}.png)" in summary
    assert "## Best trial" in summary and "| complete |" in summary
    assert "pruning saved" in summary and "trial-hours" in summary


def test_trials_lists_filters_and_ranks(finished_study) -> None:
    url, _ = finished_study
    result = runner.invoke(app, ["trials", "mnist-mlp", "--storage", url, "--json"])
    records = json.loads(result.stdout)
    assert len(records) == 6
    assert {"number", "state", "value", "params", "duration_s"} <= set(records[0])
    top = json.loads(runner.invoke(app, ["trials", "mnist-mlp", "--storage", url, "--top", "2",
                                         "--json"]).stdout)
    values = [r["value"] for r in records if r["state"] == "COMPLETE"]
    assert [r["value"] for r in top][0] == max(values) and len(top) == 2
    pruned = json.loads(runner.invoke(app, ["trials", "mnist-mlp", "--storage", url,
                                            "--state", "pruned", "--json"]).stdout)
    assert pruned and all(r["state"] == "PRUNED" for r in pruned)
    table = runner.invoke(app, ["trials", "mnist-mlp", "--storage", url])
    assert table.exit_code == 0 and "epochs" in table.stdout and "lr=" in table.stdout
