"""Untrusted input: what storage holds (study names, attributes, checkpoint records), storage
URLs with passwords, numbers on the command line, and files that are not what they should be.

Anyone can create studies through optuna-dashboard's unauthenticated API, and a shared database
has many writers, so nothing read from storage may become a path outside its folder or rich
markup. Every refusal is one sentence, a non-zero exit, no traceback and no password.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from typer.testing import CliRunner

from hpo.cli import app
from hpo.spec import MAX_EPOCHS, MAX_SEED, MAX_TRIALS
from tests.helpers import copy_of_mnist, make_spec, run_inline, write_idx

runner = CliRunner()

NASTY_NAMES = ["[bold]x", "[/]", "[/bold]", "x[", "[red]y[/red]", "a\\", "[link=file:///etc]z",
               "\\[/]"]


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env)


def assert_user_error(result, *needles: str, secret: str | None = None) -> None:
    """One clear sentence on stderr, a non-zero exit, no traceback, no password."""
    output = result.stderr + result.stdout
    assert result.exit_code not in (0, None), output
    assert "Traceback" not in output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    for needle in needles:
        assert needle in " ".join(result.stderr.split()), result.stderr
    if secret:
        assert secret not in output


def assert_ok(result) -> None:
    assert result.exit_code == 0, result.stderr + result.stdout
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)


def studies_in(db: Path) -> list[str]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as connection:
        try:
            return [row[0] for row in connection.execute("SELECT study_name FROM studies")]
        except sqlite3.OperationalError:
            return []


def foreign_study(url: str, name: str, *, attr: str | None = None) -> optuna.Study:
    """A study as anyone with the dashboard or the database could write it."""
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    text = attr if attr is not None else name
    for key in ("definition", "dataset", "metric"):
        study.set_user_attr(key, text)
    study.add_trial(optuna.trial.create_trial(
        params={text: 0.5}, distributions={text: FloatDistribution(0.0, 1.0)}, value=0.9,
        user_attrs={"epochs_run": text}))
    return study


# -- study names and attributes never become paths --------------------------------------------


@pytest.mark.parametrize("name", ["../../etc/x", "/abs", "/etc/passwd", "..", ".", "a/b",
                                  "..\\..\\x", "~", "x" * 600, "reports", "\x00nul"])
def test_report_default_folder_stays_one_folder_under_reports(name: str) -> None:
    from hpo.results.report import default_folder

    folder = default_folder(name)
    assert folder.parent == Path("reports")
    assert folder.name not in ("", ".", "..")
    assert "/" not in folder.name and "\\" not in folder.name and "\x00" not in folder.name
    assert len(folder.name) < 100
    assert (Path("/base") / folder).resolve().parent == Path("/base/reports")


@pytest.mark.slow
def test_report_of_a_study_named_like_a_path_writes_under_reports(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    foreign_study(url, "../../escaped", attr="x")
    result = invoke("report", "../../escaped", "--storage", url)
    assert_ok(result)
    written = [Path(line) for line in result.stdout.split()]
    assert written and all(p.resolve().is_relative_to(tmp_path / "reports") for p in written)
    assert not (tmp_path.parent.parent / "escaped").exists()


def _study_with_checkpoint(url: str, artifact_dir: Path) -> optuna.Study:
    import torch

    from hpo.train.checkpoints import CheckpointKeeper

    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    trial = study.ask()
    CheckpointKeeper(study, artifact_dir, keep=3).offer(
        trial, lambda: torch.nn.Linear(2, 2), 0.5)
    study.tell(trial, 0.5)
    return study


def _set_checkpoint_record(study: optuna.Study, number: int, meta: object) -> None:
    from hpo import _optuna
    from hpo.train.checkpoints import CHECKPOINT_PREFIX

    _optuna.storage_of(study).set_study_system_attr(
        _optuna.study_id_of(study), f"{CHECKPOINT_PREFIX}{number}", meta)


@pytest.mark.parametrize("bad_file", ["ABSOLUTE", "../../../escaped.pt", "../escaped.pt"])
def test_checkpoint_file_name_from_storage_never_becomes_a_path(
        tmp_path: Path, bad_file: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from hpo.train.checkpoints import load_checkpoint, saved_checkpoints

    # Temporary folders three levels down, so any escape lands where the test can see it.
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "a" / "b" / "c"))
    artifacts = tmp_path / "artifacts"
    study = _study_with_checkpoint(f"sqlite:///{tmp_path / 'hpo.db'}", artifacts)
    meta = dict(saved_checkpoints(study)[0])
    target = tmp_path / "escaped.pt"
    meta["file"] = str(target) if bad_file == "ABSOLUTE" else bad_file
    _set_checkpoint_record(study, 0, meta)
    before = set(tmp_path.rglob("*"))
    state = load_checkpoint(study, 0, artifacts)
    assert state is not None and set(state) == {"weight", "bias"}
    assert not target.exists()
    assert set(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("artifact_id", ["../victim.txt", "/etc/hostname", "..", "a/../../b",
                                         "", 7, None])
def test_checkpoint_artifact_id_from_storage_is_never_followed(tmp_path: Path,
                                                               artifact_id: object) -> None:
    import torch

    from hpo.train.checkpoints import CheckpointKeeper, load_checkpoint

    artifacts = tmp_path / "artifacts"
    study = _study_with_checkpoint(f"sqlite:///{tmp_path / 'hpo.db'}", artifacts)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    _set_checkpoint_record(study, 0, {"artifact_id": artifact_id, "value": 0.99,
                                      "file": "x.pt"})
    # Reading it back: no checkpoint (train again), never a file outside the store.
    assert load_checkpoint(study, 0, artifacts) is None
    # Evicting it (a worker keeping the best one): nothing outside the store is removed.
    keeper = CheckpointKeeper(study, artifacts, keep=0)
    trial = study.ask()
    keeper.offer(trial, lambda: torch.nn.Linear(2, 2), 1.0)
    assert victim.read_text() == "keep me"


@pytest.mark.parametrize("key_suffix, meta", [("abc", {"artifact_id": "x", "value": 1.0}),
                                              ("1", "not a dict"), ("2", ["a", "b"]),
                                              ("3", {"value": 1.0})])
def test_malformed_checkpoint_records_are_skipped(tmp_path: Path, key_suffix: str,
                                                  meta: object) -> None:
    from hpo import _optuna
    from hpo.train.checkpoints import CHECKPOINT_PREFIX, saved_checkpoints

    study = _study_with_checkpoint(f"sqlite:///{tmp_path / 'hpo.db'}", tmp_path / "artifacts")
    _optuna.storage_of(study).set_study_system_attr(
        _optuna.study_id_of(study), f"{CHECKPOINT_PREFIX}{key_suffix}", meta)
    assert list(saved_checkpoints(study)) == [0]


# -- stored strings are never rich markup ------------------------------------------------------


@pytest.mark.parametrize("name", NASTY_NAMES)
def test_read_commands_print_nasty_names_literally(tmp_path: Path, name: str) -> None:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    foreign_study(url, name)
    foreign_study(url, "plain", attr=name)
    result = invoke("status", "--storage", url)
    assert_ok(result)
    assert name in result.stdout and "plain" in result.stdout
    for args in (["status", name], ["trials", name], ["best", name], ["trials", "plain"],
                 ["best", "plain"], ["export", name]):
        result = invoke(*args, "--storage", url)
        assert_ok(result)
        assert name in result.stdout, (args, result.stdout)


@pytest.mark.parametrize("name", ["[/]", "[bold]x"])
def test_unknown_nasty_name_is_one_sentence(tmp_path: Path, name: str) -> None:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    foreign_study(url, "plain")
    result = invoke("best", name, "--storage", url)
    assert_user_error(result, f"There is no study named '{name}'")


@pytest.mark.parametrize("value", ["[/]", "[bold]tpe"])
def test_dry_run_prints_a_nasty_recorded_spec_literally(tmp_path: Path, value: str) -> None:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    study = optuna.create_study(study_name="mnist-mlp", storage=url, direction="maximize")
    study.set_user_attr("definition", "mnist-mlp")
    study.set_user_attr("launch_spec", {"study": "mnist-mlp", "sampler": value,
                                        "pruner": value, "synthetic": True})
    result = invoke("launch", "mnist-mlp", "--storage", url, "--dry-run")
    assert "Traceback" not in result.stderr + result.stdout
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    if result.exit_code == 0:
        assert f"sampler {value}" in result.stdout
    else:
        assert_user_error(result, value)


def test_progress_panel_shows_a_nasty_study_name_literally() -> None:
    import io

    from rich.console import Console

    from hpo.run.progress import LaunchProgress
    from hpo.spec import WorkerSlot

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200, color_system=None)
    progress = LaunchProgress(console=console, study_name="[/]x[bold]", storage_label="[/]",
                              metric="val_accuracy", maximize=True, budget=2, epochs=1,
                              slots=[WorkerSlot(0, "cpu", "", 1)])
    progress.handle(0, "trial_started", {"trial": 0})
    console.print(progress._render())
    progress._print_line(0, {"trial": 0, "state": "FAIL", "reason": "[/] broke"})
    assert "[/]x[bold]" in out.getvalue() and "[/] broke" in out.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["[/]x", "[bold]y"])
def test_launch_progress_and_summary_print_a_nasty_study_name(sqlite_url: str,
                                                              name: str) -> None:
    result = invoke("launch", "mnist-mlp", "--synthetic", "--trials", "1", "--epochs", "1",
                    "--study-name", name, "--storage", sqlite_url)
    assert_ok(result)
    assert f"Running {name} on" in result.stderr
    assert f"Study {name} on" in result.stdout


# -- passwords ---------------------------------------------------------------------------------


PASSWORD_URLS = [
    ("postgresql+psycopg://me:Zq7@Xv9:Wk3@host:5432/db", "Zq7@Xv9:Wk3",
     "postgresql+psycopg://me:***@host:5432/db"),
    ("postgresql+psycopg://me:s3cret@host:5432/db", "s3cret",
     "postgresql+psycopg://me:***@host:5432/db"),
    ("postgresql+psycopg://me:Zq7%40Xv9%3AWk3@host/db", "Zq7%40Xv9%3AWk3",
     "postgresql+psycopg://me:***@host/db"),
    ("postgresql+psycopg://me:Zq7/Xv9@host/db", "Zq7/Xv9", "postgresql+psycopg://me:***@host/db"),
    ("postgresql://me:Zq7@Xv9@[::1]:5432/db?sslmode=require", "Zq7@Xv9",
     "postgresql://me:***@[::1]:5432/db?sslmode=require"),
]


@pytest.mark.parametrize(("url", "password", "masked"), PASSWORD_URLS)
def test_mask_url_hides_every_part_of_the_password(url: str, password: str,
                                                   masked: str) -> None:
    from hpo.storage.urls import mask_url, scrub

    assert mask_url(url) == masked
    text = f"could not connect to {url}: password '{password}' rejected"
    scrubbed = scrub(text, url)
    for part in {password, *password.replace("%40", "@").replace("%3A", ":")
                 .replace("@", " ").replace(":", " ").replace("/", " ").split()}:
        if len(part) > 1:
            assert part not in scrubbed, scrubbed


@pytest.mark.parametrize("url", ["sqlite:///storage/hpo.db", "sqlite:////tmp/a@b:c/hpo.db",
                                 "postgresql+psycopg://me@host/db", "postgresql://host/db",
                                 "sqlite:///rel:ative@x.db"])
def test_mask_url_leaves_urls_without_password_alone(url: str) -> None:
    from hpo.storage.urls import mask_url

    assert mask_url(url) == url


def test_urls_module_masks_without_importing_sqlalchemy() -> None:
    code = ("import sys\nfrom hpo.storage.urls import mask_url, scrub\n"
            "assert mask_url('postgresql+psycopg://a:b@c/d') == 'postgresql+psycopg://a:***@c/d'\n"
            "assert 'b@' not in scrub('x a:b@c', 'postgresql+psycopg://a:b@c/d')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sqlalchemy'))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(("url", "password", "needle"), [
    ("postgresql+psycopg://me:Zq7@Xv9:Wk3@127.0.0.1:5432/db", "Zq7@Xv9:Wk3", "percent-encode"),
    ("postgresql+psycopg://me:Zq7@Xv9@127.0.0.1:1/db", "Zq7@Xv9", "percent-encode"),
    ("postgresql+psycopg://me:Zq7?Xv9@127.0.0.1:1/db", "Zq7?Xv9", "Cannot reach the database"),
    ("postgresql+psycopg://me:Zq7#Xv9@127.0.0.1:1/db", "Zq7#Xv9", "Cannot reach the database"),
    ("postgresql+psycopg://u:s3cret-pw@host:abc/db", "s3cret-pw", "port 'abc'"),
    ("postgresql+psycopg://u:s3cret-pw@host:99999/db", "s3cret-pw", "port '99999'"),
])
def test_unparsable_storage_url_is_one_sentence_without_the_password(
        url: str, password: str, needle: str) -> None:
    for args in (["launch", "mnist-mlp", "--synthetic", "--trials", "1", "--epochs", "1",
                  "--storage", url], ["status", "--storage", url],
                 ["launch", "mnist-mlp", "--synthetic", "--trials", "1", "--dry-run",
                  "--storage", url]):
        result = invoke(*args)
        output = result.stderr + result.stdout
        for part in {password, *re.split(r"[@:?#]", password)}:
            assert part not in output, (args, output)
        if "--dry-run" not in args:
            assert_user_error(result, needle)
    result = invoke("status", env={"HPO_STORAGE": url})
    assert_user_error(result, needle, secret=password)


def test_watch_line_with_a_password_names_the_environment_variable() -> None:
    from hpo.cli import watch_command

    url = "postgresql+psycopg://me:s3cret@db.example:5432/hpo"
    line = watch_command(url)
    assert "s3cret" not in line and "***" not in line
    assert 'hpo dashboard --storage "$HPO_STORAGE"' in line
    assert "HPO_STORAGE" in line.split('"$HPO_STORAGE"', 1)[1]
    assert watch_command("sqlite:///storage/hpo.db") == "hpo dashboard"
    assert watch_command("sqlite:////tmp/it's here/hpo.db") == \
        "hpo dashboard --storage 'sqlite:////tmp/it'\"'\"'s here/hpo.db'"


@pytest.mark.postgres
@pytest.mark.slow
def test_launch_on_postgres_with_password_prints_a_pasteable_watch_line(
        postgres_url: str) -> None:
    from sqlalchemy.engine import make_url

    password = make_url(postgres_url).password
    result = invoke("launch", "mnist-mlp", "--synthetic", "--trials", "1", "--epochs", "1",
                    "--storage", postgres_url)
    assert_ok(result)
    assert 'Watch it live: hpo dashboard --storage "$HPO_STORAGE"' in result.stderr
    assert 'Browse it with: hpo dashboard --storage "$HPO_STORAGE"' in result.stdout
    assert 'Then: hpo evaluate mnist-mlp --storage "$HPO_STORAGE"' in result.stdout
    assert "***'" not in result.stdout
    if password:
        assert password not in result.stdout + result.stderr


# -- numbers are validated at the edge -------------------------------------------------------


BIG = [str(2**64), str(10**23), str(2**63), str(-(2**63))]

# (command and the arguments it needs, option, lowest, highest)
LAUNCH = ["launch", "mnist-mlp", "--synthetic", "--dry-run"]
WORKER = ["worker", "mnist-mlp", "--dry-run"]
BOUNDS = [
    (LAUNCH, "--trials", 1, MAX_TRIALS),
    (LAUNCH, "--workers", 1, 1024),
    (LAUNCH, "--epochs", 1, MAX_EPOCHS),
    (LAUNCH, "--seed", 0, MAX_SEED),
    (LAUNCH, "--workers-per-gpu", 1, 64),
    (LAUNCH, "--threads", 1, 1024),
    (LAUNCH, "--total", 1, MAX_TRIALS),
    (LAUNCH, "--dashboard-port", 1, 65535),
    (LAUNCH, "--heartbeat-interval", 1, 3600),
    (LAUNCH, "--grace-period", 1, 86400),
    (LAUNCH, "--keep-checkpoints", 0, 1000),
    (WORKER, "--trials", 1, MAX_TRIALS),
    (WORKER, "--workers", 1, 1024),
    (WORKER, "--workers-per-gpu", 1, 64),
    (WORKER, "--threads", 1, 1024),
    (WORKER, "--total", 1, MAX_TRIALS),
    (WORKER, "--heartbeat-interval", 1, 3600),
    (WORKER, "--grace-period", 1, 86400),
    (WORKER, "--keep-checkpoints", 0, 1000),
    (["evaluate", "s"], "--trial", 0, MAX_TRIALS * 100),
    (["trials", "s"], "--top", 1, MAX_TRIALS),
    (["dashboard"], "--port", 1, 65535),
]


def _bound_id(case) -> str:
    return f"{case[0][0]}{case[1]}"


@pytest.mark.parametrize("case", BOUNDS, ids=_bound_id)
def test_numeric_options_beyond_their_bounds_are_refused(case, tmp_path: Path) -> None:
    command, option, low, high = case
    db = tmp_path / "hpo.db"
    for value in [str(low - 1), str(high + 1), *BIG, "1.5", "nan", "abc"]:
        result = invoke(*command, option, value, "--storage", f"sqlite:///{db}",
                        *(["--trials", "1", "--epochs", "1"] if command is LAUNCH
                          and option not in ("--trials", "--epochs") else []))
        assert result.exit_code == 2, (option, value, result.stdout, result.stderr)
        assert option in result.stderr and "Traceback" not in result.stderr
        assert not db.exists()


@pytest.mark.parametrize("case", BOUNDS, ids=_bound_id)
def test_numeric_options_at_their_bounds_are_accepted(case, tmp_path: Path) -> None:
    command, option, low, high = case
    db = tmp_path / "hpo.db"
    for value in (low, high):
        result = invoke(*command, option, str(value), "--storage", f"sqlite:///{db}")
        if command in (LAUNCH, WORKER):
            assert_ok(result)
        else:  # accepted, then refused for the missing database, not for the number
            assert_user_error(result, "There is no hpo database")
        assert not db.exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "1.5", "-0.25", "1e309"])
def test_subset_outside_zero_to_one_is_refused(value: str, tmp_path: Path) -> None:
    db = tmp_path / "hpo.db"
    result = invoke("launch", "svhn-backbone", "--synthetic", "--trials", "1", "--epochs", "1",
                    "--subset", value, "--storage", f"sqlite:///{db}")
    assert_user_error(result, "--subset must be a fraction in (0, 1]")
    assert not db.exists()


@pytest.mark.parametrize("value", ["1", "1e-9", "0.25"])
def test_subset_inside_zero_to_one_is_accepted(value: str, sqlite_url: str) -> None:
    result = invoke("launch", "svhn-backbone", "--synthetic", "--dry-run", "--subset", value,
                    "--storage", sqlite_url)
    assert_ok(result)


def test_dashboard_port_in_use_refuses_before_writing(tmp_path: Path) -> None:
    db = tmp_path / "hpo.db"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke("launch", "mnist-mlp", "--synthetic", "--trials", "1", "--epochs", "1",
                        "--dashboard", "--dashboard-port", str(port),
                        "--storage", f"sqlite:///{db}")
    assert_user_error(result, f"Port {port} on 127.0.0.1 is already in use")
    assert not db.exists()


@pytest.mark.parametrize(("option", "value"), [("--dashboard-port", "0"),
                                               ("--dashboard-port", "65536"),
                                               ("--seed", "-1"), ("--seed", str(2**31)),
                                               ("--seed", str(2**64))])
def test_refused_launch_on_an_existing_database_adds_no_study(sqlite_url: str, tmp_path: Path,
                                                              option: str, value: str) -> None:
    optuna.create_study(study_name="other", storage=sqlite_url)
    result = invoke("launch", "mnist-mlp", "--synthetic", "--trials", "1", "--epochs", "1",
                    "--dashboard", option, value, "--storage", sqlite_url)
    assert result.exit_code == 2 and option in result.stderr
    assert studies_in(tmp_path / "hpo.db") == ["other"]


# -- one sentence instead of a traceback --------------------------------------------------------


@pytest.fixture
def stored(sqlite_url: str) -> str:
    foreign_study(sqlite_url, "s", attr="x")
    return sqlite_url


def test_export_onto_a_directory(stored: str, tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    result = invoke("export", "s", "--storage", stored, "-o", str(tmp_path / "adir"))
    assert_user_error(result, f"--output {tmp_path / 'adir'} is a folder")


def test_export_onto_a_read_only_path(stored: str, tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root writes through file modes; sysfs refuses even root
        target = Path("/sys/hpo-export.csv")
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o500)
        target = folder / "x.csv"
    result = invoke("export", "s", "--storage", stored, "-o", str(target))
    assert_user_error(result, f"Cannot write {target}")
    assert not target.exists()


def test_report_onto_an_existing_file(stored: str, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("mine")
    result = invoke("report", "s", "--storage", stored, "-o", str(tmp_path / "afile"))
    assert_user_error(result, f"The report folder {tmp_path / 'afile'} is a file")
    assert (tmp_path / "afile").read_text() == "mine"


@pytest.mark.parametrize("split", ["train", "t10k"])
def test_mnist_file_with_no_images(tmp_path: Path, mnist_dir: Path, split: str) -> None:
    raw = copy_of_mnist(mnist_dir, tmp_path / "empty")
    write_idx(raw / f"{split}-images-idx3-ubyte", np.zeros((0, 28, 28), dtype=np.uint8))
    write_idx(raw / f"{split}-labels-idx1-ubyte", np.zeros((0,), dtype=np.uint8))
    db = tmp_path / "hpo.db"
    result = invoke("launch", "mnist-mlp", "--trials", "1", "--epochs", "1",
                    "--data-dir", str(tmp_path / "empty"), "--storage", f"sqlite:///{db}")
    assert_user_error(result, f"{raw / (split + '-images-idx3-ubyte')} holds no images")
    assert studies_in(db) == []


@pytest.mark.parametrize("offline", ["1", "0"])
@pytest.mark.parametrize("below", [False, True])
def test_data_dir_that_is_a_file(tmp_path: Path, offline: str, below: bool) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    db = tmp_path / "hpo.db"
    given = afile / "data" if below else afile
    result = invoke("launch", "mnist-mlp", "--trials", "1", "--epochs", "1",
                    "--data-dir", str(given), "--storage", f"sqlite:///{db}",
                    env={"HPO_OFFLINE": offline})
    assert_user_error(result, f"--data-dir {given}", f"{afile} is a file")
    assert studies_in(db) == []


def test_study_name_longer_than_the_column_is_refused_on_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "hpo.db"
    result = invoke("launch", "mnist-mlp", "--synthetic", "--trials", "1", "--epochs", "1",
                    "--study-name", "x" * 513, "--storage", f"sqlite:///{db}")
    assert_user_error(result, "is 513 characters long", "at most 512")
    assert studies_in(db) == []
    result = invoke("launch", "mnist-mlp", "--synthetic", "--dry-run",
                    "--study-name", "é" * 512, "--storage", f"sqlite:///{db}")
    assert_ok(result)


@pytest.mark.postgres
def test_study_name_longer_than_the_column_is_refused_on_postgres(postgres_url: str) -> None:
    from sqlalchemy.engine import make_url

    password = make_url(postgres_url).password
    for command in (["launch", "mnist-mlp", "--synthetic", "--trials", "1", "--epochs", "1"],
                    ["worker", "mnist-mlp", "--trials", "1"]):
        result = invoke(*command, "--study-name", "y" * 600, "--storage", postgres_url)
        assert_user_error(result, "is 600 characters long", "at most 512", secret=password)
    from hpo.storage.engine import open_storage

    assert open_storage(postgres_url).get_all_studies() == []


@pytest.fixture(scope="module")
def evaluated_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study 'hpo launch' made (synthetic MNIST, one trial) with its best checkpoint."""
    folder = tmp_path_factory.mktemp("evaluated")
    run_inline(make_spec(f"sqlite:///{folder / 'hpo.db'}", trials=1, synthetic=True,
                         artifact_dir=str(folder / "artifacts"), keep_checkpoints=1))
    return folder


