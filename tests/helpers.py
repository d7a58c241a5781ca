"""Helpers shared by the tests: real-format dataset files and running a worker in-process."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from hpo.data.synthetic import class_conditional_images


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as an IDX file, the format of MNIST's raw files."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def write_mnist(root: Path, *, n_train: int = 1000, n_test: int = 200) -> Path:
    """MNIST's four raw files in torchvision's layout under ``root``, with learnable images."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = class_conditional_images(n, (1, 28, 28), 10, split_seed=seed)
        write_idx(raw / f"{split}-images-idx3-ubyte", images.reshape(n, 28, 28).numpy())
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels.numpy().astype(np.uint8))
    return root


def copy_of_mnist(source: Path, target: Path) -> Path:
    """A copy of MNIST's raw folder under ``target`` that a test may break; returns it."""
    raw = target / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for file in (source / "MNIST" / "raw").iterdir():
        raw.joinpath(file.name).write_bytes(file.read_bytes())
    return raw


def make_spec(storage_url: str, study: str = "mnist-mlp", **overrides: Any):
    """A LaunchSpec with small, fast settings; override any field."""
    from hpo import registry
    from hpo.spec import LaunchSpec, WorkerSlot

    definition = registry.resolve(study).definition
    fields: dict[str, Any] = dict(
        study=registry.resolve(study).reference, definition=definition.name,
        study_name=definition.name, storage_url=storage_url,
        slots=(WorkerSlot(0, "cpu", "", 1),), trials=2, sampler="random", pruner="none",
        epochs=1, seed=0, synthetic=False, data_dir="data", options=dict(definition.options),
        total=None, patience=None, deadline=None, heartbeat_interval=1, grace_period=3,
        artifact_dir=None, keep_checkpoints=0,
    )
    fields.update(overrides)
    return LaunchSpec(**fields)


def make_worker(spec, **kwargs: Any):
    """A worker of ``spec``'s first slot, in this process, as a worker process makes it."""
    from hpo import registry
    from hpo.run.worker import Worker

    return Worker(spec, registry.resolve(spec.study).definition, spec.slots[0], **kwargs)


def run_inline(spec, *, worker_trials: int | None = None):
    """Create or resume the study and run one worker in this process (no subprocesses)."""
    from hpo.run import launch
    from hpo.run.budget import LocalBudget

    prepared = launch.prepare(launch.Plan.of(spec))
    budget = LocalBudget(worker_trials if worker_trials is not None else prepared.budget)
    worker = make_worker(spec, budget=budget)
    worker.run()
    return worker.study


def pruned_only_study(folder: Path) -> str:
    """A SQLite database in ``folder`` holding the study "empty" (mnist-mlp-seed, synthetic)
    whose only trial was pruned; returns its URL."""
    import optuna

    from hpo import registry
    from hpo.storage import records
    from hpo.storage.engine import open_storage

    url = f"sqlite:///{folder / 'e.db'}"
    seed_preset = registry.resolve("mnist-mlp-seed").definition
    study, _ = records.create_or_resume(open_storage(url), seed_preset, "empty", synthetic=True,
                                        spec={"study": "mnist-mlp-seed"})
    study.add_trial(optuna.trial.create_trial(
        params={"lr": 0.1}, distributions={"lr": seed_preset.search_space["lr"]},
        state=optuna.trial.TrialState.PRUNED, intermediate_values={1: 0.1}))
    return url


# Every process hpo_process started; tests/conftest.py kills what is left after each test, so a
# failed test never leaves a launch training behind it (and slowing every test after it).
STARTED: list[Any] = []


def hpo_process(*args: str, new_session: bool = False, **kwargs: Any):
    """Start the real ``hpo`` command line in a subprocess, output captured."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "hpo", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               start_new_session=new_session, **kwargs)
    STARTED.append((process, new_session))
    return process


def kill_leftover_processes() -> None:
    """Kill the hpo processes a test left running; their workers die with them (they set
    PR_SET_PDEATHSIG), and a process-group kill takes them at once."""
    import contextlib
    import os
    import signal

    while STARTED:
        process, own_session = STARTED.pop()
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if own_session:
                    os.killpg(process.pid, signal.SIGKILL)
                else:
                    process.kill()
            process.wait()


def wait_for(predicate, *, timeout: float = 120.0, interval: float = 0.2, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    import time

    import pytest

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what or predicate}")


def running_trials(url: str, study_name: str, *, min_epochs: int = 1) -> list:
    """Trials that are RUNNING and have finished at least ``min_epochs`` epochs."""
    import optuna
    from optuna.trial import TrialState

    try:
        study = optuna.load_study(study_name=study_name, storage=url)
    except KeyError:
        return []
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if len(t.intermediate_values) >= min_epochs and "worker" in t.user_attrs]


def write_svhn(root: Path, *, n_train: int = 400, n_test: int = 100) -> Path:
    """SVHN's train and test .mat files under ``root/SVHN``, in the real format: X is
    32x32x3xN uint8, y is Nx1 with the digit 0 stored as 10."""
    import scipy.io

    folder = root / "SVHN"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        images, labels = class_conditional_images(n, (3, 32, 32), 10, split_seed=seed)
        x = images.numpy().transpose(2, 3, 1, 0)  # (N,3,H,W) -> (H,W,3,N)
        y = np.where(labels.numpy() == 0, 10, labels.numpy()).astype(np.uint8).reshape(-1, 1)
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
    return root


def dashboard_study(storage, study_id: int) -> dict:
    """What optuna-dashboard's own API says of a study (its trials with their artifacts, its
    note), asked through its WSGI app without a server or a browser."""
    import io
    import json
    import wsgiref.util

    import optuna_dashboard

    environ: dict = {"PATH_INFO": f"/api/studies/{study_id}", "QUERY_STRING": "after=0",
                     "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    wsgiref.util.setup_testing_defaults(environ)
    statuses: list[str] = []
    body = b"".join(optuna_dashboard.wsgi(storage)(
        environ, lambda status, headers, exc_info=None: statuses.append(status)))
    assert statuses[0].startswith("200"), (statuses, body[:300])
    return json.loads(body)
