"""Outside peers on the LCBench simulation: searches that do not come from Optuna or hpo.

- ``syne-asha``: Syne Tune 0.16's ASHA (asynchronous successive halving, stopping type, random
  search), with its defaults: grace period 1 epoch, reduction factor 3.
- ``syne-bohb``: Syne Tune 0.16's BOHB (the same ASHA with a TPE-like kernel density model).
- ``dehb``: DEHB 0.1.2 (differential evolution over Hyperband brackets), ask-and-tell; each job
  trains a configuration from scratch to the fidelity DEHB chose.

They pin packages that torch's environment cannot hold (DEHB wants numpy < 2), so each runs in
an isolated environment that ``uv`` builds on first use and caches: :func:`run_peers` starts
this file there. Inside, it needs only the peer, numpy and onnxruntime, and it drives the same
simulated cluster as every other arm (benchmarks/lcbench_sim.py).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lcbench_sim as sim

# What each peer's isolated environment holds (uv run --with ...).
ENVIRONMENTS: dict[str, tuple[str, ...]] = {
    "syne-asha": ("syne-tune==0.16.0", "onnxruntime>=1.20"),
    "syne-bohb": ("syne-tune==0.16.0", "onnxruntime>=1.20"),
    "dehb": ("dehb==0.1.2", "numpy<2", "onnxruntime>=1.20,<1.24"),
}
METRIC, EPOCH = "val_accuracy", "epoch"


class SyneTuneSearch:
    """A Syne Tune scheduler asked and told as its own Tuner does: suggest, on_trial_add, then
    on_trial_result every epoch; STOP (also at the last epoch) is followed by on_trial_remove."""

    def __init__(self, name: str, seed: int) -> None:
        from syne_tune.config_space import lograndint, loguniform, randint, uniform
        from syne_tune.optimizer.baselines import ASHA, BOHB

        space: dict[str, Any] = {}
        for p in sim.SPACE:
            if p.integer:
                space[p.name] = (lograndint if p.log else randint)(int(p.low), int(p.high))
            else:
                space[p.name] = (loguniform if p.log else uniform)(p.low, p.high)
        kind = {"syne-asha": ASHA, "syne-bohb": BOHB}[name]
        self.scheduler = kind(space, metric=METRIC, time_attr=EPOCH, max_t=sim.EPOCHS,
                              do_minimize=False, random_seed=seed)
        self.trials: dict[int, Any] = {}
        self.ask_seconds = self.prune_seconds = 0.0

    def ask(self, worker: int, now: float) -> sim.Job | None:
        from syne_tune.backend.trial_status import Trial

        started = time.perf_counter()
        suggestion = self.scheduler.suggest()
        if suggestion is None:
            return None
        trial = Trial(trial_id=len(self.trials), config=dict(suggestion.config),
                      creation_time=datetime.now())
        self.scheduler.on_trial_add(trial)
        self.trials[trial.trial_id] = trial
        self.ask_seconds += time.perf_counter() - started
        config = {p.name: trial.config[p.name] for p in sim.SPACE}
        return sim.Job(key=trial.trial_id, config=config)

    def report(self, job: sim.Job, epoch: int, value: float, now: float) -> sim.Decision:
        from syne_tune.optimizer.scheduler import SchedulerDecision

        started = time.perf_counter()
        trial = self.trials[job.key]
        decision = self.scheduler.on_trial_result(trial, {EPOCH: epoch, METRIC: value})
        if decision == SchedulerDecision.STOP:
            self.scheduler.on_trial_remove(trial)
        self.prune_seconds += time.perf_counter() - started
        if epoch == sim.EPOCHS:
            return "complete"
        return "stop" if decision == SchedulerDecision.STOP else "continue"


class DehbSearch:
    """DEHB by ask and tell. A job trains its configuration from scratch up to the fidelity DEHB
    gave it (rounded to whole epochs) and is then told; only jobs at the full 52 epochs count
    as completed trials."""

    def __init__(self, seed: int) -> None:
        import ConfigSpace as CS
        from dehb import DEHB

        space = CS.ConfigurationSpace(seed=seed)
        for p in sim.SPACE:
            kind = CS.UniformIntegerHyperparameter if p.integer \
                else CS.UniformFloatHyperparameter
            space.add(kind(p.name, lower=p.low, upper=p.high, log=p.log))
        self.output = tempfile.mkdtemp(prefix="dehb-")
        # One "worker" for DEHB itself (no dask cluster): the simulation runs the jobs, and
        # DEHB answers every ask, with jobs still pending, as it does for asynchronous use.
        self.dehb = DEHB(cs=space, dimensions=len(sim.SPACE), min_fidelity=1,
                         max_fidelity=sim.EPOCHS, eta=3, n_workers=1, seed=seed,
                         output_path=self.output, log_level="ERROR")
        self.jobs: dict[int, tuple[dict[str, Any], int, float]] = {}
        self.ask_seconds = self.prune_seconds = 0.0

    def ask(self, worker: int, now: float) -> sim.Job:
        started = time.perf_counter()
        job = self.dehb.ask()
        self.ask_seconds += time.perf_counter() - started
        fidelity = min(sim.EPOCHS, max(1, round(float(job["fidelity"]))))
        key = len(self.jobs)
        self.jobs[key] = (job, fidelity, now)
        config = {p.name: (int(job["config"][p.name]) if p.integer
                           else float(job["config"][p.name])) for p in sim.SPACE}
        return sim.Job(key=key, config=config)

    def report(self, job: sim.Job, epoch: int, value: float, now: float) -> sim.Decision:
        info, fidelity, began = self.jobs[job.key]
        if epoch < fidelity:
            return "continue"
        started = time.perf_counter()
        self.dehb.tell(info, {"fitness": -value, "cost": now - began})
        self.prune_seconds += time.perf_counter() - started
        return "complete" if epoch == sim.EPOCHS else "stop"


def make_search(name: str, seed: int) -> Any:
    if name in ("syne-asha", "syne-bohb"):
        return SyneTuneSearch(name, seed)
    if name == "dehb":
        return DehbSearch(seed)
    raise ValueError(f"unknown peer {name!r}: choose one of {', '.join(ENVIRONMENTS)}")


def run_jobs(name: str, jobs: Sequence[tuple[int, int]], workers: int,
             budgets: Mapping[int, float], data: str | None) -> list[dict[str, Any]]:
    """Inside the peer's environment: run ``name`` on each (task, seed)."""
    import logging

    logging.disable(logging.WARNING)  # the peers log every decision
    surrogate = sim.Surrogate(data)
    rows = []
    for task, seed in jobs:
        cache: dict[tuple[float, ...], sim.Curve] = {}

        def curve_of(config: Mapping[str, float], task: int = task,
                     cache: dict = cache) -> sim.Curve:
            key = tuple(float(config[p.name]) for p in sim.SPACE)
            if key not in cache:
                [cache[key]] = surrogate.curves(task, [config])
            return cache[key]

        started = time.perf_counter()
        search = make_search(name, seed)
        trace = sim.simulate(search, curve_of, workers=workers, budget=budgets[task])
        final = trace.final
        rows.append({
            "task": task, "seed": seed, "arm": name,
            "final_val": final.val if final else None,
            "final_test": final.test if final else None,
            "final_time": final.time if final else None,
            "incumbents": [(c.time, c.val, c.test) for c in trace.incumbents()],
            "horizon": trace.horizon, "budget": budgets[task],
            "compute": round(trace.compute, 3), "trials": trace.trials, "epochs": trace.epochs,
            "completed": len(trace.completions), "stopped": trace.stopped, "paused": 0,
            "seconds": round(time.perf_counter() - started, 3),
            "search_seconds": round(search.ask_seconds + search.prune_seconds, 3),
        })
    return rows


