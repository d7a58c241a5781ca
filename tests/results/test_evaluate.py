"""Using results: best-model checkpoints, test evaluation, reports and the trials listing."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
import torch
from PIL import Image
from typer.testing import CliRunner

from hpo.train.checkpoints import CheckpointKeeper, load_checkpoint, saved_checkpoints
from hpo.cli import app
from tests.helpers import make_spec, run_inline

runner = CliRunner()


@pytest.fixture
def finished_study(tmp_path: Path, mnist_dir: Path) -> tuple[str, Path]:
    """A small real-format MNIST study with complete and pruned trials and checkpoints."""
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    artifacts = tmp_path / "artifacts"
    request = make_spec(url, trials=5, epochs=2, pruner="median", data_dir=str(mnist_dir),
                           artifact_dir=str(artifacts), keep_checkpoints=2, sampler="tpe")
    study = run_inline(request)
    study.enqueue_trial({"lr": 0.1, "width": 256, "depth": 4, "shape": "funnel",
                         "dropout": 0.0})
    run_inline(make_spec(url, trials=1, epochs=2, pruner="median", data_dir=str(mnist_dir),
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


def test_tampered_checkpoint_is_refused(finished_study, mnist_dir: Path) -> None:
    url, artifacts = finished_study
    study = optuna.load_study(study_name="mnist-mlp", storage=url)
    number, meta = next(iter(saved_checkpoints(study).items()))

    class Payload:
        def __reduce__(self):
            return (print, ("this would run on load",))

    import pickle

    (artifacts / meta["artifact_id"]).write_bytes(pickle.dumps(Payload()))
    result = runner.invoke(app, ["evaluate", "mnist-mlp", "--storage", url, "--trial",
                                 str(number), "--data-dir", str(mnist_dir)],
                           env={"HPO_ARTIFACT_DIR": str(artifacts)})
    assert result.exit_code == 1
    assert "is not a plain weights file" in result.stderr and "--retrain" in result.stderr


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
    # The baseline (enqueued first) completed, so the summary measures epochs against it.
    assert "Wasted epochs: " in summary and "ended below the baseline's" in summary


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


def test_wasted_epochs_count_trials_that_end_below_the_baseline() -> None:
    from hpo.definition import BASELINE_ATTR
    from hpo.results.summary import wasted_epochs

    study = optuna.create_study(direction="maximize")

    def add(values: list[float], state: TrialState, baseline: bool = False) -> None:
        study.add_trial(optuna.trial.create_trial(
            state=state, value=values[-1] if state == TrialState.COMPLETE else None,
            intermediate_values=dict(enumerate(values, start=1)),
            user_attrs={"epochs_run": len(values), **({BASELINE_ATTR: True} if baseline else {})}))

    assert wasted_epochs(study) is None  # no baseline yet, nothing to measure against
    add([0.95, 0.97, 0.98], TrialState.COMPLETE, baseline=True)
    add([0.93, 0.95], TrialState.PRUNED)  # ended below: 2 wasted
    add([0.96, 0.975, 0.985], TrialState.COMPLETE)  # beat the baseline: not wasted
    add([0.96, 0.97, 0.979], TrialState.COMPLETE)  # completed below: 3 wasted
    add([0.99], TrialState.PRUNED)  # pruned, yet last seen above the baseline: not wasted
    wasted = wasted_epochs(study)
    assert (wasted.wasted, wasted.epochs, wasted.trials) == (5, 9, 2)
    assert wasted.baseline_value == 0.98
    assert wasted.describe("val_accuracy") == ("5 of 9 epochs (56%) went to 2 trial(s) that "
                                               "ended below the baseline's val_accuracy 0.9800")
    only_last = wasted_epochs(study, study.get_trials()[-2:])
    assert (only_last.wasted, only_last.epochs) == (3, 4)
