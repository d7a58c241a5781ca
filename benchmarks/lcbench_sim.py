"""LCBench, simulated: learning curves from YAHPO Gym's surrogate, and workers on a simulated clock.

The surrogate (``model.onnx``, YAHPO Gym's lcbench, Apache-2.0) predicts, for one of 34 OpenML
tasks, a configuration of a funnel-shaped MLP and an epoch (1..52), the training time so far and
the validation and test metrics. :func:`simulate` runs a search on it as a cluster would: W
workers, each training one trial at a time, an epoch of a trial costing ``time(e) - time(e-1)``
simulated seconds, so every report and every pruning decision happens at its worker's simulated
time and sees exactly what the other workers had reported by then.

This module needs only numpy and onnxruntime, so the peers' isolated environment runs it too
(benchmarks/lcbench_peer.py); the searches themselves live in benchmarks/lcbench.py.
"""

from __future__ import annotations

import heapq
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

EPOCHS = 52
WORKERS = 4
# A task's budget: this many median full trainings of a random configuration, summed over
# the workers (issue 15).
BUDGET_TRAININGS = 30

DESIGN_TASKS = (7593, 34539, 126025, 126029, 146212, 167149, 167152, 167168, 167181, 167184,
                167185, 167190, 168329, 168331, 168335, 168868, 168910, 189354, 189865, 189873,
                189905, 189906, 189908, 189909)
# Never used to choose anything: run them only for the final table.
HELD_OUT_TASKS = (3945, 126026, 167104, 167161, 167200, 167201, 168330, 168908, 189862, 189866)

DATA_ENV = "HPO_LCBENCH_DIR"
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lcbench"


@dataclass(frozen=True)
class Param:
    name: str
    low: float
    high: float
    log: bool
    integer: bool


# LCBench's search space (config_space.json), in the surrogate's column order after the epoch.
SPACE = (
    Param("batch_size", 16, 512, log=True, integer=True),
    Param("learning_rate", 1e-4, 1e-1, log=True, integer=False),
    Param("momentum", 0.1, 0.99, log=False, integer=False),
    Param("weight_decay", 1e-5, 1e-1, log=False, integer=False),
    Param("num_layers", 1, 5, log=False, integer=True),
    Param("max_units", 64, 1024, log=True, integer=True),
    Param("max_dropout", 0.0, 1.0, log=False, integer=False),
)


def data_folder(given: str | os.PathLike[str] | None = None) -> Path:
    """The surrogate's folder: ``given``, else $HPO_LCBENCH_DIR, else ../shared/data/lcbench
    beside the repository. Raises FileNotFoundError with the fix when it is not there."""
    folder = Path(given or os.environ.get(DATA_ENV) or DEFAULT_DATA)
    if not (folder / "model.onnx").is_file():
        raise FileNotFoundError(f"No LCBench surrogate in {folder} (model.onnx): pass --data "
                                f"or set {DATA_ENV} to the folder that holds it.")
    return folder


def random_config(rng: np.random.Generator) -> dict[str, float | int]:
    """A configuration drawn uniformly from SPACE (log-uniformly where a parameter is log)."""
    config: dict[str, float | int] = {}
    for p in SPACE:
        if p.log:
            low, high = math.log(p.low), math.log(p.high + (1 if p.integer else 0))
            value = math.exp(rng.uniform(low, high))
        else:
            value = rng.uniform(p.low, p.high + (1 if p.integer else 0))
        config[p.name] = min(int(value), int(p.high)) if p.integer else float(value)
    return config


@dataclass(frozen=True)
class Curve:
    """One configuration's learning curve: per epoch (index 0 is epoch 1)."""

    cost: np.ndarray  # simulated seconds that epoch took (clamped at 0)
    val: np.ndarray  # validation accuracy, percent
    test: np.ndarray  # test balanced accuracy, percent

    @property
    def full_cost(self) -> float:
        return float(self.cost.sum())


class Surrogate:
    """YAHPO Gym's LCBench surrogate, queried with onnxruntime; deterministic."""

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        import onnxruntime

        folder = data_folder(folder)
        options = onnxruntime.SessionOptions()
        # One thread: the benchmark runs one process per core.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(folder / "model.onnx"), options,
                                                    providers=["CPUExecutionProvider"])
        codes = json.loads((folder / "encoding.json").read_text())["OpenML_task_id"]
        self.codes = {int(task): code for task, code in codes.items() if task != "#na#"}

    def query(self, task: int, configs: Sequence[Mapping[str, float]], epochs: Iterable[int]
              ) -> np.ndarray:
        """Raw outputs, shape (len(configs), len(epochs), 6): elapsed time, val_accuracy,
        val_cross_entropy, val_balanced_accuracy, test_cross_entropy, test_balanced_accuracy."""
        epochs = list(epochs)
        rows = np.array([[epoch, *(float(c[p.name]) for p in SPACE)]
                         for c in configs for epoch in epochs], dtype=np.float32)
        if task not in self.codes:
            raise ValueError(f"LCBench has no task {task}: choose one of {sorted(self.codes)}.")
        cat = np.full((len(rows), 1), self.codes[task], dtype=np.int32)
        out = self.session.run(None, {"x_cat": cat, "x_cont": rows})[0]
        return out.reshape(len(configs), len(epochs), 6)

    def curves(self, task: int, configs: Sequence[Mapping[str, float]]) -> list[Curve]:
        out = self.query(task, configs, range(1, EPOCHS + 1))
        curves = []
        for rows in out:
            elapsed = rows[:, 0].astype(np.float64)
            # The surrogate's elapsed time is very rarely non-monotone: an epoch never costs
            # less than nothing.
            cost = np.maximum(np.diff(elapsed, prepend=0.0), 0.0)
            curves.append(Curve(cost=cost, val=rows[:, 1].astype(np.float64),
                                test=rows[:, 5].astype(np.float64)))
        return curves

    def median_full_cost(self, task: int, samples: int = 1000) -> float:
        """The median simulated time of a full training of a random configuration."""
        rng = np.random.default_rng(20221)
        configs = [random_config(rng) for _ in range(samples)]
        return float(np.median([curve.full_cost for curve in self.curves(task, configs)]))

    def budget(self, task: int, trainings: float = BUDGET_TRAININGS) -> float:
        """The task's compute budget, summed over the workers."""
        return trainings * self.median_full_cost(task)


