"""Trials per hour with 1 worker against 2 CPU workers on this machine.

Both runs train the same trials: N parameter sets drawn once from the study's search space with
a fixed seed are enqueued into a fresh SQLite study, then ``hpo launch --workers W`` runs them
on synthetic data. The figure is N over the span from the first trial's start to the last
trial's end (process start-up excluded); the wall time of the whole command is printed too.

    uv run python benchmarks/worker_scaling.py [--study mnist-mlp|logreg-loss] [--trials 12]
        [--epochs 2] [--workers 1 2] [--threads N] [--repeat R]

By default each worker gets hpo's thread count (the cores divided among the workers), so one
worker already uses both cores for its matrix products; --threads 1 compares one core against
two. --repeat keeps the best of R runs of each, since this machine's timings vary by ~15%.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

from hpo import registry
from hpo.definition import suggest
from hpo.settings import cpu_count
from hpo.storage import records as study_store
from hpo.storage.engine import open_storage


def draw_params(study: str, n: int, seed: int) -> list[dict]:
    sampler_study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    params = []
    for _ in range(n):
        trial = sampler_study.ask()
        params.append(suggest(trial, registry.resolve(study).definition.search_space))
        sampler_study.tell(trial, 0.0)
    return params


def run(study_name: str, workers: int, params: list[dict], epochs: int, folder: Path,
        threads: int | None = None) -> tuple[int, float, float]:
    url = f"sqlite:///{folder / f'{study_name}-{workers}-{time.monotonic_ns()}.db'}"
    # The study is created as hpo creates it (with the seed baseline enqueued first), then
    # the drawn trials are queued behind it, so every run trains exactly the same trials.
    storage = open_storage(url)
    study, _ = study_store.create_or_resume(storage, registry.resolve(study_name).definition,
                                            "scaling", synthetic=True,
                                            spec={"study": study_name})
    for p in params:
        study.enqueue_trial(p)
    started = time.perf_counter()
    queued = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
    command = [sys.executable, "-m", "hpo", "launch", study_name, "--study-name", "scaling",
               "--storage", url, "--synthetic", "--trials", str(queued),
               "--workers", str(workers), "--epochs", str(epochs), "--pruner", "none",
               "--sampler", "random", "--seed", "0", "--keep-checkpoints", "0"]
    if threads:
        command += ["--threads", str(threads)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    trials = optuna.load_study(study_name="scaling", storage=url).get_trials()
    first = min(t.datetime_start for t in trials)
    last = max(t.datetime_complete for t in trials)
    return len(trials), (last - first).total_seconds(), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="mnist-mlp", choices=["mnist-mlp", "logreg-loss"])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    params = draw_params(args.study, args.trials, args.seed)
    print(f"{args.study}: {args.trials} trials drawn with seed {args.seed} (+ the seed baseline "
          f"where the study has one) x {args.epochs} epochs on synthetic data, "
          f"{cpu_count()} cores, threads per worker: {args.threads or 'cores / workers'}")
    rates = {}
    with tempfile.TemporaryDirectory() as folder:
        for workers in args.workers:
            best = None
            for _ in range(args.repeat):
                count, span, wall = run(args.study, workers, params, args.epochs, Path(folder),
                                        threads=args.threads)
                if best is None or span < best[1]:
                    best = (count, span, wall)
            count, span, wall = best
            rates[workers] = count / span * 3600
            print(f"{workers} worker(s): {span:6.1f} s of trials ({wall:6.1f} s wall), "
                  f"{rates[workers]:7.0f} trials/hour")
    base = rates[args.workers[0]]
    for workers in args.workers[1:]:
        print(f"speed-up {workers} vs {args.workers[0]} worker(s): {rates[workers] / base:.2f}x "
              "(target: at least 1.7x for 2 vs 1)")


if __name__ == "__main__":
    main()
