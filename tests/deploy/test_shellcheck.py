"""Every shell script that ships passes shellcheck (Debian's; .ci/run installs it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = [
    ROOT / "deploy" / "slurm" / "hpo-worker.sbatch",
    ROOT / "deploy" / "slurm" / "postgres.sbatch",
    ROOT / "deploy" / "pgbouncer" / "entrypoint.sh",
    ROOT / "benchmarks" / "gpu_check.sh",
    ROOT / ".ci" / "run",
]

needs_shellcheck = pytest.mark.skipif(
    shutil.which("shellcheck") is None,
    reason="shellcheck is not installed (apt-get install shellcheck; .ci/run does)")


def shellcheck(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["shellcheck", "--shell=bash", "--severity=style", str(path)],
                          capture_output=True, text=True, timeout=60)


@needs_shellcheck
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_script_passes_shellcheck(script: Path) -> None:
    assert script.exists()
    result = shellcheck(script)
    assert result.returncode == 0, result.stdout


@needs_shellcheck
def test_shellcheck_really_checks(tmp_path: Path) -> None:
    broken = tmp_path / "broken.sh"
    broken.write_text('#!/usr/bin/env bash\nfile=$1\nrm $file\n')  # unquoted: SC2086
    result = shellcheck(broken)
    assert result.returncode != 0 and "SC2086" in result.stdout
