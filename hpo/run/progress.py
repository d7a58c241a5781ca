"""What the launcher shows while workers run.

On a terminal: a live panel with trials done out of the budget, pruned and failed counts, the
best value so far, an estimate of the time left, each worker's current trial and epoch (the
baseline labelled) and the last trials that ended, with why. Elsewhere (CI, a log file): one
line per finished trial. Both go to stderr, so stdout carries only the final summary.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from hpo.definition import is_better
from hpo.plain import printable
from hpo.spec import WorkerSlot

RECENT = 5  # trials that ended, shown under the workers


@dataclass
class WorkerView:
    slot: WorkerSlot
    trial: int | None = None
    baseline: bool = False
    epoch: int = 0
    value: float | None = None
    status: str = "starting"


@dataclass
class LaunchProgress:
    console: Console
    study_name: str
    storage_label: str
    metric: str
    maximize: bool
    budget: int | None
    epochs: int
    slots: list[WorkerSlot]
    best_value: float | None = None
    best_trial: int | None = None
    done: int = 0
    states: dict[str, int] = field(default_factory=dict)
    recent: list[str] = field(default_factory=list)  # the last trials that ended, newest last
    workers: dict[int, WorkerView] = field(init=False)
    _live: Live | None = field(default=None, init=False)
    _started: float = field(default_factory=time.monotonic, init=False)
    # When the first trial started: the pace is measured from there, so that starting the
    # workers and loading the data (tens of seconds) do not inflate the estimate.
    _first_trial: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.workers = {slot.index: WorkerView(slot) for slot in self.slots}

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> LaunchProgress:
        if self.console.is_terminal:
            self._live = Live(get_renderable=self._render, console=self.console,
                              refresh_per_second=4, transient=False)
            self._live.start()
        else:
            budget = f"{self.budget} trials" if self.budget is not None else "no trial limit"
            self.console.print(f"Running {printable(self.study_name)} on {self.storage_label} with "
                               f"{len(self.slots)} worker(s), {budget}.", highlight=False,
                               markup=False, soft_wrap=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()

    # -- events from workers ----------------------------------------------------------------

    def handle(self, index: int, kind: str, fields: dict[str, Any]) -> None:
        view = self.workers[index]
        if kind == "loading_data":
            view.status = "loading data"
        elif kind == "trial_started":
            if self._first_trial is None:
                self._first_trial = time.monotonic()
            view.trial, view.epoch, view.value, view.status = fields["trial"], 0, None, "training"
            view.baseline = bool(fields.get("baseline"))
        elif kind == "epoch":
            view.epoch, view.value = fields["epoch"], fields["value"]
        elif kind == "trial_finished":
            state = fields["state"]
            view.status, view.trial = state.lower(), None
            if state not in ("ABANDONED", "STOPPED", "INTERRUPTED"):  # their retries count
                self.done += 1
                self.states[state] = self.states.get(state, 0) + 1
            value = fields.get("value")
            if state == "COMPLETE" and value is not None and self._better(value):
                self.best_value, self.best_trial = value, fields["trial"]
            self.recent = [*self.recent, self._ended(fields)][-RECENT:]
            if self._live is None:
                self._print_line(index, fields)

    def worker_exited(self, index: int, exitcode: int | None) -> None:
        view = self.workers[index]
        view.trial = None
        view.status = "done" if exitcode == 0 else f"exited ({exitcode})"

    def worker_restarted(self, index: int) -> None:
        self.workers[index].status = "restarting"

    def _better(self, value: float) -> bool:
        return self.best_value is None or is_better(value, self.best_value,
                                                    maximize=self.maximize)

    # -- rendering --------------------------------------------------------------------------

    def eta_seconds(self) -> float | None:
        """Time left at the pace so far (trials finished per second since the first trial
        started, all workers together); None before the first trial ends or without a budget."""
        if not self.budget or not self.done:
            return None
        since = self._first_trial if self._first_trial is not None else self._started
        return (time.monotonic() - since) / self.done * max(0, self.budget - self.done)

    def _time_left(self) -> str:
        eta = self.eta_seconds()
        if eta is None:
            return ""
        if eta <= 0:  # the budget is spent: the running trials are the last ones
            return " · finishing"
        # Under a minute and a half, minutes would round to "0" or "1" and say little.
        return f" · about {eta:,.0f} s left" if eta < 90 else f" · about {eta / 60:,.0f} min left"

    @staticmethod
    def _ended(fields: dict[str, Any]) -> str:
        value = fields.get("value")
        shown = f" {value:.4f}" if value is not None else ""
        reason = f": {fields['reason']}" if fields.get("reason") \
            and fields["state"] in ("FAIL", "PRUNED") else ""
        return f"trial {fields['trial']} {fields['state'].lower()}{shown}{reason}"

    def _summary(self) -> str:
        budget = f"/{self.budget}" if self.budget is not None else ""
        parts = [f"{self.done}{budget} trials done"]
        parts.append(f"{self.states.get('PRUNED', 0)} pruned")
        parts.append(f"{self.states.get('FAIL', 0)} failed")
        if self.best_value is not None:
            parts.append(f"best {self.metric} {self.best_value:.4f} (trial {self.best_trial})")
        return " · ".join(parts)

    def _print_line(self, index: int, fields: dict[str, Any]) -> None:
        value = fields.get("value")
        shown = f" {self.metric}={value:.4f}" if value is not None else ""
        # Why a trial failed or was pruned (below the floor, behind the baseline, ranked low).
        reason = f" ({fields['reason']})" if fields.get("reason") \
            and fields["state"] in ("FAIL", "PRUNED") else ""
        self.console.print(f"trial {fields['trial']} {fields['state']}{shown}{reason} "
                           f"[worker {index}] · {self._summary()}", highlight=False, markup=False,
                           soft_wrap=True)

    def _render(self) -> Group:
        elapsed = time.monotonic() - self._started
        left = self._time_left()
        header = Text.assemble((printable(self.study_name), "bold"), f" · {self.storage_label} · ",
                               f"{elapsed:,.0f} s{left}")
        table = Table(box=None, padding=(0, 2), header_style="bold")
        for column in ("worker", "device", "trial", "epoch", self.metric, "status"):
            table.add_column(column)
        for view in self.workers.values():
            trial = "-" if view.trial is None else \
                f"#{view.trial}" + (" (baseline)" if view.baseline else "")
            table.add_row(
                str(view.slot.index), view.slot.device, trial,
                f"{view.epoch}/{self.epochs}" if view.trial is not None else "-",
                f"{view.value:.4f}" if view.value is not None and view.trial is not None else "-",
                view.status,
            )
        status = Table.grid(padding=(0, 1))
        if self.budget:
            status.add_row(ProgressBar(total=self.budget, completed=self.done, width=40),
                           Text(self._summary()))
        else:
            status.add_row(Text(self._summary()))
        recent = [Text(line, style="dim", overflow="ellipsis", no_wrap=True)
                  for line in self.recent]
        return Group(header, status, table, *recent)
