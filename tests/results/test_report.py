"""hpo/results/report.py: `hpo report` writes real PNG plots and a summary.md that links them and
says what pruning saved."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from PIL import Image
from typer.testing import CliRunner

from hpo.cli import app
from hpo.results.report import PruningSavings, default_folder, pruning_savings, write_report
from tests.helpers import pruned_only_study

runner = CliRunner()


def test_report_writes_real_images_and_a_summary(finished_study, tmp_path: Path) -> None:
    url, _ = finished_study
    out = tmp_path / "report"
    result = runner.invoke(app, ["report", "mnist-mlp", "--storage", url, "--output", str(out)])
    assert result.exit_code == 0, result.stderr
    names = {"optimization_history", "intermediate_values", "parallel_coordinate"}
    assert not (out / "param_importances.png").exists()  # too few completed trials
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
    assert re.search(r"Found \d+\.\d minutes into the study, after \d+% of its compute\.",
                     summary)
    assert "pruning saved" in summary and "trial-hours" in summary
    assert re.search(r"param importances: not drawn \(\d completed trial\(s\); importances "
                     r"need at least 10 to mean anything\)", summary)
    # The baseline (enqueued first) completed, so the summary measures epochs against it.
    assert "Wasted epochs: " in summary and "ended below the baseline's" in summary


def test_report_needs_a_completed_trial(tmp_path: Path) -> None:
    url = pruned_only_study(tmp_path)
    pruned_only = runner.invoke(app, ["report", "empty", "--storage", url])
    assert pruned_only.exit_code == 1 and "nothing to plot" in pruned_only.stderr


def study_with_pruning(epochs: int) -> optuna.Study:
    """Trials of a study launched with ``epochs`` epochs each: two complete, two pruned early,
    one failed and one still running (the last two count for nothing)."""
    study = optuna.create_study(direction="maximize", study_name="pruned")
    study.set_user_attr("metric", "val_accuracy")
    study.set_user_attr("launch_spec", {"epochs": epochs})
    space = {"x": FloatDistribution(0.0, 1.0)}

    def add(state: TrialState, ran: int, *, record_epochs: bool = True) -> None:
        curve = {epoch: 0.5 + epoch / 100 for epoch in range(1, ran + 1)}
        study.add_trial(create_trial(
            state=state, params={"x": ran / 10}, distributions=space, intermediate_values=curve,
            value=curve[ran] if state == TrialState.COMPLETE else None,
            user_attrs={"epochs_run": ran} if record_epochs else {}))

    add(TrialState.COMPLETE, epochs)
    add(TrialState.COMPLETE, epochs)
    add(TrialState.PRUNED, 2)
    add(TrialState.PRUNED, 4, record_epochs=False)  # counted from its reported epochs
    add(TrialState.FAIL, 5)
    running = study.ask({"x": FloatDistribution(0.0, 1.0)})
    for epoch in (1, 2, 3):
        running.report(0.6, epoch)
    return study


def test_pruning_savings_are_exact() -> None:
    savings = pruning_savings(study_with_pruning(10), 10)
    # 10 + 10 + 2 + 4 epochs ran; without pruning the four trials would have run 4 x 10.
    assert (savings.epochs_run, savings.epochs_without_pruning) == (26, 40)
    assert savings.saved_fraction == pytest.approx(0.35)
    assert PruningSavings(0, 0).saved_fraction == 0.0  # no trial finished yet


def test_the_summary_says_what_pruning_saved(tmp_path: Path) -> None:
    _, summary = write_report(study_with_pruning(10), tmp_path / "report")
    assert ("Pruning: trials ran 26 epochs (the baseline's included); without pruning the "
            "same trials would have run 40 "
            "(10 each), so pruning saved 35% of the training compute.") in summary.read_text()
    assert "| complete | 2 |" in summary.read_text() and "| fail | 1 |" in summary.read_text()


def test_report_folders_are_safe_names_of_the_study() -> None:
    assert default_folder("mnist-mlp") == Path("reports") / "mnist-mlp"
    unsafe = default_folder("../../etc/passwd")
    assert unsafe.parent == Path("reports") and "/" not in unsafe.name
    assert unsafe.name.startswith("etc_passwd-") and unsafe != default_folder("../etc/passwd")


def test_importances_are_drawn_from_ten_completed_trials_and_axes_name_the_metric(
        tmp_path: Path) -> None:
    from unittest.mock import patch

    from optuna.distributions import FloatDistribution

    study = optuna.create_study(direction="maximize")
    study.set_user_attr("metric", "val_accuracy")
    labels: list[tuple[str, str]] = []
    space = {"lr": FloatDistribution(1e-4, 1.0, log=True), "x": FloatDistribution(0.0, 1.0)}
    for i in range(10):
        study.add_trial(optuna.trial.create_trial(
            value=0.5 + i / 40, params={"lr": 10 ** -(i % 4 + 1), "x": i / 10},
            distributions=space, intermediate_values={1: 0.5 + i / 40}))
    with patch("matplotlib.figure.Figure.savefig", autospec=True,
               side_effect=lambda figure, *args, **kwargs: labels.append(
                   (figure.axes[0].get_xlabel(), figure.axes[0].get_ylabel()))):
        write_report(study, tmp_path / "labels")
    assert ("Epoch", "val_accuracy") in labels  # the curves: epochs, not Optuna's "Step"
    assert ("Trial", "val_accuracy") in labels  # the history, titled with the metric
    pngs, summary = write_report(study, tmp_path / "report")
    assert tmp_path / "report" / "param_importances.png" in pngs
    assert "not drawn" not in summary.read_text()
