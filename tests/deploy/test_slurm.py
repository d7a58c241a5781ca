"""deploy/slurm: the job-array script runs a real `hpo worker` invocation, and a task that Slurm
gave GPU 3 (CUDA_VISIBLE_DEVICES=3) runs its worker on that GPU."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hpo.cli import app
from hpo.run.devices import plan_workers
from hpo.run.supervisor import _child_environment

ROOT = Path(__file__).resolve().parents[2]
SLURM = ROOT / "deploy" / "slurm"
WORKER_SCRIPT = SLURM / "hpo-worker.sbatch"
BIN = str(Path(sys.executable).parent)  # where uv put the hpo command


def slurm_task_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment Slurm gives an array task that got GPU 3 of its node."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "HPO_"))}
    env.update(PATH=f"{BIN}:{env['PATH']}", HOME=str(tmp_path), CUDA_VISIBLE_DEVICES="3",
               HPO_GPU_COUNT="1",  # this machine has no GPU: stand in for the one Slurm gave
               SLURM_ARRAY_JOB_ID="77", SLURM_ARRAY_TASK_ID="5", SLURM_CPUS_PER_TASK="2",
               HPO_OFFLINE="1")
    env.update(extra)
    return env


def test_the_worker_line_is_a_real_invocation() -> None:
    lines = [line.strip() for line in WORKER_SCRIPT.read_text().splitlines()
             if re.match(r"\s*(exec\s+)?hpo\s", line)]
    assert len(lines) == 1, lines
    words = shlex.split(lines[0])
    command = words[words.index("hpo") + 1:]
    assert command[0] == "worker" and "--total" in command
    help_text = CliRunner().invoke(app, ["worker", "--help"]).stdout
    for flag in (word for word in command if word.startswith("--")):
        assert flag in help_text, f"{flag} is not an option of hpo worker"


def test_array_task_runs_its_worker_on_the_gpu_slurm_gave_it(tmp_path: Path) -> None:
    env = slurm_task_env(tmp_path, HPO_STORAGE=f"sqlite:///{tmp_path / 'hpo.db'}",
                         HPO_STUDY="mnist-mlp", HPO_TOTAL="20")
    result = subprocess.run(["bash", str(WORKER_SCRIPT), "--dry-run"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "task 5 of job 77" in result.stderr and "CUDA_VISIBLE_DEVICES=3" in result.stderr
    plan = [line for line in result.stdout.splitlines() if line.startswith("worker ")]
    # One worker, on the one GPU it sees, pinned to physical GPU 3, with the task's CPUs.
    assert plan == ["worker 0 -> cuda:0, CUDA_VISIBLE_DEVICES=3, 2 thread(s)"]


def test_storage_url_comes_from_a_private_file(tmp_path: Path) -> None:
    url_file = tmp_path / ".hpo" / "storage-url"
    url_file.parent.mkdir()
    url_file.write_text(f"sqlite:///{tmp_path / 'from-file.db'}\n")
    result = subprocess.run(["bash", str(WORKER_SCRIPT), "--dry-run"],
                            env=slurm_task_env(tmp_path), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"storage:  sqlite:///{tmp_path / 'from-file.db'}" in result.stdout.splitlines()


def test_no_storage_is_one_clear_sentence(tmp_path: Path) -> None:
    result = subprocess.run(["bash", str(WORKER_SCRIPT)],
                            env=slurm_task_env(tmp_path, HPO_STORAGE_WAIT="0"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"hpo-worker: set HPO_STORAGE or write the storage URL into "
        f"{tmp_path}/.hpo/storage-url.")


def test_worker_process_starts_with_slurms_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the launcher does with that plan: the worker process it spawns sees GPU 3 only
    (as its cuda:0)."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.setenv("HPO_GPU_COUNT", "1")
    (slot,) = plan_workers()
    assert (slot.device, slot.cuda_visible_devices) == ("cuda:0", "3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")  # a node-wide value must not leak
    with _child_environment(slot):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
