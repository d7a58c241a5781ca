"""The report's two plots that Optuna's matplotlib backend draws badly for hpo's studies.

Optuna's parallel coordinates stretch every axis to the values seen, so with a few trials the
lines run along the frame's edges, and its white-to-blue colour scale draws the worst trials
white on a grey background. Its intermediate values give each trial a colour and a legend entry,
which past ten trials says nothing, and the baseline looks like any other trial. Here each
parameter axis spans its search range, the colours run from dark to bright on white, and the
baseline (the trial hpo enqueued from the definition, BASELINE_ATTR) is drawn apart and named.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

from hpo.results import summary as results
from hpo.storage.attributes import BASELINE_ATTR

if TYPE_CHECKING:
    from matplotlib.axes import Axes

BASELINE_STYLE: dict[str, Any] = {"color": "#d62728", "linewidth": 2.6, "linestyle": "--",
                                  "zorder": 5}
COLOURS = "viridis"  # dark to bright, every shade visible on white


def is_baseline(trial: optuna.trial.FrozenTrial) -> bool:
    return bool(trial.user_attrs.get(BASELINE_ATTR))


def intermediate_values(study: optuna.Study, metric: str) -> Axes:
    """Each trial's metric per epoch: completed trials in blue, pruned ones in grey ending in
    a cross where they were stopped, the best trial and the baseline named in the legend."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    trials = [t for t in study.get_trials(deepcopy=False)
              if t.intermediate_values and t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    if not trials:
        raise ValueError("no trial has reported an epoch yet")
    best = results.best_trial_or_none(study)
    with plt.style.context("default"):  # Optuna's plots switch to ggplot's grey
        _, axes = plt.subplots()
    counts = {"complete": 0, "pruned": 0}
    for trial in trials:
        epochs, values = zip(*sorted(trial.intermediate_values.items()), strict=True)
        if is_baseline(trial):
            axes.plot(epochs, values, **BASELINE_STYLE,
                      label=f"baseline (trial {trial.number})")
        elif best is not None and trial.number == best.number:
            axes.plot(epochs, values, color="#ff7f0e", linewidth=2.4, zorder=4,
                      label=f"best (trial {trial.number})")
        elif trial.state == TrialState.PRUNED:
            label = "pruned" if not counts["pruned"] else None
            axes.plot(epochs, values, color="0.6", linewidth=1, alpha=0.8, label=label)
            axes.plot(epochs[-1], values[-1], "x", color="0.4", markersize=5)
            counts["pruned"] += 1
        else:
            label = "completed" if not counts["complete"] else None
            axes.plot(epochs, values, color="#1f77b4", linewidth=1, alpha=0.55, label=label)
            counts["complete"] += 1
    axes.set_title(f"{metric} per epoch ({len(trials)} trials; x: where a trial was pruned)")
    axes.set_xlabel("Epoch")
    axes.set_ylabel(metric)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    return axes


def ring_baseline(study: optuna.Study, axes: Axes) -> None:
    """Ring the baseline's point on a plot of values by trial number, and name it."""
    baseline = next((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                     if is_baseline(t) and t.value is not None), None)
    if baseline is not None:
        axes.scatter([baseline.number], [float(baseline.value or 0)], s=160, facecolors="none",
                     edgecolors=BASELINE_STYLE["color"], linewidths=2.2, zorder=5,
                     label=f"baseline (trial {baseline.number})")
        axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))


def _position(value: Any, distribution: Any) -> float:
    """Where ``value`` sits on its axis, 0..1 over the search range."""
    if isinstance(distribution, CategoricalDistribution):
        choices = list(distribution.choices)
        return (choices.index(value) + 0.5) / len(choices)
    low, high, value = float(distribution.low), float(distribution.high), float(value)
    if distribution.log:
        low, high, value = math.log(low), math.log(high), math.log(value)
    return 0.5 if high == low else (value - low) / (high - low)


def _ticks(distribution: Any) -> tuple[list[float], list[str]]:
    if isinstance(distribution, CategoricalDistribution):
        return ([_position(c, distribution) for c in distribution.choices],
                [str(c) for c in distribution.choices])
    low, high = distribution.low, distribution.high
    if isinstance(distribution, IntDistribution) and not distribution.log and high - low <= 8:
        values: list[float] = list(range(int(low), int(high) + 1))
    elif distribution.log:
        values = [math.exp(math.log(low) + (math.log(high) - math.log(low)) * i / 4)
                  for i in range(5)]
    else:
        values = [low + (high - low) * i / 4 for i in range(5)]
    shown = [f"{v:.0f}" if isinstance(distribution, IntDistribution) else f"{v:.3g}"
             for v in values]
    return [_position(v, distribution) for v in values], shown


def parallel_coordinate(study: optuna.Study, metric: str) -> Axes:
    """The completed trials' params, one vertical axis per param over its search range, and the
    metric on the last, each trial a line coloured by its metric; the baseline dashed red."""
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if t.value is not None]
    if not trials:
        raise ValueError("no completed trial")
    names = sorted({name for t in trials for name in t.distributions})
    distributions = {name: next(t.distributions[name] for t in trials if name in t.distributions)
                     for name in names}
    values = [float(t.value) for t in trials if t.value is not None]
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 or abs(high) * 0.01 or 1.0
    low, high = low - pad, high + pad
    scale = colors.Normalize(vmin=min(values), vmax=max(values) if max(values) > min(values)
                             else min(values) + 1e-9)
    palette = plt.get_cmap(COLOURS)
    with plt.style.context("default"):  # Optuna's plots switch to ggplot's grey
        figure, axes = plt.subplots()
    xs = list(range(len(names) + 1))
    baseline = None
    for trial in trials:
        ys = [_position(trial.params[n], distributions[n]) if n in trial.params else math.nan
              for n in names]
        ys.append((float(trial.value) - low) / (high - low))  # type: ignore[arg-type]
        if is_baseline(trial):
            baseline = (trial, ys)
            continue
        axes.plot(xs, ys, color=palette(scale(float(trial.value or 0))), linewidth=1.4,
                  alpha=0.85)
    if baseline is not None:
        axes.plot(xs, baseline[1], **BASELINE_STYLE,
                  label=f"baseline (trial {baseline[0].number}, {metric} "
                        f"{baseline[0].value:.4f})")
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), fontsize="small",
                    frameon=False)
    for x, name in enumerate(names):
        axes.axvline(x, color="0.3", linewidth=0.8, zorder=1)
        for position, label in zip(*_ticks(distributions[name]), strict=True):
            axes.text(x + 0.03, position, label, fontsize=7, va="center", color="0.25")
    metric_ticks = [low + pad + (high - low - 2 * pad) * i / 4 for i in range(5)]
    axes.axvline(len(names), color="0.3", linewidth=0.8, zorder=1)
    for tick in metric_ticks:
        axes.text(len(names) + 0.03, (tick - low) / (high - low), f"{tick:.4f}", fontsize=7,
                  va="center", color="0.25")
    axes.set_xticks(xs, [*names, metric])
    axes.set_yticks([])
    axes.set_ylim(-0.04, 1.04)
    axes.set_xlim(-0.2, len(names) + 0.5)
    for side in ("top", "right", "left", "bottom"):
        axes.spines[side].set_visible(False)
    figure.colorbar(cm.ScalarMappable(norm=scale, cmap=palette), ax=axes, label=metric,
                    pad=0.02)
    axes.set_title(f"{metric} by params: the {len(trials)} completed trials\n"
                   "(each axis spans its search range; colour: the trial's " f"{metric})",
                   fontsize="medium")
    return axes