# -- the simulated cluster -----------------------------------------------------------------

Decision = Literal["continue", "stop", "pause", "complete"]


@dataclass
class Job:
    """A trial a worker trains: ``key`` is the searcher's handle, ``done`` the epochs it has
    already trained (a paused trial resumed from its last epoch has done > 0)."""

    key: Any
    config: Mapping[str, float]
    done: int = 0


class Searcher(Protocol):
    """The search under test, asked by each simulated worker in simulated-time order."""

    def ask(self, worker: int, now: float) -> Job | None:
        """The next trial for ``worker`` (None: nothing left to run)."""
        ...

    def report(self, job: Job, epoch: int, value: float, now: float) -> Decision:
        """``job``'s validation accuracy after ``epoch``; at the last epoch the answer must be
        "complete" (the searcher records the trial as finished)."""
        ...


@dataclass(frozen=True)
class Completion:
    time: float  # simulated seconds, from the start of the search
    key: Any
    val: float  # validation accuracy at the last epoch
    test: float  # test balanced accuracy at the last epoch
    config: Mapping[str, float]


@dataclass
class Trace:
    """What happened in one simulated search."""

    horizon: float  # simulated wall time: the budget divided by the workers
    completions: list[Completion] = field(default_factory=list)
    trials: int = 0  # trials started (a resumed pause is not a new trial)
    epochs: int = 0  # epochs trained, all workers
    compute: float = 0.0  # simulated seconds trained, all workers (at most the budget)
    stopped: int = 0
    paused: int = 0
    events: list[tuple[float, int, Any, int, float, str]] = field(default_factory=list)

    def incumbents(self) -> list[Completion]:
        """The completions that improved the best validation accuracy, in time order."""
        best, out = -math.inf, []
        for c in sorted(self.completions, key=lambda c: c.time):
            if c.val > best:
                best = c.val
                out.append(c)
        return out

    def incumbent_at(self, time: float) -> Completion | None:
        found = None
        for c in self.incumbents():
            if c.time > time:
                break
            found = c
        return found

    @property
    def final(self) -> Completion | None:
        found = self.incumbents()
        return found[-1] if found else None

    def time_to_reach(self, value: float) -> float:
        """When the incumbent first reached ``value`` (inf: never)."""
        for c in self.incumbents():
            if c.val >= value:
                return c.time
        return math.inf


def simulate(searcher: Searcher, curve_of: Callable[[Mapping[str, float]], Curve], *,
             workers: int, budget: float, record_events: bool = False) -> Trace:
    """Run ``searcher`` on ``workers`` asynchronous simulated workers until the simulated wall
    time reaches ``budget / workers``; a trial still training then is cut off.

    Each worker asks for a trial when it is free, and trains it epoch by epoch; after each epoch
    it reports at that moment's simulated time. Events at equal times are taken in worker
    order, so a run is exactly reproducible."""
    horizon = budget / workers
    trace = Trace(horizon=horizon)
    # (time an epoch ends, worker): a worker has one epoch in progress at most, so ties in
    # time go by worker number.
    queue: list[tuple[float, int]] = []
    running: dict[int, tuple[Job, Curve, int]] = {}  # worker -> (job, curve, epoch in progress)

    def start(worker: int, now: float) -> None:
        job = searcher.ask(worker, now)
        if job is None:
            return
        if job.done == 0:
            trace.trials += 1
        curve = curve_of(job.config)
        epoch = job.done + 1
        running[worker] = (job, curve, epoch)
        heapq.heappush(queue, (now + float(curve.cost[epoch - 1]), worker))

    for worker in range(workers):
        start(worker, 0.0)
    while queue:
        now, worker = heapq.heappop(queue)
        if now > horizon:
            break
        job, curve, epoch = running.pop(worker)
        value = float(curve.val[epoch - 1])
        trace.epochs += 1
        trace.compute += float(curve.cost[epoch - 1])
        decision = searcher.report(job, epoch, value, now)
        if record_events:
            trace.events.append((now, worker, job.key, epoch, value, decision))
        if epoch == EPOCHS:
            if decision != "complete":
                raise RuntimeError(f"the searcher answered {decision!r} at the last epoch")
            trace.completions.append(Completion(now, job.key, value,
                                                float(curve.test[epoch - 1]), job.config))
            start(worker, now)
        elif decision == "continue":
            running[worker] = (job, curve, epoch + 1)
            heapq.heappush(queue, (now + float(curve.cost[epoch]), worker))
        elif decision in ("stop", "pause"):
            if decision == "stop":
                trace.stopped += 1
            else:
                trace.paused += 1
            job.done = epoch
            start(worker, now)
        else:
            raise RuntimeError(f"unknown decision {decision!r}")
    return trace
