"""How long a launch takes to get going: from the command to its first epoch, and from a
worker's death to its replacement's first epoch.

Both pay for a fresh worker process (torch, optuna, the dataset) before any training. Each run
is a real `python -m hpo launch mnist-mlp --synthetic` in a temporary folder, with one CPU
worker; the times come from polling the study's SQLite file for the trial's reported epochs.

- command to first epoch: `--trials 1 --epochs 2`, from starting the command until the first
  trial has reported epoch 1;
- death to replacement's first epoch: `--trials 1 --epochs 40`; once the trial has reported
  epoch 2, its worker is SIGKILLed; from then until the retry reports its first epoch (it
  resumes after the last finished epoch, so it reports those again at once), and until it
  reports the first epoch it trained itself (which adds an epoch of training).

--against REV measures hpo as it was at git revision REV too (its hpo/ and studies/ on
PYTHONPATH, the same interpreter and packages), for a before/after.

    uv run python benchmarks/launch_startup.py --repeat 3 --against 4413f6e
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV: dict[str, str] = dict(os.environ)  # the environment of the hpo measured


def launch(folder: Path, epochs: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "hpo", "launch", "mnist-mlp", "--trials", "1", "--epochs",
               str(epochs), "--synthetic", "--workers", "1", "--gpus", "none", "--seed", "1",
               "--pruner", "none", "--heartbeat-interval", "1",
               "--storage", f"sqlite:///{folder / 'hpo.db'}"]
    return subprocess.Popen(command, cwd=folder, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, env=ENV)


def epochs_of(folder: Path) -> dict[int, int]:
    """Each trial's number: the highest epoch it has reported."""
    path = folder / "hpo.db"
    if not path.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            rows = db.execute("SELECT t.number, MAX(v.step) FROM trial_intermediate_values v "
                              "JOIN trials t ON t.trial_id = v.trial_id GROUP BY t.number")
            return dict(rows.fetchall())
    except sqlite3.OperationalError:  # the tables are not there yet
        return {}


def worker_pid(folder: Path, number: int) -> int:
    with sqlite3.connect(f"file:{folder / 'hpo.db'}?mode=ro", uri=True, timeout=5) as db:
        (value,) = db.execute("SELECT a.value_json FROM trial_user_attributes a JOIN trials t "
                              "ON t.trial_id = a.trial_id WHERE t.number = ? AND a.key = "
                              "'worker'", (number,)).fetchone()
    return int(json.loads(value).rsplit(":", 1)[1])


def wait_until(condition, timeout: float = 600.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(0.02)
    raise SystemExit("timed out")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def to_first_epoch() -> float:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        started = time.monotonic()
        process = launch(folder, epochs=2)
        try:
            reached = wait_until(lambda: epochs_of(folder).get(0, 0) >= 1)
        finally:
            stop(process)
        return reached - started


def death_to_replacement() -> tuple[float, float]:
    """Seconds to the replacement's first reported epoch, and to the first it trained."""
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        process = launch(folder, epochs=40)
        try:
            wait_until(lambda: epochs_of(folder).get(0, 0) >= 2)
            os.kill(worker_pid(folder, 0), signal.SIGKILL)
            killed = time.monotonic()
            reached_by_the_dead = epochs_of(folder)[0]
            reported = wait_until(lambda: epochs_of(folder).get(1, 0) >= 1)
            trained = wait_until(lambda: epochs_of(folder).get(1, 0) > reached_by_the_dead)
        finally:
            stop(process)
        return reported - killed, trained - killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--against", metavar="REV", help="also measure hpo at git revision REV")
    args = parser.parse_args()
    print(f"median of {args.repeat}, the versions taking turns; load average before: "
          f"{os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as old:
        versions: dict[str, str | None] = {"now": None}
        if args.against:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.against, "hpo",
                                      "studies"], capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
            versions = {args.against: old, "now": None}
        times: dict[str, list[tuple[float, float, float]]] = {label: [] for label in versions}
        for _ in range(args.repeat):
            for label, path in versions.items():
                ENV.pop("PYTHONPATH", None)
                if path is not None:
                    ENV["PYTHONPATH"] = path
                times[label].append((to_first_epoch(), *death_to_replacement()))
    for label, runs in times.items():
        print(f"{label}:")
        for name, column in (("command to first epoch", 0),
                             ("worker death to its replacement's first epoch", 1),
                             ("  ... to the first epoch it trained itself", 2)):
            values = [run[column] for run in runs]
            print(f"  {name:<48} {statistics.median(values):6.2f} s  "
                  f"({', '.join(f'{t:.2f}' for t in values)})")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
