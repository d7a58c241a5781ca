"""Worker placement: GPU detection honours CUDA_VISIBLE_DEVICES, plans pin one process per
worker to one GPU, and a plan naming a GPU that does not exist is refused."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from hpo.cli import app
from hpo.errors import HpoError
from hpo.run.devices import plan_workers, visible_gpus
from hpo.settings import cpu_count

runner = CliRunner()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"HPO_GPU_COUNT": "4"}, ["0", "1", "2", "3"]),
        ({"HPO_GPU_COUNT": "2", "CUDA_VISIBLE_DEVICES": "2,3"}, ["2", "3"]),
        ({"HPO_GPU_COUNT": "0", "CUDA_VISIBLE_DEVICES": ""}, []),
        ({"HPO_GPU_COUNT": "1", "CUDA_VISIBLE_DEVICES": "1,-1,0"}, ["1"]),
        ({"HPO_GPU_COUNT": "2", "CUDA_VISIBLE_DEVICES": "GPU-aaa,GPU-bbb"}, ["GPU-aaa", "GPU-bbb"]),
    ],
)
def test_visible_gpus(env: dict[str, str], expected: list[str]) -> None:
    assert visible_gpus(env) == expected


def test_no_gpu_means_cpu_workers_sharing_the_cores() -> None:
    plan = plan_workers(gpus="all", workers=2, gpu_ids=[], cores=2)
    assert [(s.device, s.cuda_visible_devices, s.threads) for s in plan] == [
        ("cpu", "", 1), ("cpu", "", 1)]


def test_one_worker_per_gpu_by_default() -> None:
    plan = plan_workers(gpu_ids=["0", "1", "2", "3"], cores=16)
    assert [s.device for s in plan] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert [s.cuda_visible_devices for s in plan] == ["0", "1", "2", "3"]
    assert all(s.threads == 4 for s in plan)


def test_workers_per_gpu_packs_trials_and_divides_threads() -> None:
    plan = plan_workers(gpus="0,2", workers_per_gpu=2, gpu_ids=["4", "5", "6"], cores=16)
    assert [s.device for s in plan] == ["cuda:0", "cuda:2", "cuda:0", "cuda:2"]
    # hpo's GPU 2 is the third visible one, physical device 6.
    assert [s.cuda_visible_devices for s in plan] == ["4", "6", "4", "6"]
    assert {s.threads for s in plan} == {4}


def test_gpus_none_forces_cpu() -> None:
    plan = plan_workers(gpus="none", gpu_ids=["0"], cores=8)
    assert [(s.device, s.cuda_visible_devices) for s in plan] == [("cpu", "")]


@pytest.mark.parametrize(
    ("gpus", "ids", "message"),
    [
        ("3", ["0", "1"], "GPU 3 does not exist: this machine has 2 visible GPU(s), numbered 0, 1"),
        ("0", [], "none is visible"),
        ("0,x", ["0"], "is not valid"),
        ("1,1", ["0", "1"], "distinct"),
    ],
)
def test_bad_gpu_choices(gpus: str, ids: list[str], message: str) -> None:
    with pytest.raises(HpoError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_workers(gpus=gpus, gpu_ids=ids)


def test_dry_run_prints_the_gpu_plan(sqlite_url: str) -> None:
    env = {"HPO_GPU_COUNT": "2", "HPO_STORAGE": "postgresql+psycopg://u:pw-xyz@db:5432/hpo"}
    result = runner.invoke(app, ["launch", "mnist-mlp", "--dry-run", "--workers-per-gpu", "2",
                                 "--trials", "50"], env=env)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    threads = max(1, cpu_count() // 4)  # the cores divided among 2 GPUs x 2 workers
    assert f"worker 0 -> cuda:0, CUDA_VISIBLE_DEVICES=0, {threads} thread(s)" in lines
    assert f"worker 3 -> cuda:1, CUDA_VISIBLE_DEVICES=1, {threads} thread(s)" in lines
    assert "storage:  postgresql+psycopg://u:***@db:5432/hpo" in lines
    assert "budget:   50 trial(s), 10 epoch(s) each" in lines
    assert "pw-xyz" not in result.stdout + result.stderr


def test_dry_run_refuses_a_missing_gpu() -> None:
    result = runner.invoke(app, ["launch", "mnist-mlp", "--dry-run", "--gpus", "0,5", "--trials",
                                 "1", "--epochs", "1"],
                           env={"HPO_GPU_COUNT": "2"})
    assert result.exit_code == 1
    assert "GPU 5 does not exist" in result.stderr
