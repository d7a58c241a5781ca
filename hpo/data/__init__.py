"""Datasets as tensors on the trial's device.

A dataset (:class:`hpo.Dataset`) is loaded once per worker process and kept on its device as one
tensor per split; trials draw batches from it by index. Nothing here runs per sample. hpo's
built-in datasets, MNIST and SVHN, are :class:`~hpo.Dataset` objects like any study's own.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.definition import Dataset, Splits, StudyDefinition
from hpo.errors import HpoError

if TYPE_CHECKING:
    import torch

# torch is imported where tensors are made, not here: the launcher checks the data files through
# this module, and it never trains, so it need not pay torch's seconds-long import.
CPU = "cpu"


def _mnist() -> Dataset:
    from hpo.data import mnist

    def real(synthetic: bool) -> Dataset:
        return Dataset(
            name="mnist (synthetic)" if synthetic else "mnist",
            load_splits=lambda d, o: mnist.load_splits(d, synthetic=synthetic, device=CPU),
            load_test=lambda d, o: mnist.load_test(d, synthetic=synthetic, device=CPU),
            prepare=None if synthetic else mnist.prepare,
            fingerprint=None if synthetic else mnist.fingerprint,
        )

    return Dataset(**{**real(False).__dict__, "synthetic": real(True)})


def _svhn() -> Dataset:
    from hpo.data import svhn

    def real(synthetic: bool) -> Dataset:
        return Dataset(
            name="svhn (synthetic)" if synthetic else "svhn",
            load_splits=lambda d, o: svhn.load_splits(d, synthetic=synthetic, device=CPU,
                                                      subset=o.get("subset", 1.0)),
            load_test=lambda d, o: svhn.load_test(d, synthetic=synthetic, device=CPU),
            prepare=None if synthetic else svhn.prepare,
            fingerprint=None if synthetic else svhn.fingerprint,
        )

    return Dataset(**{**real(False).__dict__, "synthetic": real(True)})


_BUILTIN = {"mnist": _mnist, "svhn": _svhn}


@functools.cache
def builtin(name: str) -> Dataset:
    if name not in _BUILTIN:
        raise HpoError(f"Unknown dataset {name!r}: hpo's built-in datasets are "
                       f"{', '.join(_BUILTIN)}; pass a hpo.Dataset for any other.")
    return _BUILTIN[name]()


def dataset_of(definition: StudyDefinition, *, synthetic: bool = False) -> Dataset:
    """The definition's dataset (its generated stand-in with ``synthetic``)."""
    dataset = definition.dataset
    real = builtin(dataset) if isinstance(dataset, str) else dataset
    if not synthetic:
        return real
    if real.synthetic is None:
        raise HpoError(f"The dataset {real.name} of {definition.name} has no synthetic "
                       "stand-in: drop --synthetic.")
    return real.synthetic


def prepare(dataset: Dataset, data_dir: Path) -> None:
    """Make sure the files are present and sound (downloading them if allowed), before any
    trial starts. Raises HpoError naming the file and what to do."""
    if dataset.prepare is not None:
        _check_folder(Path(data_dir))
        dataset.prepare(Path(data_dir))


def _check_folder(data_dir: Path) -> None:
    """HpoError if ``data_dir`` or the nearest of its parents that exists is not a folder."""
    existing = next((p for p in (data_dir, *data_dir.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise HpoError(f"--data-dir {data_dir} cannot be a folder because {existing} is a file: "
                       "point --data-dir (or HPO_DATA_DIR) at a folder.")


def fingerprint(dataset: Dataset, data_dir: Path) -> str:
    """Identifies the data a dataset's splits come from, for caches keyed on it."""
    if dataset.fingerprint is None:
        return dataset.name
    return f"{dataset.name}:{dataset.fingerprint(Path(data_dir))}"


@functools.lru_cache(maxsize=4)
def _load_cached(dataset: Dataset, data_dir: str, device: str,
                 options: tuple[tuple[str, Any], ...]) -> Splits:
    splits = dataset.load_splits(Path(data_dir), dict(options))
    if not isinstance(splits, Splits):
        raise HpoError(f"The load_splits of dataset {dataset.name} returned a "
                       f"{type(splits).__name__}, not a hpo.Splits: return "
                       "Splits(train_x, train_y, val_x, val_y, num_classes).")
    import torch

    target = torch.device(device)
    return Splits(splits.train_x.to(target), splits.train_y.to(target),
                  splits.val_x.to(target), splits.val_y.to(target),
                  num_classes=int(splits.num_classes))


def load_splits(dataset: Dataset, data_dir: Path, *, device: torch.device | str,
                options: Mapping[str, Any] | None = None) -> Splits:
    """Train/validation splits on ``device``, cached for the life of the worker process."""
    return _load_cached(dataset, str(data_dir), str(device),
                        tuple(sorted((options or {}).items())))


def load_test(dataset: Dataset, data_dir: Path, *, device: torch.device | str,
              options: Mapping[str, Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out test split. Only ``hpo evaluate`` reads it; no trial ever does."""
    x, y = dataset.load_test(Path(data_dir), dict(options or {}))
    return x.to(device), y.to(device)


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
    import torch

    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_train = int(train_fraction * n)
    return order[:n_train], order[n_train:]
