"""hpo/cli.py: every command's help, the study list, and every bad input of the core service
ending in one sentence, a non-zero exit, no traceback and nothing written."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from hpo.cli import app
from hpo.run import launch
from tests.helpers import copy_of_mnist, make_spec, run_inline

runner = CliRunner()

COMMANDS = ["launch", "worker", "studies", "status", "best", "export", "dashboard", "trials",
            "evaluate", "report"]


# Every launch that must be refused gets these, so that a refusal that breaks fails fast
# instead of training until the timeout.
ONE_EPOCH = ("--trials", "1", "--epochs", "1")


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env)


def assert_user_error(result, *needles: str) -> None:
    """One clear sentence on stderr, a non-zero exit, no traceback."""
    assert result.exit_code != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    for needle in needles:
        assert needle in result.stderr, result.stderr


def create_study(spec) -> None:
    """Create the study as a launch does, without training any trial."""
    launch.prepare(launch.Plan.of(spec))


def studies_in(db: Path) -> list[str]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as connection:
        try:
            return [row[0] for row in connection.execute("SELECT study_name FROM studies")]
        except sqlite3.OperationalError:  # no tables at all
            return []


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Usage" in result.stdout


def test_studies_lists_every_definition_and_preset() -> None:
    result = invoke("studies")
    assert result.exit_code == 0
    lines = dict(line.split(maxsplit=1) for line in result.stdout.strip().splitlines())
    assert list(lines) == ["logreg-loss", "mnist-mlp", "mnist-mlp-seed", "svhn-backbone",
                           "svhn-seed"]
    assert lines["mnist-mlp"].endswith("[tpe/leaders, 10 epochs, 50 trials]")
    assert lines["mnist-mlp-seed"].endswith("[grid/none, 5 epochs, 3 trials]")
    assert lines["svhn-seed"].startswith("the seed's comparison: 5 ImageNet backbones")


READ_ONLY = """
import sys
from hpo.cli import app
try:
    app(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
heavy = [name for name in ("torch", "optuna", "sqlalchemy") if name in sys.modules]
print("imported: " + (", ".join(heavy) or "nothing heavy"), file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize("command", [["status"], ["best", "s"], ["trials", "s"],
                                     ["export", "s"], ["status", "s"]])
def test_read_only_commands_import_nothing_heavy(command: list[str], tmp_path: Path) -> None:
    """Reading a study must stay fast (under 1 s): torch alone takes seconds to import, and
    opening a study through Optuna's storage (SQLAlchemy, Alembic) about three."""
    import subprocess
    import sys

    from optuna.distributions import FloatDistribution

    url = f"sqlite:///{tmp_path / 'r.db'}"
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    study.set_user_attr("metric", "val_accuracy")
    study.add_trial(optuna.trial.create_trial(
        params={"lr": 0.1}, distributions={"lr": FloatDistribution(0.01, 1.0)}, value=0.9))
    done = subprocess.run([sys.executable, "-c", READ_ONLY, *command, "--storage", url],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().endswith("imported: nothing heavy"), done.stderr
    assert "0.9" in done.stdout


@pytest.mark.slow
def test_the_launcher_leaves_torch_to_its_workers(mnist_dir: Path, tmp_path: Path) -> None:
    """hpo launch and hpo worker only check the data, plan and supervise: importing torch
    there (seconds) would delay every start, since each worker process imports it again."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'l.db'}"
    common = ["--storage", url, "--data-dir", str(mnist_dir), "--threads", "1"]
    for command in (["launch", "mnist-mlp", "--trials", "1", "--epochs", "1", *common],
                    ["worker", "mnist-mlp", "--trials", "1", *common]):
        done = subprocess.run([sys.executable, "-c", READ_ONLY, *command], capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "1 trial(s) finished" in done.stdout, done.stdout
        assert "torch" not in done.stderr.strip().splitlines()[-1], done.stderr


def test_unknown_study_names_the_known_ones() -> None:
    result = invoke("launch", "mnist-cnn", "--trials", "1", "--epochs", "1")
    assert_user_error(result, "Unknown study 'mnist-cnn': it is no installed study (logreg-loss, "
                              "mnist-mlp, mnist-mlp-seed, svhn-backbone, svhn-seed), file or "
                              "module, and the storage sqlite:///storage/hpo.db holds no study of "
                              "that name (it holds none); point --storage (or HPO_STORAGE) at the "
                              "storage that holds it, or give its file (my_study.py) or module "
                              "(mypkg.studies:NAME).")


@pytest.mark.parametrize("trials", ["0", "-3"])
def test_trials_below_one_is_refused(trials: str) -> None:
    result = invoke("launch", "mnist-mlp", "--trials", trials, "--epochs", "1", "--synthetic")
    assert result.exit_code == 2
    assert "--trials" in result.stderr


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("not a url", "is malformed"),
        ("postgresql+psycopg://me:s3cret-pw@localhost:port/db", "is not a port number"),
        ("foo://somewhere/db", "unknown database 'foo'"),
        ("mysql://me:s3cret-pw@localhost/db", "driver 'MySQLdb'"),
        ("postgresql+psycopg2://me:s3cret-pw@localhost/db", "driver 'psycopg2'"),
        ("postgresql+psycopg://me:s3cret-pw@127.0.0.1:1/db", "Cannot reach the database"),
        ("sqlite://", "in-memory SQLite"),
        ("sqlite:////no/such/folder/hpo.db", "does not exist"),
    ],
)
def test_bad_storage_urls(url: str, needle: str) -> None:
    result = invoke("launch", "mnist-mlp", "--synthetic", "--storage", url, *ONE_EPOCH)
    assert_user_error(result, needle)
    assert "s3cret-pw" not in result.stderr + result.stdout


def test_password_from_environment_is_never_printed(tmp_path: Path) -> None:
    url = "postgresql+psycopg://me:env-secret@127.0.0.1:1/db"
    for args in (["launch", "mnist-mlp", "--synthetic", *ONE_EPOCH], ["status"], ["best", "x"],
                 ["launch", "mnist-mlp", "--synthetic", "--dry-run"]):
        result = invoke(*args, env={"HPO_STORAGE": url})
        assert "env-secret" not in result.stderr + result.stdout
    assert "me:***@127.0.0.1" in result.stdout  # the dry run shows the masked URL


def test_missing_mnist_without_network_says_where_files_go(tmp_path: Path) -> None:
    db = tmp_path / "hpo.db"
    result = invoke("launch", "mnist-mlp", "--storage", f"sqlite:///{db}",
                    "--data-dir", str(tmp_path / "empty"), *ONE_EPOCH)
    assert_user_error(result, "MNIST is not in", str(tmp_path / "empty" / "MNIST" / "raw"),
                      "train-images-idx3-ubyte", "--synthetic")
    assert studies_in(db) == []


def test_truncated_mnist_file_is_named(tmp_path: Path, mnist_dir: Path) -> None:
    broken = tmp_path / "broken"
    raw = copy_of_mnist(mnist_dir, broken)
    images = raw / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])
    db = tmp_path / "hpo.db"
    result = invoke("launch", "mnist-mlp", "--storage", f"sqlite:///{db}",
                    "--data-dir", str(broken), *ONE_EPOCH)
    assert_user_error(result, str(images), "truncated or corrupt", "delete it")
    assert studies_in(db) == []


def test_corrupt_mnist_header_is_named(tmp_path: Path, mnist_dir: Path) -> None:
    broken = tmp_path / "broken"
    raw = copy_of_mnist(mnist_dir, broken)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"<html>not found</html>")
    result = invoke("launch", "mnist-mlp", "--storage", f"sqlite:///{tmp_path / 'hpo.db'}",
                    "--data-dir", str(broken), *ONE_EPOCH)
    assert_user_error(result, "t10k-labels-idx1-ubyte is not an MNIST IDX file")


def test_existing_study_with_other_direction_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    optuna.create_study(study_name="mnist-mlp", storage=url, direction="minimize")
    result = invoke("launch", "mnist-mlp", "--synthetic", "--storage", url, *ONE_EPOCH)
    assert_user_error(result, "direction minimize", "maximize val_accuracy", "--study-name")
    assert len(optuna.load_study(study_name="mnist-mlp", storage=url).trials) == 0


def test_study_made_outside_hpo_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    study = optuna.create_study(study_name="mnist-mlp", storage=url, direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    result = invoke("launch", "mnist-mlp", "--synthetic", "--storage", url, *ONE_EPOCH)
    assert_user_error(result, "created outside hpo")
    assert len(optuna.load_study(study_name="mnist-mlp", storage=url).trials) == 1


def test_incompatible_search_space_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    create_study(make_spec(url, synthetic=True))
    study = optuna.load_study(study_name="mnist-mlp", storage=url)
    study.add_trial(optuna.trial.create_trial(
        params={"momentum": 0.9}, value=0.5,
        distributions={"momentum": optuna.distributions.FloatDistribution(0.0, 1.0)}))
    before = len(study.trials)
    result = invoke("launch", "mnist-mlp", "--synthetic", "--storage", url, *ONE_EPOCH)
    assert_user_error(result, "incompatible search space", "momentum")
    assert len(optuna.load_study(study_name="mnist-mlp", storage=url).trials) == before


def test_synthetic_and_real_trials_never_mix(tmp_path: Path, mnist_dir: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    run_inline(make_spec(url, trials=1, data_dir=str(mnist_dir)))
    result = invoke("launch", "mnist-mlp", "--synthetic", "--storage", url, *ONE_EPOCH)
    assert_user_error(result, "real mnist data", "--synthetic would mix")

    create_study(make_spec(url, study_name="smoke", synthetic=True))
    # Launched again without --synthetic, a study keeps the data its spec records.
    result = invoke("launch", "mnist-mlp", "--study-name", "smoke", "--storage", url,
                    "--data-dir", str(mnist_dir), "--dry-run")
    assert result.exit_code == 0 and "data:     synthetic" in result.stdout


def test_grid_sampler_needs_a_grid_only_where_there_is_none(sqlite_url: str) -> None:
    # Every built-in definition has a grid; --sampler grid plans the grid's size.
    result = invoke("launch", "mnist-mlp-seed", "--synthetic", "--dry-run",
                    "--storage", sqlite_url)
    assert result.exit_code == 0
    assert "budget:   3 trial(s)" in result.stdout


def test_read_commands_on_missing_database_and_study(tmp_path: Path, sqlite_url: str) -> None:
    result = invoke("status", "--storage", f"sqlite:///{tmp_path / 'nothing.db'}")
    assert_user_error(result, "There is no hpo database")
    create_study(make_spec(sqlite_url, synthetic=True))
    for args in (["best", "nope"], ["export", "nope"], ["status", "nope"]):
        result = invoke(*args, "--storage", sqlite_url)
        assert_user_error(result, "no study named 'nope'", "mnist-mlp")


def test_best_without_completed_trial(sqlite_url: str) -> None:
    optuna.create_study(study_name="empty", storage=sqlite_url, direction="maximize")
    result = invoke("best", "empty", "--storage", sqlite_url)
    assert_user_error(result, "has no completed trial yet")


def test_export_to_missing_folder(sqlite_url: str, tmp_path: Path) -> None:
    create_study(make_spec(sqlite_url, synthetic=True))
    result = invoke("export", "mnist-mlp", "--storage", sqlite_url,
                    "--output", str(tmp_path / "nope" / "x.csv"))
    assert_user_error(result, "does not exist")


def test_study_specific_option_on_the_wrong_study() -> None:
    result = invoke("launch", "mnist-mlp", "--synthetic", "--subset", "0.25", *ONE_EPOCH)
    assert_user_error(result, "--subset does not apply to mnist-mlp")


def test_a_worker_command_whose_workers_all_failed_exits_non_zero(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit 0 means "the study is full" to a Kubernetes Job or a Slurm array: a machine whose
    every worker gave up after its restarts must not say so."""
    from hpo.run.supervisor import SuperviseResult

    monkeypatch.setattr(launch, "run", lambda prepared, display=None: SuperviseResult(
        counted=0, interrupted=False, failed_slots=[0]))
    result = invoke("worker", "tests.run.test_supervisor:INSTANT", "--storage", sqlite_url,
                    "--gpus", "none", "--threads", "1")
    assert_user_error(result, "Every worker of this machine failed")
