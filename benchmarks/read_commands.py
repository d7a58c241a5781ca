"""How long the read-only commands take: `hpo --help`, `status`, `best`, `trials` and `export`.

Target: under 0.3 s each on the 2-core development machine. They answer before Typer and Rich
load (hpo/reads.py), read the study's tables directly (hpo/storage/snapshot.py) and import
neither torch nor optuna nor SQLAlchemy.

The study is built as a 50-trial mnist-mlp study looks (params, curves, user attributes), in a
temporary SQLite file, or read from --storage. Each command runs --repeat times as a real
subprocess (`python -m hpo ...`, what a user's shell starts), and the median wall time is
printed. --against REV measures the same commands on hpo as it was at git revision REV too
(its hpo/ and studies/ on PYTHONPATH, the same interpreter and packages), for a before/after.

    uv run python benchmarks/read_commands.py --against b211095
    uv run python benchmarks/read_commands.py --storage sqlite:///storage/hpo.db --study mnist-mlp
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_study(url: str, name: str, trials: int) -> None:
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {"lr": FloatDistribution(1e-4, 1e-2, log=True), "width": IntDistribution(128, 1024),
             "depth": IntDistribution(1, 4), "shape": CategoricalDistribution(["constant",
                                                                                "funnel"]),
             "dropout": FloatDistribution(0.0, 0.5), "weight_decay": FloatDistribution(0.0, 0.1)}
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    study.set_user_attr("metric", "val_accuracy")
    study.set_user_attr("definition", "mnist-mlp")
    study.set_user_attr("dataset", "mnist")
    rng = random.Random(0)
    for number in range(trials):
        epochs = 10 if number % 3 == 0 else 2
        params = {"lr": 10 ** rng.uniform(-4, -2), "width": rng.randint(128, 1024),
                  "depth": rng.randint(1, 4), "shape": rng.choice(["constant", "funnel"]),
                  "dropout": rng.uniform(0, 0.5), "weight_decay": rng.uniform(0, 0.1)}
        curve = {epoch: 0.9 + 0.008 * epoch for epoch in range(1, epochs + 1)}
        state = optuna.trial.TrialState.COMPLETE if epochs == 10 else \
            optuna.trial.TrialState.PRUNED
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=space, state=state,
            value=curve[epochs] if epochs == 10 else None, intermediate_values=curve,
            user_attrs={"epochs_run": epochs, "seconds_per_epoch": 3.2, "device": "cpu",
                        "seed": number}))


def timed(args: list[str], repeat: int, env: dict[str, str], cwd: str) -> float:
    """The median wall time of ``python -m hpo args``, run in ``cwd`` (not the repository,
    whose hpo/ would come first on the path)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "hpo", *args], capture_output=True,
                              text=True, env=env, cwd=cwd)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"hpo {' '.join(args)} failed: {done.stderr.strip()}")
    return statistics.median(times)


def checkout(revision: str, into: Path) -> Path:
    """hpo/ and studies/ as they were at ``revision``, to put first on PYTHONPATH."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "hpo", "studies"],
                             capture_output=True, check=True).stdout
    into.mkdir()
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", help="an existing storage [default: a built 50-trial study]")
    parser.add_argument("--study", default="mnist-mlp")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--against", metavar="REV", help="also measure hpo at git revision REV")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.storage
        if url is None:
            url = f"sqlite:///{Path(folder) / 'hpo.db'}"
            build_study(url, args.study, 50)
        storage = ["--storage", url]
        rows = [
            ("hpo --help", ["--help"]),
            ("hpo status", ["status", *storage]),
            (f"hpo best {args.study}", ["best", args.study, *storage]),
            (f"hpo trials {args.study} --top 5", ["trials", args.study, "--top", "5", *storage]),
            (f"hpo export {args.study} --format json", ["export", args.study, "--format", "json",
                                                        *storage]),
        ]
        versions = [("now", dict(os.environ))]
        if args.against:
            old = checkout(args.against, Path(folder) / "old")
            versions.insert(0, (args.against, {**os.environ, "PYTHONPATH": str(old)}))
        print(f"median of {args.repeat} runs each, as subprocesses; load average before: "
              f"{os.getloadavg()[0]:.2f}")
        print(f"  {'':<40} " + " ".join(f"{label:>9}" for label, _ in versions))
        for label, command in rows:
            figures = [timed(command, args.repeat, env, folder) for _, env in versions]
            print(f"  {label:<40} " + " ".join(f"{figure:>7.2f} s" for figure in figures))
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
