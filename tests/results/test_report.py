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


def _study_with_a_baseline(trials: int) -> optuna.Study:
    """``trials`` completed trials over two params, trial 0 the enqueued baseline, one pruned."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    study = optuna.create_study(direction="maximize")
    study.set_user_attr("metric", "val_accuracy")
    space = {"lr": FloatDistribution(1e-4, 1e-2, log=True),
             "shape": CategoricalDistribution(["constant", "funnel"])}
    for i in range(trials):
        value = 0.95 + i / 1000
        study.add_trial(optuna.trial.create_trial(
            value=value, params={"lr": 10 ** -(2.2 + i / trials), "shape": "funnel"},
            distributions=space, intermediate_values={1: value - 0.01, 2: value},
            user_attrs={"baseline": True} if i == 0 else {}))
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.PRUNED, params={"lr": 1e-3, "shape": "constant"}, distributions=space,
        intermediate_values={1: 0.5}))
    return study


@pytest.mark.parametrize("trials", [3, 12])
def test_the_curves_and_the_parallel_plot_draw_the_baseline_apart(trials: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb

    from hpo.results import plots

    study = _study_with_a_baseline(trials)
    curves = plots.intermediate_values(study, "val_accuracy")
    legend = [text.get_text() for text in curves.get_legend().get_texts()]
    assert "baseline (trial 0)" in legend and "pruned" in legend
    assert f"best (trial {trials - 1})" in legend
    assert "val_accuracy" in curves.get_title() and curves.get_xlabel() == "Epoch"
    red = [line for line in curves.get_lines() if line.get_label() == "baseline (trial 0)"]
    assert red[0].get_linestyle() == "--"
    assert list(red[0].get_ydata()) == pytest.approx([0.94, 0.95])

    parallel = plots.parallel_coordinate(study, "val_accuracy")
    assert parallel.get_legend().get_texts()[0].get_text() == \
        "baseline (trial 0, val_accuracy 0.9500)"
    assert "val_accuracy" in parallel.get_title()
    assert [label.get_text() for label in parallel.get_xticklabels()] == \
        ["lr", "shape", "val_accuracy"]
    lines = [line for line in parallel.get_lines() if len(line.get_xdata()) == 3]
    assert len(lines) == trials  # completed trials only, the baseline among them
    ys = [y for line in lines for y in line.get_ydata()]
    # No line runs along the frame: every axis spans its search range, the metric's padded.
    assert all(0.0 < y < 1.0 for y in ys)
    # The worst trial's colour is not white on white.
    worst = lines[0] if trials > 1 else red
    assert sum(to_rgb(worst.get_color())) < 2.4
    plt.close("all")


def test_every_plot_is_titled_with_the_metric(tmp_path: Path) -> None:
    from unittest.mock import patch

    titles: list[str] = []
    with patch("matplotlib.figure.Figure.savefig", autospec=True,
               side_effect=lambda figure, *args, **kwargs: titles.append(
                   figure.axes[0].get_title())):
        write_report(_study_with_a_baseline(12), tmp_path / "report")
    assert len(titles) == 4 and all("val_accuracy" in title for title in titles), titles
