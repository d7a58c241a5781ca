"""SVHN (``DATA_DIR/SVHN/{train,test}_32x32.mat``) as uint8 tensors on a device.

Downloads go through torchvision's download code, with its URLs and MD5 checksums. Files are
checksum-verified before use; ``HPO_VERIFY_CHECKSUMS=0`` skips that so that tests can feed
generated files (in the real .mat format) through the same loading path. Resizing and
normalization happen per batch on the device (see :func:`batch_transform`), never per sample.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hpo.data import Splits, download_lock, split_indices
from hpo.data.synthetic import class_conditional_images
from hpo.errors import HpoError, first_line
from hpo.settings import offline, verify_checksums

log = logging.getLogger(__name__)

TRAIN_SIZE, TEST_SIZE = 73_257, 26_032
# As in the seed report: 75% of the (subset of the) train split trains, 25% validates.
TRAIN_FRACTION = 0.75
SPLIT_SEED = 0
SUBSET_SEED = 1
FIX = "delete it and run again to download a fresh copy, or replace it with the original file"


def folder(data_dir: Path) -> Path:
    return Path(data_dir) / "SVHN"


def _sources() -> dict[str, tuple[str, str, str]]:
    """split -> (url, filename, md5), from torchvision so there is one source of truth."""
    from torchvision.datasets import SVHN

    return {split: tuple(SVHN.split_list[split]) for split in ("train", "test")}


def prepare(data_dir: Path, splits: Sequence[str] = ("train", "test")) -> None:
    """Download missing SVHN files and verify their checksums, before any trial starts."""
    sources = _sources()
    for split in splits:
        url, filename, md5 = sources[split]
        path = folder(data_dir) / filename
        if not path.exists():
            where = (f"put {filename} (from {url}) in {folder(data_dir)}, or point "
                     "--data-dir/HPO_DATA_DIR at a folder that has SVHN/, or run with --synthetic")
            if offline():
                raise HpoError(f"SVHN's {filename} is not in {folder(data_dir)} and downloads "
                               f"are off (HPO_OFFLINE): {where}.")
            with download_lock(folder(data_dir)):
                if not path.exists():
                    _download(url, path, md5, where)
        if verify_checksums():
            from torchvision.datasets.utils import calculate_md5, check_integrity

            if not check_integrity(str(path), md5):
                raise HpoError(f"{path} is corrupt or truncated (MD5 {calculate_md5(str(path))}, "
                               f"expected {md5}): {FIX}.")


def _download(url: str, path: Path, md5: str, where: str) -> None:
    from torchvision.datasets.utils import download_url

    log.info("Downloading %s into %s", path.name, path.parent)
    try:
        download_url(url, str(path.parent), path.name, md5)
    except Exception as error:
        path.unlink(missing_ok=True)
        raise HpoError(f"SVHN's {path.name} is not in {path.parent} and could not be "
                       f"downloaded ({first_line(error, limit=200)}): {where}.") from None


def read_mat(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as uint8 (N, 3, 32, 32) and labels 0-9 (SVHN stores the digit 0 as 10)."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path), variable_names=("X", "y"))
        images, labels = mat["X"], mat["y"]
    except Exception as error:  # scipy raises ValueError, OSError, TypeError, KeyError…
        raise HpoError(f"{path} cannot be read as an SVHN .mat file ({first_line(error, limit=120)}):"
                       f" {FIX}.") from None
    if images.ndim != 4 or images.shape[:3] != (32, 32, 3) or images.dtype != np.uint8 \
            or labels.size != images.shape[3]:
        raise HpoError(f"{path} does not hold SVHN's 32x32x3xN uint8 images with one label "
                       f"each (X is {images.shape} {images.dtype}, y has {labels.size}): {FIX}.")
    labels = labels.reshape(-1).astype(np.int64) % 10
    return (torch.from_numpy(np.ascontiguousarray(images.transpose(3, 2, 0, 1))),
            torch.from_numpy(labels))


def subset_indices(n: int, fraction: float) -> torch.Tensor:
    """A deterministic ``fraction`` of ``range(n)``: the same images on every machine."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SUBSET_SEED))
    return order[:max(1, int(round(fraction * n)))]


def _train_images(data_dir: Path, synthetic: bool, subset: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    if synthetic:
        # Generating only the subset keeps smoke runs light; sizes match the real subset.
        n = len(subset_indices(TRAIN_SIZE, subset))
        return class_conditional_images(n, (3, 32, 32), 10, split_seed=0)
    images, labels = read_mat(folder(data_dir) / "train_32x32.mat")
    index = subset_indices(len(images), subset)
    return images[index], labels[index]


def load_splits(data_dir: Path, *, synthetic: bool, device: torch.device | str,
                subset: float = 1.0) -> Splits:
    images, labels = _train_images(data_dir, synthetic, subset)
    train_idx, val_idx = split_indices(len(images), TRAIN_FRACTION, SPLIT_SEED)
    images, labels = images.to(device), labels.to(device)
    train_idx, val_idx = train_idx.to(device), val_idx.to(device)
    return Splits(images[train_idx], labels[train_idx], images[val_idx], labels[val_idx],
                  num_classes=10)


def load_test(data_dir: Path, *, synthetic: bool, device: torch.device | str
              ) -> tuple[torch.Tensor, torch.Tensor]:
    if synthetic:
        images, labels = class_conditional_images(TEST_SIZE, (3, 32, 32), 10, split_seed=1)
    else:
        prepare(data_dir, splits=("test",))
        images, labels = read_mat(folder(data_dir) / "test_32x32.mat")
    return images.to(device), labels.to(device)


def batch_transform(input_size: int, mean: Sequence[float], std: Sequence[float]
                    ) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 (N, 3, 32, 32) on the device -> normalized float (N, 3, S, S), per batch."""
    mean_t = torch.tensor(mean).view(1, 3, 1, 1) * 255
    std_t = torch.tensor(std).view(1, 3, 1, 1) * 255
    cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def transform(images: torch.Tensor) -> torch.Tensor:
        if images.device not in cache:
            cache[images.device] = (mean_t.to(images.device), std_t.to(images.device))
        m, s = cache[images.device]
        # Normalizing before resizing is the same for bilinear resizing, and 49x cheaper at 224.
        x = (images.float() - m) / s
        if input_size != images.shape[-1]:
            x = F.interpolate(x, size=(input_size, input_size), mode="bilinear",
                              align_corners=False)
        return x

    return transform


def fingerprint(data_dir: Path) -> str:
    """Size and modification time of the training file: cheap, and it changes when the file is
    replaced."""
    stat = (folder(data_dir) / "train_32x32.mat").stat()
    return f"train_32x32.mat:{stat.st_size}:{int(stat.st_mtime)}"
