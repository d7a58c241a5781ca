"""hpo/results/report.py: `hpo report` writes real PNG plots and a summary.md that links them and
says what pruning saved."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from hpo.cli import app
from tests.helpers import pruned_only_study

runner = CliRunner()


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


def test_report_needs_a_completed_trial(tmp_path: Path) -> None:
    url = pruned_only_study(tmp_path)
    pruned_only = runner.invoke(app, ["report", "empty", "--storage", url])
    assert pruned_only.exit_code == 1 and "nothing to plot" in pruned_only.stderr
