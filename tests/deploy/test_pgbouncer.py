"""Many workers through PgBouncer: a real PgBouncer, configured by the script that ships
(deploy/pgbouncer/entrypoint.sh), in front of the throwaway PostgreSQL, and 16 workers on one
study with an exact --total, in transaction pooling (which breaks psycopg's server-side
prepared statements unless hpo turns them off). PostgreSQL must never see more connections
than the pool."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import psycopg
import pytest
import torch
from optuna.trial import TrialState

from hpo.run.budget import LocalBudget, counted_finished
from tests.helpers import make_spec, make_worker, run_inline
from tests.postgres import PASSWORD, USER, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "deploy" / "pgbouncer" / "entrypoint.sh"
POOL_SIZE = 4
WORKERS = 16
TOTAL = 40


class PgBouncer:
    """PgBouncer started through the shipped entrypoint (as ``postgres`` when we are root:
    PgBouncer refuses to run as root)."""

    def __init__(self, server, database: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="hpo-pgb-"))
        self.port = free_port()
        self.database = database
        # A copy of the shipped script in PgBouncer's own folder: run as postgres, it cannot
        # rely on reading the clone (a CI clone may sit in a folder only root can enter).
        entrypoint = self.root / ENTRYPOINT.name
        shutil.copy(ENTRYPOINT, entrypoint)
        user = None
        if os.geteuid() == 0:
            user = "postgres"
            for path in (self.root, entrypoint):
                shutil.chown(path, user="postgres", group="postgres")
        env = {**os.environ, "PATH": f"{os.environ['PATH']}:/usr/sbin", "DB_HOST": "127.0.0.1",
               "DB_PORT": str(server.port), "DB_NAME": database, "DB_USER": USER,
               "DB_PASSWORD": PASSWORD,
               "LISTEN_ADDR": "127.0.0.1", "LISTEN_PORT": str(self.port),
               "POOL_SIZE": str(POOL_SIZE), "MAX_CLIENT_CONN": "200",
               "CONFIG_DIR": str(self.root / "config")}
        self.log = (self.root / "log").open("w")  # closed in stop()
        self.process = subprocess.Popen(["bash", str(entrypoint)], env=env, user=user,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"PgBouncer exited: {(self.root / 'log').read_text()}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        pytest.fail("PgBouncer did not start listening within 30 s")

    def url(self) -> str:
        return f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{self.database}"

    def log_text(self) -> str:
        self.log.flush()
        return (self.root / "log").read_text()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def pgbouncer(postgres_server) -> Iterator[PgBouncer]:
    if shutil.which("pgbouncer", path=f"{os.environ['PATH']}:/usr/sbin") is None:
        pytest.skip("PgBouncer is not installed (apt-get install pgbouncer; .ci/run does)")
    if postgres_server is None:
        pytest.skip("the PgBouncer test needs the throwaway cluster, not HPO_TEST_POSTGRES_URL")
    from tests.postgres import create_database

    bouncer = PgBouncer(postgres_server, create_database(postgres_server.admin_dsn()))
    yield bouncer
    bouncer.stop()


class ConnectionWatch:
    """Samples PostgreSQL's own view (pg_stat_activity) of connections to one database."""

    def __init__(self, admin_dsn: str, database: str) -> None:
        self.admin_dsn, self.database = admin_dsn, database
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as connection:
            while not self._stop.wait(0.05):
                (count,) = connection.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                    "AND backend_type = 'client backend'", (self.database,)).fetchone()
                self.peak = max(self.peak, count)
                self.samples += 1

    def __enter__(self) -> ConnectionWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_sixteen_workers_through_pgbouncer(pgbouncer: PgBouncer, postgres_server,
                                           mnist_dir: Path) -> None:
    """16 workers, each with its own engine and connections as on 16 machines, run in threads
    of this process: a process per worker would spend minutes of a 2-core machine importing
    torch, and the database sees the same clients either way."""
    url = pgbouncer.url()
    # The study, created through PgBouncer like everything else.
    spec = make_spec(url, "logreg-loss", trials=1, epochs=1, data_dir=str(mnist_dir),
                     total=TOTAL)
    run_inline(spec)
    workers = [make_worker(spec, budget=LocalBudget(None)) for _ in range(WORKERS)]
    counted = [0] * WORKERS
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            counted[index] = workers[index].run()
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(WORKERS)]
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ConnectionWatch(postgres_server.admin_dsn(), pgbouncer.database) as watch:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=180)
    finally:
        torch.set_num_threads(threads_before)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)

    trials = optuna.load_study(study_name="logreg-loss", storage=url).get_trials()
    assert counted_finished(trials) == TOTAL and len(trials) == TOTAL
    assert sum(counted) == TOTAL - 1  # the first trial ran before the workers
    assert sorted(t.number for t in trials) == list(range(TOTAL))
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    assert not [t.number for t in trials if t.state == TrialState.FAIL]
    # Every worker kept its own connections to PgBouncer: far more clients than the pool.
    clients = sum(w.storage.rdb.engine.pool.checkedin() for w in workers)
    assert clients >= WORKERS > POOL_SIZE
    assert watch.samples > 10
    assert 1 <= watch.peak <= POOL_SIZE, f"PostgreSQL saw {watch.peak} connections"
    log = pgbouncer.log_text()
    assert "transaction pooling" in log and PASSWORD not in log