def _garbage(kind: str, path: Path) -> None:
    import torch

    if kind == "bytes":
        path.write_bytes(os.urandom(4096))
    elif kind == "bytes-indexerror":
        # Random bytes that make torch.load raise IndexError, not UnpicklingError (as about
        # one random file in ten does): the same sentence, no traceback.
        import random

        path.write_bytes(random.Random(2).randbytes(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "zip":
        import zipfile

        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("a/data.pkl", b"garbage")
    elif kind == "not-a-dict":
        torch.save([torch.zeros(2)], path)
    elif kind == "wrong-shapes":
        torch.save({"net.0.weight": torch.zeros(3, 3)}, path)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bytes", "bytes-indexerror", "empty", "zip", "not-a-dict",
                                  "wrong-shapes"])
def test_evaluate_a_garbage_checkpoint(evaluated_study: Path, tmp_path: Path,
                                       kind: str) -> None:
    shutil.copytree(evaluated_study, tmp_path / "copy")
    artifacts = tmp_path / "copy" / "artifacts"
    (checkpoint,) = [p for p in artifacts.iterdir() if p.is_file()]
    _garbage(kind, checkpoint)
    result = invoke("evaluate", "mnist-mlp", "--storage", f"sqlite:///{tmp_path / 'copy/hpo.db'}",
                    "--device", "cpu", env={"HPO_ARTIFACT_DIR": str(artifacts)})
    assert_user_error(result, "The checkpoint of trial 0", "--retrain")


