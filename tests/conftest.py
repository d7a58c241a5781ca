from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import make_spec, run_inline, write_mnist, write_svhn


@pytest.fixture(autouse=True)
def _no_leftover_processes():
    """Whatever a test's outcome, no hpo launch it started keeps training after it."""
    from tests.helpers import kill_leftover_processes

    yield
    kill_leftover_processes()


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test downloads anything or touches the user's ./data and ./storage."""
    monkeypatch.setenv("HPO_OFFLINE", "1")
    monkeypatch.setenv("HPO_DATA_DIR", str(tmp_path / "no-data-here"))
    monkeypatch.setenv("HPO_ARTIFACT_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small MNIST in the real IDX format, read through the real loader. 5000 training images
    (4000 train, 1000 validation), enough for the mnist-mlp recipe to clear its 50% floor in an
    epoch, and 500 test images, so a test split is never mistaken for the validation split."""
    return write_mnist(tmp_path_factory.mktemp("mnist"), n_train=5000, n_test=500)


@pytest.fixture(scope="session")
def svhn_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SVHN's two .mat files in the real format: 400 training images (300 train, 100
    validation) and 100 test images."""
    return write_svhn(tmp_path_factory.mktemp("svhn"), n_train=400, n_test=100)


@pytest.fixture
def unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generated files cannot match SVHN's MD5s; this is the documented test switch."""
    monkeypatch.setenv("HPO_VERIFY_CHECKSUMS", "0")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hpo.db'}"


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path
                   ) -> tuple[str, Path]:
    """A small real-format MNIST study with complete and pruned trials and checkpoints, trained
    once per session: tests that only read it share it (finished_study_copy is for the others).
    """
    folder = tmp_path_factory.mktemp("finished")
    url = f"sqlite:///{folder / 'hpo.db'}"
    artifacts = folder / "artifacts"
    with pytest.MonkeyPatch.context() as patch:  # the session's own isolated environment
        patch.setenv("HPO_OFFLINE", "1")
        patch.chdir(folder)
        study = run_inline(make_spec(url, trials=5, epochs=2, pruner="median",
                                     data_dir=str(mnist_dir), artifact_dir=str(artifacts),
                                     keep_checkpoints=2, sampler="tpe"))
        study.enqueue_trial({"lr": 0.1, "width": 256, "depth": 4, "shape": "funnel",
                             "dropout": 0.0})
        run_inline(make_spec(url, trials=1, epochs=2, pruner="median",
                             data_dir=str(mnist_dir), artifact_dir=str(artifacts),
                             keep_checkpoints=2))
    return url, artifacts


@pytest.fixture
def finished_study_copy(finished_study: tuple[str, Path], tmp_path: Path) -> tuple[str, Path]:
    """A copy of finished_study (its database and checkpoints) that a test may change."""
    import shutil
    import sqlite3

    url, artifacts = finished_study
    copy = tmp_path / "copy"
    shutil.copytree(artifacts, copy / "artifacts")
    source = sqlite3.connect(url.removeprefix("sqlite:///"))
    target = sqlite3.connect(copy / "hpo.db")
    with target:
        source.backup(target)  # consistent, whatever the write-ahead log still holds
    source.close()
    target.close()
    return f"sqlite:///{copy / 'hpo.db'}", copy / "artifacts"


# -- PostgreSQL ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for the session: HPO_TEST_POSTGRES_URL if set, else a throwaway
    cluster from the machine's initdb/pg_ctl. Skips, with the reason, only if neither works."""
    import os

    from tests.postgres import PostgresServer, unavailable_reason

    if os.environ.get("HPO_TEST_POSTGRES_URL"):
        yield None
        return
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"no PostgreSQL for tests: {reason}; set HPO_TEST_POSTGRES_URL instead")
    server = PostgresServer().init()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty database on the session's server, as a SQLAlchemy URL."""
    import os

    from sqlalchemy.engine import make_url

    from tests.postgres import create_database

    external = os.environ.get("HPO_TEST_POSTGRES_URL")
    if external:
        admin = make_url(external).set(drivername="postgresql")
        try:
            name = create_database(admin.render_as_string(hide_password=False))
        except Exception:  # no CREATEDB privilege: share the given database
            return external
        return make_url(external).set(database=name).render_as_string(hide_password=False)
    return postgres_server.url(create_database(postgres_server.admin_dsn()))


@pytest.fixture
def restartable_postgres():
    """A cluster of this test's own, which the test may stop and start (database outages)."""
    from tests.postgres import PostgresServer, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(f"outage tests need a local PostgreSQL they can restart: {reason}")
    server = PostgresServer().init()
    server.start()
    yield server
    server.destroy()


# -- Slurm ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def slurm_cluster():
    """A single-node Slurm cluster for the session (tests/slurm.py), stopped at its end. Skips,
    with the reason, only where slurm-wlm or munge is missing or the tests do not run as root."""
    from tests.slurm import SlurmCluster, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(f"no Slurm cluster for tests: {reason}")
    cluster = SlurmCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
