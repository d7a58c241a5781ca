"""MNIST through the real loading path, on IDX files the tests write, and synthetic data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hpo.data import builtin, load_splits, load_test, mnist, split_indices
from hpo.errors import HpoError
from tests.helpers import copy_of_mnist, write_idx


def test_idx_round_trip(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x", array)
    assert np.array_equal(mnist.read_idx(tmp_path / "x", 3), array)


def test_read_idx_refuses_wrong_rank_and_bad_magic(tmp_path: Path) -> None:
    write_idx(tmp_path / "labels", np.zeros(5, dtype=np.uint8))
    with pytest.raises(HpoError, match="not an MNIST IDX file"):
        mnist.read_idx(tmp_path / "labels", 3)
    (tmp_path / "gz").write_bytes(b"\x1f\x8b\x08\x00" + bytes(100))
    with pytest.raises(HpoError, match="not an MNIST IDX file"):
        mnist.read_idx(tmp_path / "gz", 1)


def test_read_idx_refuses_extra_bytes(tmp_path: Path) -> None:
    write_idx(tmp_path / "x", np.zeros((2, 28, 28), dtype=np.uint8))
    (tmp_path / "x").write_bytes((tmp_path / "x").read_bytes() + b"\x00")
    with pytest.raises(HpoError, match="truncated or corrupt"):
        mnist.read_idx(tmp_path / "x", 3)


def test_mismatched_files_are_refused(tmp_path: Path, mnist_dir: Path) -> None:
    raw = copy_of_mnist(mnist_dir, tmp_path)
    write_idx(raw / "train-labels-idx1-ubyte", np.zeros(7, dtype=np.uint8))
    with pytest.raises(HpoError, match="do not belong together"):
        mnist.prepare(tmp_path)


def test_splits_follow_the_seed_report(mnist_dir: Path) -> None:
    splits = load_splits(builtin("mnist"), mnist_dir, device="cpu")
    # 80/20 of the 5000 generated training images; inputs flattened and scaled to [-1, 1].
    assert splits.train_x.shape == (4000, 784) and splits.val_x.shape == (1000, 784)
    assert splits.train_x.dtype == torch.float32
    assert splits.train_x.min() >= -1 and splits.train_x.max() <= 1
    raw = mnist.read_idx(mnist_dir / "MNIST/raw/train-images-idx3-ubyte", 3)
    train_idx, _ = split_indices(5000, 0.8, mnist.SPLIT_SEED)
    expected = torch.from_numpy(raw[train_idx.numpy()].reshape(4000, -1).astype(np.float32))
    assert torch.allclose(splits.train_x, expected / 127.5 - 1)


def test_split_is_fixed_and_disjoint() -> None:
    a_train, a_val = split_indices(100, 0.8, 0)
    b_train, b_val = split_indices(100, 0.8, 0)
    assert torch.equal(a_train, b_train) and torch.equal(a_val, b_val)
    assert len(set(a_train.tolist()) | set(a_val.tolist())) == 100
    assert not set(a_train.tolist()) & set(a_val.tolist())


def test_test_split_is_separate(mnist_dir: Path) -> None:
    x, y = load_test(builtin("mnist"), mnist_dir, device="cpu")
    assert x.shape == (500, 784) and y.shape == (500,)


def test_synthetic_mnist_has_mnist_shapes_and_sizes() -> None:
    splits = load_splits(builtin("mnist").synthetic, Path("unused"), device="cpu")
    assert splits.train_x.shape == (48_000, 784) and splits.val_x.shape == (12_000, 784)
    x, y = load_test(builtin("mnist").synthetic, Path("unused"), device="cpu")
    assert x.shape == (10_000, 784)
    assert set(torch.unique(splits.train_y).tolist()) == set(range(10))


def test_prepare_offline_without_files(tmp_path: Path) -> None:
    with pytest.raises(HpoError, match="downloads are off"):
        mnist.prepare(tmp_path)