# -- control characters from storage never reach the terminal (issue 18, Part 3) -------------

ESCAPES = "x\x1b[31mRED\x1b]0;title\x07y\r\x1b[2J"


@pytest.fixture
def escaping_study(sqlite_url: str) -> str:
    """A study whose name, attributes and worker record hold terminal escape sequences."""
    study = foreign_study(sqlite_url, ESCAPES)
    study.set_user_attr("worker:a:1", {"host": ESCAPES, "pid": 1, "heartbeat": "x",
                                       "grace_period": 30, "origin": ESCAPES})
    study.set_user_attr("stopped", {"at": ESCAPES, "by": ESCAPES})
    return sqlite_url


@pytest.mark.parametrize("args", [["status"], ["status", ESCAPES], ["best", ESCAPES],
                                  ["trials", ESCAPES], ["status", "nothing-here"]],
                         ids=["status", "status-study", "best", "trials", "unknown"])
def test_escape_sequences_stored_in_a_study_never_reach_the_terminal(
        escaping_study: str, args: list[str], capsys) -> None:
    from hpo import reads

    result = invoke(*args, "--storage", escaping_study)
    output = result.stdout + result.stderr
    assert "\\x1b[31mRED" in output  # shown, escaped
    assert not any(c in output for c in "\x1b\x07\r"), repr(output)
    assert reads.answer([*args, "--storage", escaping_study]) in (0, None)  # the fast path
    fast = capsys.readouterr()
    assert not any(c in fast.out + fast.err for c in "\x1b\x07\r"), repr(fast.out)


