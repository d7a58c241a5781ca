"""hpo/reads.py: ``hpo status``, ``best``, ``trials``, ``export`` and ``hpo --help`` answer
before Typer and Rich load, with exactly what the full command line prints, and leave anything
they do not understand to it."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from hpo import reads

HEAVY = ("typer", "rich", "click", "torch", "optuna", "sqlalchemy")


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small study as hpo writes them: a metric, params of two kinds, curves, attributes."""
    url = f"sqlite:///{tmp_path_factory.mktemp('reads') / 'hpo.db'}"
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    study.set_user_attr("metric", "val_accuracy")
    study.set_user_attr("definition", "mnist-mlp")
    space = {"lr": FloatDistribution(1e-4, 1e-1, log=True),
             "shape": CategoricalDistribution(["constant", "funnel"])}
    for number, value in enumerate([0.91, 0.97, None, 0.95]):
        state = optuna.trial.TrialState.COMPLETE if value else optuna.trial.TrialState.PRUNED
        study.add_trial(optuna.trial.create_trial(
            params={"lr": 10 ** -(number + 1), "shape": "funnel"}, distributions=space,
            value=value, state=state, intermediate_values={1: 0.5, 2: value or 0.6},
            user_attrs={"epochs_run": 2}))
    optuna.create_study(study_name="empty", storage=url)
    return url


