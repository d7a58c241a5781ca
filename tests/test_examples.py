"""examples/digits_study.py, a user's own study, run as the README shows: copied to a folder
outside the repository and launched by its file name with the real command line, then
evaluated, joined by `hpo worker` and reported on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn", reason="the digits example needs scikit-learn (a dev dependency)")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits_study.py"


def hpo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # Nothing of the repository on the path: hpo comes from the installed package alone.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-m", "hpo", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_digits_study_runs_end_to_end_from_outside_the_repository(tmp_path: Path) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy(EXAMPLE, work / "digits_study.py")
    assert not any(parent == EXAMPLE.parents[1] for parent in work.parents)

    launched = hpo("launch", "digits_study.py", "--trials", "6", "--epochs", "8", "--seed", "1",
                   cwd=work)
    assert launched.returncode == 0, launched.stderr
    assert "Study digits on sqlite:///storage/hpo.db: 6 trial(s) finished" in launched.stdout

    evaluated = hpo("evaluate", "digits", "--device", "cpu", cwd=work)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "on 300 test images" in evaluated.stdout  # the example's own test split
    assert "from its checkpoint model" in evaluated.stdout  # saved through run.report(model=)
    best = json.loads(hpo("best", "digits", "--json", cwd=work).stdout)
    assert best["value"] > 0.9  # a one-layer network learns 8x8 digits in a few epochs

    # A second machine's worker finds the study's own file through the recorded reference.
    joined = hpo("worker", "digits", "--trials", "1", cwd=work)
    assert joined.returncode == 0, joined.stderr
    assert "1 trial(s) finished in this launch" in joined.stdout
    trials = json.loads(hpo("trials", "digits", "--json", cwd=work).stdout)
    assert len(trials) == 7
    assert all(t["state"] in ("COMPLETE", "PRUNED") for t in trials)
    assert all(1 <= t["user_attrs"]["epochs_run"] <= 8 for t in trials)

    # Where the recorded file is gone, the worker says so in one sentence.
    (work / "digits_study.py").rename(work / "moved.py")
    lost = hpo("worker", "digits", "--trials", "1", cwd=work)
    assert lost.returncode == 1
    assert (f"Study 'digits' was launched with the study '{work / 'digits_study.py'}', which "
            "does not resolve on this machine: The study file") in lost.stderr
    assert "Traceback" not in lost.stderr
