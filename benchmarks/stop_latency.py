"""How long `hpo stop` takes to end a study's workers: from the stop to the last worker's exit.

One `hpo launch` with 2 CPU workers and one `hpo worker` process run a synthetic mnist-mlp
study with long trials (200 epochs, no pruning) until all three are mid-trial; then
`hpo stop --now` (or a plain `hpo stop`, --mode plain, which waits for the trials to end) runs
as a subprocess, and the time until the last of the launch and the worker has exited is printed:
counted from the start of the `hpo stop` command (what a user waits for) and from the moment it
returned (the mark in storage). Workers see the mark within one heartbeat interval (10 s by
default, --heartbeat-interval), so --now takes at most that plus the time to fail the trials and
exit. Target: at most 15 s for --now on an idle machine.

Storage: a temporary SQLite file, and PostgreSQL from --postgres URL, else a throwaway cluster
(tests/postgres.py, which needs initdb; skipped with the reason where it is missing).

    uv run python benchmarks/stop_latency.py                    # both storages, --now
    uv run python benchmarks/stop_latency.py --storage sqlite --repeat 3
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDY = "mnist-mlp"


@dataclass(frozen=True)
class Stopped:
    from_command: float  # seconds from the start of `hpo stop` to the last exit
    from_mark: float  # from the moment `hpo stop` returned
    exit_codes: list[int]
    last_marked: int  # the number of the last trial the study held once hpo stop returned
    running_at_stop: list[int]  # the trials RUNNING then
    outputs: list[tuple[str, str]]  # (stdout, stderr) of the launch and the joiner
    command_lines: str  # every process's command line (ps -eo args) while all three trained


def hpo(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hpo", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=env["HPO_BENCH_DIR"])


def _trials(url: str) -> list:
    import optuna

    return optuna.load_study(study_name=STUDY, storage=url).get_trials(deepcopy=False)


def running(url: str) -> list[int]:
    """The numbers of the trials RUNNING with at least one epoch behind them, in one read."""
    import optuna
    from optuna.trial import TrialState

    try:
        study = optuna.load_study(study_name=STUDY, storage=url)
    except KeyError:
        return []
    trials = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return [t.number for t in trials if len(t.intermediate_values) >= 1]


def recorded(url: str) -> bool:
    """Whether the launch has created the study and recorded the spec a worker joins with."""
    import optuna

    from hpo.storage.attributes import SPEC_ATTR

    try:
        return SPEC_ATTR in optuna.load_study(study_name=STUDY, storage=url).user_attrs
    except Exception:  # no study yet, or its tables half-made: the launch is still starting
        return False


def stop_workers(url: str, folder: Path, *, now: bool = True, heartbeat_interval: int = 10,
                 epochs: int = 200, data_dir: str | None = None, timeout: float = 600,
                 joiner: str = "worker") -> Stopped:
    """Start a 2-worker launch on ``url`` and, beside it, an ``hpo worker`` (``joiner``
    "worker") or a second, 1-worker ``hpo launch`` ("launch"); stop the study once all three
    workers are mid-trial, and time the two commands' exits."""
    # The URL (and PostgreSQL's password in it) goes through HPO_STORAGE, as the README tells
    # users to pass it, so that no command line shows it.
    env = {**os.environ, "HPO_BENCH_DIR": str(folder), "HPO_ARTIFACT_DIR": str(folder / "art"),
           "HPO_OFFLINE": "1", "PYTHONPATH": str(ROOT), "HPO_STORAGE": url}
    common = ["--heartbeat-interval", str(heartbeat_interval),
              "--gpus", "none", "--threads", "1", *(["--data-dir", data_dir] if data_dir else [])]
    launch = hpo("launch", STUDY, "--workers", "2", "--trials", "50", "--epochs", str(epochs),
                 "--pruner", "none", "--seed", "1", *common,
                 *([] if data_dir else ["--synthetic"]), env=env)
    processes = [launch]
    try:
        deadline = time.monotonic() + timeout
        # The worker joins as soon as the launch has recorded its spec: starting both at once
        # overlaps their start-up (torch's import, the data) instead of paying it twice.
        while not recorded(url):
            if time.monotonic() > deadline or launch.poll() is not None:
                raise RuntimeError(f"the launch did not record its study: {launch.communicate()}")
            time.sleep(0.2)
        if joiner == "launch":
            processes.append(hpo("launch", STUDY, "--workers", "1", "--trials", "50",
                                 "--epochs", str(epochs), "--pruner", "none", *common,
                                 *([] if data_dir else ["--synthetic"]), env=env))
        else:
            processes.append(hpo("worker", STUDY, *common, env=env))
        # The trials running at the stop come from the same read that saw all three mid-trial:
        # a second read could miss one that ended in between (a plain stop's trials are short).
        while len(running_at_stop := running(url)) < 3:
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise RuntimeError(f"the workers did not all start a trial: "
                                   f"{[p.communicate() for p in processes]}")
            time.sleep(0.5)
        command_lines = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True,
                                       text=True).stdout
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "hpo", "stop", STUDY, *(["--now"] if now else [])],
                       check=True, capture_output=True, env=env, cwd=folder)
        marked = time.monotonic()
        last_marked = _trials(url)[-1].number
        outputs = [p.communicate(timeout=timeout) for p in processes]
        ended = time.monotonic()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    return Stopped(ended - started, ended - marked, [p.returncode for p in processes],
                   last_marked, running_at_stop, outputs, command_lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--postgres", help="a PostgreSQL URL to use (a fresh database)")
    parser.add_argument("--mode", choices=["now", "plain"], default="now")
    parser.add_argument("--heartbeat-interval", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    server = None
    backends = ["sqlite", "postgres"] if args.storage == "both" else [args.storage]
    try:
        for backend in backends:
            for _ in range(args.repeat):
                with tempfile.TemporaryDirectory(prefix="hpo-stop-") as folder:
                    if backend == "sqlite":
                        url = f"sqlite:///{Path(folder) / 'hpo.db'}"
                    else:
                        from tests.postgres import (
                            PostgresServer,
                            create_database,
                            unavailable_reason,
                        )

                        if args.postgres is None and server is None:
                            reason = unavailable_reason()
                            if reason:
                                print(f"postgres: skipped ({reason})")
                                break
                            server = PostgresServer().init()
                            server.start()
                        url = args.postgres or server.url(
                            create_database(server.admin_dsn()))
                    result = stop_workers(url, Path(folder), now=args.mode == "now",
                                          heartbeat_interval=args.heartbeat_interval,
                                          epochs=200 if args.mode == "now" else 6)
                    print(f"{backend}: hpo stop{' --now' if args.mode == 'now' else ''} to the "
                          f"last exit {result.from_command:.1f} s ({result.from_mark:.1f} s from "
                          f"the mark); exit codes {result.exit_codes}", flush=True)
    finally:
        if server is not None:
            server.destroy()


if __name__ == "__main__":
    main()
