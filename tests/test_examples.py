"""hpo installed as the README's Quick start installs it (`uv tool install .`), and
examples/digits_study.py, a user's own study, run as the README shows: copied to a folder
outside the repository and launched by its file name with the installed `hpo` command, then
evaluated, joined by `hpo worker` and reported on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("sklearn", reason="the digits example needs scikit-learn (a dev dependency)")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "digits_study.py"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `hpo` command of `uv tool install .`, with scikit-learn for the example, in a tool
    folder of its own. The locked versions are the constraints, so uv takes them from its
    cache, as `uv run` installed them, instead of downloading the newest."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed: the README installs hpo with it (pip install uv)")
    tools = tmp_path_factory.mktemp("uv-tools")
    env = {**os.environ, "UV_TOOL_DIR": str(tools / "tools"),
           "UV_TOOL_BIN_DIR": str(tools / "bin")}
    env.pop("VIRTUAL_ENV", None)
    locked = subprocess.run([uv, "export", "--locked", "--no-hashes", "--no-emit-project",
                             "--format", "requirements-txt", "-o", str(tools / "locked.txt")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert locked.returncode == 0, locked.stderr
    done = subprocess.run([uv, "tool", "install", str(ROOT), "--with", "scikit-learn",
                           "--constraints", str(tools / "locked.txt")], cwd=tools, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return tools / "bin" / "hpo"


def hpo(*args: str, cwd: Path, command: Path) -> subprocess.CompletedProcess[str]:
    # Nothing of the repository on the path: hpo comes from the installed package alone.
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(command), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_the_installed_command_works_from_any_folder(installed: Path, tmp_path: Path) -> None:
    python = installed.resolve().parent / "python"
    where = subprocess.run([str(python), "-c", "import hpo, studies; print(hpo.__file__); "
                            "print(studies.__file__)"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60)
    assert where.returncode == 0, where.stderr
    assert all(ROOT not in Path(line).parents for line in where.stdout.split()), where.stdout
    assert hpo("--help", cwd=tmp_path, command=installed).stdout.strip().startswith(
        "Usage: hpo [OPTIONS] COMMAND [ARGS]...")
    listed = hpo("studies", cwd=tmp_path, command=installed)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [
        "logreg-loss", "mnist-mlp", "mnist-mlp-seed", "svhn-backbone", "svhn-seed"]


@pytest.mark.slow
def test_digits_study_runs_end_to_end_from_outside_the_repository(installed: Path,
                                                                  tmp_path: Path) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy(EXAMPLE, work / "digits_study.py")
    assert not any(parent == EXAMPLE.parents[1] for parent in work.parents)

    launched = hpo("launch", "digits_study.py", "--trials", "6", "--epochs", "8", "--seed", "1",
                   cwd=work, command=installed)
    assert launched.returncode == 0, launched.stderr
    assert "Study digits on sqlite:///storage/hpo.db: 6 trial(s) finished" in launched.stdout

    evaluated = hpo("evaluate", "digits", "--device", "cpu", cwd=work, command=installed)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "on 300 test images" in evaluated.stdout  # the example's own test split
    assert "from its checkpoint model" in evaluated.stdout  # saved through run.report(model=)
    best = json.loads(hpo("best", "digits", "--json", cwd=work, command=installed).stdout)
    assert best["value"] > 0.9  # a one-layer network learns 8x8 digits in a few epochs

    # A second machine's worker finds the study's own file through the recorded reference.
    joined = hpo("worker", "digits", "--trials", "1", cwd=work, command=installed)
    assert joined.returncode == 0, joined.stderr
    assert "1 trial(s) finished in this launch" in joined.stdout
    trials = json.loads(hpo("trials", "digits", "--json", cwd=work, command=installed).stdout)
    assert len(trials) == 7
    assert all(t["state"] in ("COMPLETE", "PRUNED") for t in trials)
    assert all(1 <= t["user_attrs"]["epochs_run"] <= 8 for t in trials)

    # Where the recorded file is gone, the worker says so in one sentence.
    (work / "digits_study.py").rename(work / "moved.py")
    lost = hpo("worker", "digits", "--trials", "1", cwd=work, command=installed)
    assert lost.returncode == 1
    assert (f"Study 'digits' was launched with the study '{work / 'digits_study.py'}', which "
            "does not resolve on this machine: The study file") in lost.stderr
    assert "Traceback" not in lost.stderr
