"""Which worker runs where: GPU detection and the worker plan.

Each worker is its own process, pinned to one GPU by ``CUDA_VISIBLE_DEVICES`` in its
environment before CUDA starts, so memory and failures stay per GPU. CPU threads are divided
among the workers so that workers x threads <= cores.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from hpo.errors import HpoError
from hpo.settings import GPU_COUNT_ENV, cpu_count
from hpo.spec import WorkerSlot


def gpu_driver_present() -> bool:
    """Whether this machine has a GPU driver's device files: NVIDIA's (/dev/nvidiactl) or
    AMD ROCm's (/dev/kfd), which torch.cuda also drives. Without either, torch would find no
    GPU, so the launcher need not import torch to learn that."""
    return any(Path(path).exists() for path in ("/dev/nvidiactl", "/dev/kfd"))


def visible_gpus(env: Mapping[str, str] | None = None) -> list[str]:
    """Device ids of the GPUs this process may use, honouring CUDA_VISIBLE_DEVICES.

    HPO_GPU_COUNT overrides detection, for testing plans on machines without GPUs.
    """
    env = os.environ if env is None else env
    if env.get(GPU_COUNT_ENV):
        count = int(env[GPU_COUNT_ENV])
    elif not gpu_driver_present():
        count = 0  # the common CPU-only case, answered without importing torch (seconds)
    else:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        ids = [item.strip() for item in listed.split(",") if item.strip()]
        # CUDA stops at the first invalid entry (e.g. "-1"), and so do we.
        valid = []
        for item in ids:
            if item.startswith("-"):
                break
            valid.append(item)
        return valid[:count]
    return [str(i) for i in range(count)]


def parse_gpus(spec: str) -> str | list[int]:
    """``all``, ``none`` or a comma list of GPU numbers such as ``0,2``."""
    spec = spec.strip().lower()
    if spec in ("all", "none"):
        return spec
    try:
        numbers = [int(item) for item in spec.split(",") if item.strip()]
    except ValueError:
        raise HpoError(f"--gpus {spec!r} is not valid: use all, none, or GPU numbers such "
                       "as 0,2.") from None
    if not numbers or any(n < 0 for n in numbers) or len(set(numbers)) != len(numbers):
        raise HpoError(f"--gpus {spec!r} is not valid: use all, none, or distinct GPU numbers "
                       "such as 0,2.")
    return numbers


def plan_workers(*, gpus: str = "all", workers: int | None = None, workers_per_gpu: int = 1,
                 threads: int | None = None, gpu_ids: list[str] | None = None,
                 cores: int | None = None) -> list[WorkerSlot]:
    """One slot per worker process. ``gpu_ids`` are the visible GPUs (detected if None).

    Each worker gets ``threads`` CPU threads, by default the cores divided among the workers.
    """
    if workers is not None and workers < 1:
        raise HpoError(f"--workers must be at least 1, not {workers}.")
    if workers_per_gpu < 1:
        raise HpoError(f"--workers-per-gpu must be at least 1, not {workers_per_gpu}.")
    if threads is not None and threads < 1:
        raise HpoError(f"--threads must be at least 1, not {threads}.")
    visible = visible_gpus() if gpu_ids is None else gpu_ids
    cores = cores or cpu_count()
    choice = parse_gpus(gpus)
    if choice == "none" or (choice == "all" and not visible):
        selected: list[int] = []
    elif choice == "all":
        selected = list(range(len(visible)))
    else:
        if not visible:
            raise HpoError(f"--gpus {gpus} asks for a GPU, but none is visible here: use "
                           "--gpus none for CPU workers.")
        assert isinstance(choice, list)  # "all" and "none" were handled above
        missing = [n for n in choice if n >= len(visible)]
        if missing:
            have = ", ".join(str(i) for i in range(len(visible)))
            raise HpoError(f"GPU {missing[0]} does not exist: this machine has {len(visible)} "
                           f"visible GPU(s), numbered {have}.")
        selected = choice

    if not selected:
        count = workers or 1
        per_worker = threads or max(1, cores // count)
        return [WorkerSlot(i, "cpu", "", per_worker) for i in range(count)]
    count = workers or len(selected) * workers_per_gpu
    per_worker = threads or max(1, cores // count)
    return [
        WorkerSlot(i, f"cuda:{selected[i % len(selected)]}", visible[selected[i % len(selected)]],
                   per_worker)
        for i in range(count)
    ]