def run_peers(peers: Sequence[str], tasks: Sequence[int], seeds: Sequence[int], *, workers: int,
              budgets: Mapping[int, float], data: str | None, jobs: int
              ) -> list[dict[str, Any]]:
    """Run each peer in its isolated environment, ``jobs`` processes at a time; returns their
    result rows. Raises RuntimeError, with the environment's own message, if one cannot be
    built or fails."""
    pairs = [(task, seed) for task in tasks for seed in seeds]
    running: list[tuple[str, subprocess.Popen[str], Path]] = []
    rows: list[dict[str, Any]] = []
    folder = Path(tempfile.mkdtemp(prefix="lcbench-peers-"))
    commands = []
    for peer in peers:
        if peer not in ENVIRONMENTS:
            raise ValueError(f"unknown peer {peer!r}: choose one of {', '.join(ENVIRONMENTS)}")
        for index in range(jobs):
            chunk = pairs[index::jobs]
            if not chunk:
                continue
            spec = folder / f"{peer}-{index}.json"
            spec.write_text(json.dumps({"peer": peer, "jobs": chunk, "workers": workers,
                                        "budgets": {str(t): b for t, b in budgets.items()},
                                        "data": data}))
            withs = [arg for package in ENVIRONMENTS[peer] for arg in ("--with", package)]
            commands.append((peer, ["uv", "run", "--no-project", "--isolated", "--python",
                                    "3.11", *withs, "python", __file__, "--spec", str(spec)],
                             spec.with_suffix(".out")))
    pending = list(commands)
    while pending or running:
        while pending and len(running) < jobs:
            peer, command, out = pending.pop(0)
            process = subprocess.Popen(command, stdout=out.open("w"), stderr=subprocess.PIPE,
                                       text=True)
            running.append((peer, process, out))
        peer, process, out = running.pop(0)
        _, error = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"the peer {peer} failed in its isolated environment: "
                               f"{error.strip().splitlines()[-1] if error.strip() else '?'}")
        rows.extend(json.loads(out.read_text()))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description="Run an outside peer on LCBench (inside its "
                                     "isolated environment; benchmarks/lcbench.py starts it).")
    parser.add_argument("--spec", type=Path, required=True)
    args = parser.parse_args()
    spec = json.loads(args.spec.read_text())
    budgets = {int(task): budget for task, budget in spec["budgets"].items()}
    rows = run_jobs(spec["peer"], [tuple(pair) for pair in spec["jobs"]], spec["workers"],
                    budgets, spec["data"])
    json.dump(rows, sys.stdout, default=lambda v: None if isinstance(v, float)
              and not math.isfinite(v) else str(v))
    return 0


if __name__ == "__main__":
    sys.exit(main())
