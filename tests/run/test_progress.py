"""hpo/run/progress.py: what the launcher shows. Off a terminal (CI, a log file) it prints one
line per finished trial with the running counts; abandoned trials are not counted; the best
value follows the study's direction."""

from __future__ import annotations

import io

from rich.console import Console

from hpo.run.devices import plan_workers
from hpo.run.progress import LaunchProgress


def progress(*, maximize: bool = True, budget: int | None = 5) -> tuple[LaunchProgress,
                                                                         io.StringIO]:
    out = io.StringIO()
    view = LaunchProgress(console=Console(file=out, width=200), study_name="s",
                          storage_label="sqlite:///x.db", metric="val_accuracy",
                          maximize=maximize, budget=budget, epochs=3,
                          slots=plan_workers(gpus="none", workers=2, cores=2))
    return view, out


def finish(view: LaunchProgress, worker: int, trial: int, state: str, value: float | None = None,
           reason: str | None = None) -> None:
    view.handle(worker, "trial_started", {"trial": trial})
    view.handle(worker, "trial_finished", {"trial": trial, "state": state, "value": value,
                                           "reason": reason})


def test_off_a_terminal_each_finished_trial_is_one_line_with_the_counts() -> None:
    view, out = progress()
    with view:
        finish(view, 0, 0, "COMPLETE", 0.91)
        finish(view, 1, 1, "PRUNED", reason="val_accuracy 0.1000 at epoch 1 is below the floor")
        finish(view, 0, 2, "ABANDONED")  # failed by a peer: its retry will count
        finish(view, 1, 3, "FAIL", reason="RuntimeError: disk on fire")
        finish(view, 0, 4, "COMPLETE", 0.95)
    assert out.getvalue().splitlines() == [
        "Running s on sqlite:///x.db with 2 worker(s), 5 trials.",
        "trial 0 COMPLETE val_accuracy=0.9100 [worker 0] · 1/5 trials done · 0 pruned · "
        "0 failed · best val_accuracy 0.9100 (trial 0)",
        "trial 1 PRUNED (val_accuracy 0.1000 at epoch 1 is below the floor) [worker 1] · 2/5 "
        "trials done · 1 pruned · 0 failed · best val_accuracy 0.9100 (trial 0)",
        "trial 2 ABANDONED [worker 0] · 2/5 trials done · 1 pruned · 0 failed · best "
        "val_accuracy 0.9100 (trial 0)",
        "trial 3 FAIL (RuntimeError: disk on fire) [worker 1] · 3/5 trials done · 1 pruned · "
        "1 failed · best val_accuracy 0.9100 (trial 0)",
        "trial 4 COMPLETE val_accuracy=0.9500 [worker 0] · 4/5 trials done · 1 pruned · "
        "1 failed · best val_accuracy 0.9500 (trial 4)",
    ]


def test_the_best_value_follows_the_direction() -> None:
    view, _ = progress(maximize=False, budget=None)
    for trial, value in enumerate([0.5, 0.3, 0.4]):
        finish(view, 0, trial, "COMPLETE", value)
    assert (view.best_value, view.best_trial) == (0.3, 1)
    assert view._summary() == "3 trials done · 0 pruned · 0 failed · best val_accuracy 0.3000 " \
                              "(trial 1)"


def test_each_worker_s_row_follows_its_trial() -> None:
    view, _ = progress()
    view.handle(0, "loading_data", {})
    assert view.workers[0].status == "loading data"
    view.handle(0, "trial_started", {"trial": 7})
    view.handle(0, "epoch", {"trial": 7, "epoch": 2, "value": 0.8})
    worker = view.workers[0]
    assert (worker.trial, worker.epoch, worker.value, worker.status) == (7, 2, 0.8, "training")
    view.worker_exited(0, -9)
    assert (worker.trial, worker.status) == (None, "exited (-9)")
    view.worker_restarted(0)
    assert worker.status == "restarting"
    view.worker_exited(1, 0)
    assert view.workers[1].status == "done"


def test_on_a_terminal_the_panel_renders_every_worker() -> None:
    view, _ = progress()
    view.handle(1, "trial_started", {"trial": 2})
    view.handle(1, "epoch", {"trial": 2, "epoch": 1, "value": 0.75})
    out = io.StringIO()
    Console(file=out, width=120).print(view._render())
    text = out.getvalue()
    assert "0/5 trials done" in text and "#2" in text and "1/3" in text and "0.7500" in text


def test_on_a_terminal_the_panel_labels_the_baseline_estimates_and_lists_recent_trials() -> None:
    view, _ = progress()
    view.handle(0, "trial_started", {"trial": 0, "baseline": True})
    assert view.eta_seconds() is None  # nothing has finished yet
    finish(view, 1, 1, "PRUNED", 0.4, reason="val_accuracy 0.4000 at epoch 1 is below the floor")
    view._started -= 600  # the workers took long to start: not part of the pace
    view._first_trial -= 60  # a minute into the trials, one of five done: four minutes left
    assert view.eta_seconds() is not None and 239 <= view.eta_seconds() <= 241
    out = io.StringIO()
    Console(file=out, width=160).print(view._render())
    assert "about 4 min left" in out.getvalue()
    view._first_trial += 50  # ten seconds in: minutes would round to nothing
    out = io.StringIO()
    Console(file=out, width=160).print(view._render())
    assert "about 40 s left" in out.getvalue()
    for trial in range(2, 8):
        finish(view, 1, trial, "COMPLETE", 0.9)
    out = io.StringIO()
    Console(file=out, width=160).print(view._render())
    text = out.getvalue()
    assert "#0 (baseline)" in text and "finishing" in text  # the budget of 5 is spent
    assert "trial 7 complete 0.9000" in text
    assert "trial 1 pruned" not in text  # only the last five: trials 3-7
    view, _ = progress()
    finish(view, 1, 1, "PRUNED", 0.4, reason="val_accuracy 0.4000 at epoch 1 is below the floor")
    assert view.recent == ["trial 1 pruned 0.4000: val_accuracy 0.4000 at epoch 1 is below the "
                           "floor"]
