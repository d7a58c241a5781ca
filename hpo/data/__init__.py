"""Datasets as tensors on the trial's device.

A dataset is loaded once per worker process and kept on its device as one tensor per split;
trials draw batches from it by index. Nothing here runs per sample.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hpo.errors import HpoError

DATASETS = ("mnist", "svhn")


@dataclass(frozen=True)
class Splits:
    """Train and validation tensors on one device. The test split is kept apart (load_test)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int


def describe(dataset: str, synthetic: bool) -> str:
    return f"{dataset} (synthetic)" if synthetic else dataset


def prepare(dataset: str, data_dir: Path, synthetic: bool) -> None:
    """Make sure the files are present and sound (downloading them if allowed), before any
    trial starts. Raises HpoError naming the file and what to do."""
    if synthetic:
        return
    if dataset == "mnist":
        from hpo.data import mnist

        mnist.prepare(data_dir)
    elif dataset == "svhn":
        from hpo.data import svhn

        svhn.prepare(data_dir)
    else:
        raise HpoError(f"Unknown dataset {dataset!r}: hpo knows {', '.join(DATASETS)}.")


@functools.lru_cache(maxsize=4)
def _load_cached(dataset: str, data_dir: str, synthetic: bool, device: str,
                 options: tuple[tuple[str, Any], ...]) -> Splits:
    opts = dict(options)
    target = torch.device(device)
    if dataset == "mnist":
        from hpo.data import mnist

        return mnist.load_splits(Path(data_dir), synthetic=synthetic, device=target)
    if dataset == "svhn":
        from hpo.data import svhn

        return svhn.load_splits(Path(data_dir), synthetic=synthetic, device=target,
                                subset=opts.get("subset", 1.0))
    raise HpoError(f"Unknown dataset {dataset!r}: hpo knows {', '.join(DATASETS)}.")


def load_splits(dataset: str, data_dir: Path, *, synthetic: bool, device: torch.device | str,
                options: Mapping[str, Any] | None = None) -> Splits:
    """Train/validation splits on ``device``, cached for the life of the worker process."""
    return _load_cached(dataset, str(data_dir), synthetic, str(device),
                        tuple(sorted((options or {}).items())))


def load_test(dataset: str, data_dir: Path, *, synthetic: bool, device: torch.device | str
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out test split. Only ``hpo evaluate`` reads it; no trial ever does."""
    target = torch.device(device)
    if dataset == "mnist":
        from hpo.data import mnist

        return mnist.load_test(data_dir, synthetic=synthetic, device=target)
    if dataset == "svhn":
        from hpo.data import svhn

        return svhn.load_test(data_dir, synthetic=synthetic, device=target)
    raise HpoError(f"Unknown dataset {dataset!r}: hpo knows {', '.join(DATASETS)}.")


def fingerprint(dataset: str, data_dir: Path) -> str:
    """Size and modification time of the dataset's training file(s): cheap, and it changes
    when the files are replaced."""
    if dataset == "mnist":
        files = [Path(data_dir) / "MNIST" / "raw" / "train-images-idx3-ubyte"]
    else:
        files = [Path(data_dir) / "SVHN" / "train_32x32.mat"]
    parts = []
    for file in files:
        stat = file.stat()
        parts.append(f"{file.name}:{stat.st_size}:{int(stat.st_mtime)}")
    return ";".join(parts)


@contextlib.contextmanager
def download_lock(folder: Path) -> Iterator[None]:
    """Serialize downloads into ``folder`` across processes (workers in containers sharing a
    data volume all check for the files at start)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".hpo-download.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def split_indices(n: int, train_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random train/validation split of ``range(n)``; the same on every machine."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_train = int(train_fraction * n)
    return order[:n_train], order[n_train:]
