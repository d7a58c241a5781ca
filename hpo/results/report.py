"""``hpo report``: the study's plots as PNG files and a Markdown summary that links them.

Plots come from Optuna's matplotlib backend, which needs no browser. The summary gives the best
params, trials by state, the time spent and what pruning saved: the epochs trials actually ran
against the epochs the same trials would have run without pruning.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from hpo.errors import HpoError, first_line
from hpo.results import summary as results
from hpo.storage import attributes, records

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PruningSavings:
    epochs_run: int
    epochs_without_pruning: int

    @property
    def saved_fraction(self) -> float:
        if not self.epochs_without_pruning:
            return 0.0
        return 1 - self.epochs_run / self.epochs_without_pruning


def pruning_savings(study: optuna.Study, epochs: int) -> PruningSavings:
    """Epochs of COMPLETE and PRUNED trials, against ``epochs`` each had none been pruned."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    ran = sum(results.epochs_run(t) for t in trials)
    return PruningSavings(ran, len(trials) * epochs)


# Below this many completed trials, parameter importances are noise (with one trial Optuna
# splits them evenly), so the plot is left out and summary.md says why.
MIN_TRIALS_FOR_IMPORTANCES = 10


def _plots(metric: str) -> dict[str, Callable[[optuna.Study], Any]]:
    """The report's plots, each titled with the study's metric: Optuna's where they serve,
    hpo's own (hpo.results.plots) where Optuna's hide the baseline or lose the lines."""
    from functools import partial

    from optuna.visualization import matplotlib as plots

    from hpo.results import plots as own

    return {
        "optimization_history": partial(_titled, partial(
            plots.plot_optimization_history, target_name=metric),
            f"{metric} of each trial, and the best so far"),
        "intermediate_values": partial(own.intermediate_values, metric=metric),
        "param_importances": partial(_titled, partial(
            plots.plot_param_importances, target_name=metric),
            f"How much each param matters to {metric} (completed trials)"),
        "parallel_coordinate": partial(own.parallel_coordinate, metric=metric),
    }


def _titled(plot: Callable[[optuna.Study], Any], title: str, study: optuna.Study) -> Any:
    from hpo.results import plots as own

    axes = plot(study)
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    first.set_title("", loc="left")  # Optuna's generic title, where it puts one on the left
    first.set_title(title)
    if "Trial" in first.get_xlabel():  # the history: its points are trials, one the baseline
        own.ring_baseline(study, first)
    return axes


def default_folder(study_name: str) -> Path:
    """reports/NAME, with the name made safe as one folder name: study names come from storage,
    which anyone with the dashboard can write, and must not point anywhere else."""
    from hpo.storage.attributes import file_name_of

    return Path("reports") / file_name_of(study_name)


def write_report(study: optuna.Study, output: Path) -> tuple[list[Path], Path]:
    """Write the PNG plots and summary.md into ``output``. Returns (pngs, summary)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise HpoError(f"Study '{study.study_name}' has no completed trial yet, so there is "
                       "nothing to plot: run some trials first.")
    output.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    skipped: dict[str, str] = {}
    for name, plot in _plots(attributes.metric_name(study)).items():
        if name == "param_importances" and len(complete) < MIN_TRIALS_FOR_IMPORTANCES:
            skipped[name] = (f"{len(complete)} completed trial(s); importances need at least "
                             f"{MIN_TRIALS_FOR_IMPORTANCES} to mean anything")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the matplotlib backend is "experimental"
                axes = plot(study)
            first = axes.flat[0] if hasattr(axes, "flat") else axes
            figure = first.get_figure()
            figure.set_size_inches(9, 5.5)
            figure.tight_layout()
            path = output / f"{name}.png"
            figure.savefig(path, dpi=110)
            plt.close(figure)
            written.append(path)
        except (ValueError, RuntimeError, ZeroDivisionError) as error:
            # e.g. importances need two or more completed trials with varying params
            skipped[name] = first_line(error)
            plt.close("all")
    summary = output / "summary.md"
    summary.write_text(_summary(study, written, skipped))
    return written, summary


def _when_found(study: optuna.Study, trials: list[optuna.trial.FrozenTrial]) -> list[str]:
    found = results.best_found(study, trials)
    if found is None:
        return []
    return [f"Found {found.minutes_in:.1f} minutes into the study, after "
            f"{found.compute_share:.0%} of its compute.", ""]


def _summary(study: optuna.Study, pngs: list[Path], skipped: dict[str, str]) -> str:
    attrs = study.user_attrs
    metric = attributes.metric_name(study)
    epochs = records.recorded_spec(study).get("epochs")
    summary = results.summarize(study)
    best = results.best_trial(study)
    trials = study.get_trials(deepcopy=False)
    durations = [t.duration.total_seconds() for t in trials if t.duration is not None]
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    wall = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0

    lines = [
        f"# Study {study.study_name}",
        "",
        f"Definition `{attrs.get('definition', '-')}` on {attrs.get('dataset', '-')}, "
        f"{study.direction.name.lower()} {metric}; hpo {attrs.get('hpo_version', '-')}.",
        "",
        "## Best trial",
        "",
        f"Trial {best.number}: {metric} **{best.value:.4f}**",
        "",
        *_when_found(study, trials),
        "| param | value |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in best.params.items()],
        "",
    ]
    test = attrs.get(attributes.TEST_ATTR)
    if test:
        lines += [f"Test accuracy (trial {test['trial']}, measured once by `hpo evaluate`): "
                  f"**{test['value']:.4f}** on {test['images']} images.", ""]
    lines += [
        "## Trials",
        "",
        "| state | trials |",
        "|---|---|",
        *[f"| {state.lower()} | {count} |" for state, count in summary.counts.items() if count],
        "",
        f"Time spent: {sum(durations) / 3600:.2f} trial-hours over {wall / 3600:.2f} hours of "
        "wall-clock time.",
        "",
    ]
    if epochs:
        saved = pruning_savings(study, int(epochs))
        lines += [
            f"Pruning: trials ran {saved.epochs_run} epochs (the baseline's included); without "
            "pruning the same trials "
            f"would have run {saved.epochs_without_pruning} ({epochs} each), so pruning saved "
            f"{saved.saved_fraction:.0%} of the training compute.",
            "",
        ]
    wasted = results.wasted_epochs(study)
    if wasted is not None:
        lines += [f"Wasted epochs: {wasted.describe(metric)}.", ""]
    lines += ["## Plots", ""]
    lines += [f"![{png.stem.replace('_', ' ')}]({png.name})" for png in pngs]
    lines += [f"- {name.replace('_', ' ')}: not drawn ({why})" for name, why in skipped.items()]
    return "\n".join(lines) + "\n"