# -- corrupt rows, a folder as the database, a malformed IPv6 URL (issue 18, Part 3) --------

CORRUPTIONS = {
    "study-attribute": "UPDATE study_user_attributes SET value_json = '{bad'",
    "trial-attribute": "UPDATE trial_user_attributes SET value_json = '{'",
    "start-time": "UPDATE trials SET datetime_start = 'yesterday'",
    "value": "UPDATE trial_values SET value = 'abc'",
    "distribution": "UPDATE trial_params SET distribution_json = 'nope'",
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
@pytest.mark.parametrize("command", ["status", "best", "trials", "export"])
def test_a_corrupt_row_is_one_sentence(sqlite_url: str, corruption: str, command: str) -> None:
    foreign_study(sqlite_url, "s")
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as db:
        db.execute(CORRUPTIONS[corruption])
    result = invoke(command, "s", "--storage", sqlite_url)
    assert_user_error(result, "Study 's' in sqlite:///", "holds a row that hpo cannot read")


@pytest.mark.parametrize("command", [["status"], ["best", "s"], ["worker", "mnist-mlp"],
                                     ["launch", "mnist-mlp", "--synthetic"]])
def test_a_folder_given_as_the_database_is_one_sentence(tmp_path: Path, command) -> None:
    (tmp_path / "folder.db").mkdir()
    result = invoke(*command, "--storage", f"sqlite:///{tmp_path / 'folder.db'}")
    assert_user_error(result, "is a folder, not a SQLite database file")


@pytest.mark.parametrize("command", [["status"], ["best", "s"], ["trials", "s"]])
def test_a_malformed_ipv6_url_is_one_sentence_without_the_password(command) -> None:
    result = invoke(*command, "--storage", "postgresql://ann:s3cret@[::1/hpo")
    assert_user_error(result, "is malformed", secret="s3cret")


@pytest.mark.parametrize("command", ["status", "best", "trials", "export", "report", "stop",
                                     "evaluate"])
def test_every_unknown_study_sentence_names_the_storage_and_how_to_point_elsewhere(
        command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """issue 18, Part 4: the storage looked in, its password masked, and the way to another."""
    url = "sqlite:///hpo.db"
    foreign_study(url, "there")
    monkeypatch.setenv("HPO_STORAGE", url)
    result = invoke(command, "cancer")
    assert_user_error(result, "'cancer'", url, "point --storage (or HPO_STORAGE)")
