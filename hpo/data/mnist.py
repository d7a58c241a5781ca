"""MNIST in torchvision's layout (``DATA_DIR/MNIST/raw/*-ubyte``), as tensors on a device.

Downloading goes through torchvision. Reading is a small IDX parser of our own: it checks every
header and size, so a truncated or corrupt file is named with the fix, and it keeps workers from
importing torchvision (several seconds per process) just to read four files.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hpo.data import Splits, download_lock, split_indices
from hpo.errors import HpoError, first_line
from hpo.settings import offline

if TYPE_CHECKING:  # torch is imported where tensors are made: prepare() runs in the launcher
    import torch

log = logging.getLogger(__name__)

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
TRAIN_SIZE, TEST_SIZE = 60_000, 10_000
# As in the seed report: 80% of the 60k training images train, 20% validate.
TRAIN_FRACTION = 0.8
SPLIT_SEED = 0
_IDX_UBYTE = 0x08


def raw_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "MNIST" / "raw"


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read an uncompressed IDX file of unsigned bytes with ``ndim`` dimensions."""
    fix = "delete it and run again to download a fresh copy, or replace it with the original file"
    data = path.read_bytes()
    header_size = 4 + 4 * ndim
    if len(data) < header_size or data[:2] != b"\x00\x00" or data[2] != _IDX_UBYTE \
            or data[3] != ndim:
        raise HpoError(f"{path} is not an MNIST IDX file (bad header): {fix}.")
    dims = struct.unpack(f">{ndim}I", data[4:header_size])
    expected = header_size + int(np.prod(dims))
    if len(data) != expected:
        raise HpoError(
            f"{path} is truncated or corrupt ({len(data)} bytes, its header promises "
            f"{expected}): {fix}."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims)


def _read_split(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    folder = raw_dir(data_dir)
    images = read_idx(folder / FILES[f"{split}_images"], 3)
    if len(images) == 0:
        raise HpoError(f"{folder / FILES[f'{split}_images']} holds no images: replace it with "
                       "the original file (or delete it and run again to download it).")
    labels = read_idx(folder / FILES[f"{split}_labels"], 1)
    if len(images) != len(labels) or images.shape[1:] != (28, 28) or labels.max() > 9:
        raise HpoError(
            f"The MNIST {split} files in {folder} do not belong together ({len(images)} images "
            f"of {images.shape[1:]}, {len(labels)} labels): replace them with the original files."
        )
    return images, labels


def _missing(data_dir: Path) -> list[str]:
    return [name for name in FILES.values() if not (raw_dir(data_dir) / name).exists()]


def prepare(data_dir: Path) -> None:
    """Download MNIST into ``data_dir`` if it is missing, then check all four files."""
    if _missing(data_dir):
        where = (f"put {', '.join(FILES.values())} in {raw_dir(data_dir)} "
                 "(or point --data-dir/HPO_DATA_DIR at a folder that has MNIST/raw), "
                 "or run with --synthetic")
        if offline():
            raise HpoError(f"MNIST is not in {raw_dir(data_dir)} and downloads are off "
                           f"(HPO_OFFLINE): {where}.")
        with download_lock(Path(data_dir)):
            if _missing(data_dir):  # another process may have fetched it meanwhile
                _download(data_dir, where)
    for split in ("train", "test"):
        _read_split(data_dir, split)


def _download(data_dir: Path, where: str) -> None:
    log.info("Downloading MNIST into %s", raw_dir(data_dir))
    try:
        from torchvision.datasets import MNIST

        for train in (True, False):
            MNIST(root=str(data_dir), train=train, download=True)
    except Exception as error:  # no network, DNS failure, HTTP errors, a full disk…
        raise HpoError(f"MNIST is not in {raw_dir(data_dir)} and could not be downloaded "
                       f"({first_line(error, limit=200)}): {where}.") from None


def _to_device(images: np.ndarray | torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Flatten and scale uint8 images to [-1, 1] on the device, as the seed's
    Normalize(0.5, 0.5)."""
    import torch

    pixels = torch.as_tensor(images).to(device).reshape(len(images), -1)
    return pixels.float().div_(127.5).sub_(1.0)


def _load_raw(data_dir: Path, split: str, synthetic: bool) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    from hpo.data.synthetic import class_conditional_images

    if synthetic:
        n = TRAIN_SIZE if split == "train" else TEST_SIZE
        images, labels = class_conditional_images(n, (1, 28, 28), 10,
                                                  split_seed=0 if split == "train" else 1)
        return images.reshape(n, 28, 28), labels
    raw_images, raw_labels = _read_split(data_dir, split)
    return torch.from_numpy(raw_images.copy()), torch.from_numpy(raw_labels.astype(np.int64))


def load_splits(data_dir: Path, *, synthetic: bool, device: torch.device | str) -> Splits:
    images, labels = _load_raw(data_dir, "train", synthetic)
    train_idx, val_idx = split_indices(len(images), TRAIN_FRACTION, SPLIT_SEED)
    x = _to_device(images, device)
    y = labels.to(device)
    train_idx, val_idx = train_idx.to(device), val_idx.to(device)
    return Splits(x[train_idx], y[train_idx], x[val_idx], y[val_idx], num_classes=10)


def load_test(data_dir: Path, *, synthetic: bool, device: torch.device | str
              ) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = _load_raw(data_dir, "test", synthetic)
    return _to_device(images, device), labels.to(device)


def fingerprint(data_dir: Path) -> str:
    """Size and modification time of the training images: cheap, and it changes when the file
    is replaced."""
    stat = (raw_dir(data_dir) / "train-images-idx3-ubyte").stat()
    return f"train-images-idx3-ubyte:{stat.st_size}:{int(stat.st_mtime)}"