def run(args: list[str], *, typer: bool, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``hpo args`` as a user's shell starts it, or straight through the Typer app."""
    if typer:
        command = [sys.executable, "-c", "import sys; from hpo.cli import app; "
                   "app(sys.argv[1:], prog_name='python -m hpo')", *args]
    else:
        command = [sys.executable, "-X", "importtime", "-m", "hpo", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=cwd)


def imported(done: subprocess.CompletedProcess[str]) -> set[str]:
    """The top-level packages a run imported, from Python's -X importtime report."""
    return {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


def without_import_times(stderr: str) -> str:
    return "".join(line + "\n" for line in stderr.splitlines()
                   if not line.startswith("import time:"))


@pytest.mark.parametrize("args", [
    ["status"], ["status", "s"], ["best", "s"], ["best", "s", "--json"],
    ["trials", "s", "--top", "2"], ["trials", "--state", "pruned", "s", "--state=complete"],
    ["trials", "s", "--json"], ["export", "s"], ["export", "s", "--format", "json"],
    ["--help"],
], ids=lambda args: " ".join(args))
def test_the_fast_path_prints_what_the_full_cli_prints(args: list[str], url: str,
                                                       tmp_path: Path) -> None:
    full = [*args, "--storage", url] if args != ["--help"] else args
    fast = run(full, typer=False, cwd=tmp_path)
    slow = run(full, typer=True, cwd=tmp_path)
    assert (fast.returncode, fast.stdout) == (slow.returncode, slow.stdout) == (0, slow.stdout)
    assert without_import_times(fast.stderr) == slow.stderr
    assert not imported(fast) & set(HEAVY), sorted(imported(fast) & set(HEAVY))


def test_exporting_to_a_file_says_so_on_stderr(url: str, tmp_path: Path) -> None:
    fast = run(["export", "s", "-o", "t.json", "--storage", url], typer=False, cwd=tmp_path)
    assert fast.returncode == 0 and fast.stdout == ""
    assert without_import_times(fast.stderr) == "Wrote 4 trial(s) of s to t.json.\n"
    assert '"trials"' in (tmp_path / "t.json").read_text()
    assert not imported(fast) & set(HEAVY)


@pytest.mark.parametrize("args", [
    ["best", "nope"],  # an error: the full CLI says it, as it always has
    ["best", "empty"],  # no completed trial
    ["trials", "s", "--top", "0"],  # Typer's own usage error
    ["trials", "s", "--state", "done"],
    ["status", "--help"],
], ids=lambda args: " ".join(args))
def test_what_the_fast_path_does_not_take_ends_as_it_always_has(args: list[str], url: str,
                                                                tmp_path: Path) -> None:
    fast = run([*args, "--storage", url], typer=False, cwd=tmp_path)
    slow = run([*args, "--storage", url], typer=True, cwd=tmp_path)
    assert (fast.returncode, fast.stdout, without_import_times(fast.stderr)) == (
        slow.returncode, slow.stdout, slow.stderr)
    assert fast.returncode != 0 or args[-1] == "--help"


@pytest.mark.parametrize(("args", "taken"), [
    (["status"], {"storage": "sqlite:///storage/hpo.db", "study": None, "as_json": False}),
    (["status", "--storage=sqlite:///x.db", "s", "--json"],
     {"storage": "sqlite:///x.db", "study": "s", "as_json": True}),
    (["best", "s", "--json"], {"storage": "sqlite:///storage/hpo.db", "study": "s",
                               "as_json": True}),
    (["trials", "--top", "5", "s", "--state", "fail", "--state", "pruned"],
     {"storage": "sqlite:///storage/hpo.db", "study": "s", "as_json": False, "top": 5,
      "states": ["fail", "pruned"]}),
    (["export", "s", "-o", "t.csv"], {"storage": "sqlite:///storage/hpo.db", "study": "s",
                                      "format": None, "output": Path("t.csv")}),
    (["best"], None),  # no study: Typer's usage error
    (["best", "a", "b"], None),
    (["best", "s", "--storage"], None),
    (["best", "s", "--storage", "x", "--storage", "y"], None),
    (["status", "--verbose"], None),
    (["trials", "s", "--top", "+5"], None),
    (["trials", "s", "--top", "1000001"], None),
    (["export", "s", "--format", "xml"], None),
    (["export", "s", "-ofile"], None),
    (["status", "--", "s"], None),
])
def test_the_fast_path_takes_only_command_lines_it_fully_understands(
        args: list[str], taken: dict | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    assert reads._parse(args[0], args[1:]) == taken


def test_the_storage_comes_from_the_environment_as_typer_takes_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPO_STORAGE", "sqlite:///env.db")
    assert reads._parse("status", [])["storage"] == "sqlite:///env.db"
    assert reads._parse("status", ["--storage", "sqlite:///f.db"])["storage"] == \
        "sqlite:///f.db"
    monkeypatch.setenv("HPO_STORAGE", "")
    assert reads._parse("status", []) is None


def test_other_commands_and_storage_only_optuna_reads_go_to_the_full_cli() -> None:
    assert reads.answer(["launch", "mnist-mlp"]) is None
    assert reads.answer([]) is None
    # A storage URL the snapshot cannot read: the fast path declines before printing anything.
    assert reads.answer(["status", "--storage", "mysql://h/db"]) is None


def on_a_terminal(command: list[str], cwd: Path) -> bytes:
    """What ``command`` writes to a terminal 100 columns wide."""
    import os
    import pty

    leader, follower = pty.openpty()
    env = {key: value for key, value in os.environ.items()
           if key not in ("COLUMNS", "TERMINAL_WIDTH", "NO_COLOR", "FORCE_COLOR")}
    env.update(TERM="xterm-256color", COLUMNS="100")
    process = subprocess.Popen(command, stdin=follower, stdout=follower, stderr=follower,
                               cwd=cwd, env=env)
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        output += chunk
    process.wait(timeout=60)
    os.close(leader)
    return output


@pytest.mark.parametrize("args", [["--help"], ["status"], ["trials", "s", "--top", "3"]],
                         ids=lambda args: " ".join(args))
def test_on_a_terminal_too_the_fast_path_prints_what_the_full_cli_prints(
        args: list[str], url: str, tmp_path: Path) -> None:
    full = [*args, "--storage", url] if args != ["--help"] else args
    fast = on_a_terminal([sys.executable, "-m", "hpo", *full], tmp_path)
    slow = on_a_terminal([sys.executable, "-c", "import sys; from hpo.cli import app; "
                          "app(sys.argv[1:], prog_name='python -m hpo')", *full], tmp_path)
    assert fast == slow
    assert b"\x1b[1m" in fast  # styled, as on any terminal


def _strict_json(text: str) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_json_output_is_valid_json_with_infinite_and_nan_values(tmp_path: Path) -> None:
    """JSON has no NaN or infinity: every --json output and the JSON export write null for
    them (as the README says), where Python's json module would write NaN and Infinity."""
    url = f"sqlite:///{tmp_path / 'nan.db'}"
    study = optuna.create_study(study_name="odd", storage=url, direction="maximize")
    study.add_trial(optuna.trial.create_trial(
        params={"lr": 0.1}, distributions={"lr": FloatDistribution(0.01, 1.0)},
        value=float("inf"), user_attrs={"loss": float("nan"), "spread": float("-inf")}))
    study.set_user_attr("limit", float("inf"))
    outputs = []
    for command in (lambda: reads.best(url, "odd", as_json=True),
                    lambda: reads.trials(url, "odd", as_json=True),
                    lambda: reads.status(url, "odd", as_json=True),
                    lambda: reads.export(url, "odd", format="json")):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            command()
        outputs.append(_strict_json(buffer.getvalue()))
    best, listed, _status, exported = outputs
    assert best["value"] is None and best["params"] == {"lr": 0.1}
    assert listed[0]["user_attrs"] == {"loss": None, "spread": None}
    assert exported["user_attrs"] == {"limit": None}
    assert exported["trials"][0]["user_attrs"] == {"loss": None, "spread": None}


def _as_another_user(command) -> tuple[int, str]:
    """Run ``command`` in a child process that, where the tests run as root (who ignores file
    permissions), becomes the unprivileged user nobody. Returns its exit status and output."""
    import os

    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what it needs is imported already
        os.close(reader)
        code = 0
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            sys.stdout = os.fdopen(writer, "w")
            command()
        except BaseException as error:
            print(f"{type(error).__name__}: {error}")
            code = 1
        sys.stdout.flush()
        os._exit(code)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        output = pipe.read()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), output


def test_read_commands_read_a_database_on_a_read_only_mount() -> None:
    """A folder and file nobody may write (a read-only mount): SQLite cannot create the
    write-ahead log's shared-memory file beside the database, and every read command must
    still read it."""
    import shutil
    import tempfile

    from hpo.results import summary  # noqa: F401 - imported before the child drops privileges
    from hpo.storage.engine import open_storage

    folder = Path(tempfile.mkdtemp(prefix="hpo-ro-"))
    try:
        url = f"sqlite:///{folder / 'hpo.db'}"
        storage = open_storage(url)
        study = optuna.create_study(study_name="ro", storage=storage, direction="maximize")
        study.add_trial(optuna.trial.create_trial(
            params={"lr": 0.1}, distributions={"lr": FloatDistribution(0.01, 1.0)}, value=0.5))
        storage.rdb.engine.dispose()  # the last connection closes: no -wal or -shm is left
        (folder / "hpo.db").chmod(0o444)
        folder.chmod(0o555)
        for command in (lambda: reads.status(url, None), lambda: reads.best(url, "ro"),
                        lambda: reads.trials(url, "ro"),
                        lambda: reads.export(url, "ro", format="json")):
            code, output = _as_another_user(command)
            assert code == 0, output
            assert "ro" in output and "Error" not in output
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)
