"""hpo/data/svhn.py: real-format .mat files through the real loader, checksums, the subset,
the per-batch transform on the device, and synthetic data of the subset's size."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState
from typer.testing import CliRunner

from hpo.train import backbones
from hpo.cli import app
from hpo.data import Splits, svhn
from hpo.errors import HpoError
from hpo.train.features import FeatureCache
from hpo import registry
from hpo.train.trial_run import TrialRun
from studies import svhn_backbone
from tests.helpers import make_spec, run_inline, write_svhn


def test_generated_mat_files_go_through_the_real_loader(svhn_dir: Path, unchecked) -> None:
    svhn.prepare(svhn_dir)
    images, labels = svhn.read_mat(svhn_dir / "SVHN" / "train_32x32.mat")
    assert images.shape == (400, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.min() >= 0 and labels.max() <= 9 and (labels == 0).any()  # 10 became 0
    splits = svhn.load_splits(svhn_dir, synthetic=False, device=torch.device("cpu"), subset=1.0)
    assert (len(splits.train_x), len(splits.val_x)) == (300, 100)  # 75/25 as in the seed
    assert splits.train_x.dtype == torch.uint8  # resizing happens per batch, on the device


def test_subset_is_a_deterministic_fraction(svhn_dir: Path) -> None:
    a = svhn.subset_indices(400, 0.25)
    b = svhn.subset_indices(400, 0.25)
    assert len(a) == 100 and torch.equal(a, b)
    assert set(svhn.subset_indices(400, 0.5).tolist()) >= set(a.tolist())


def test_checksums_are_verified_by_default(svhn_dir: Path) -> None:
    with pytest.raises(HpoError, match=r"train_32x32.mat is corrupt or truncated \(MD5"):
        svhn.prepare(svhn_dir)


def test_truncated_file_gets_a_clear_error(tmp_path: Path, svhn_dir: Path, unchecked) -> None:
    folder = tmp_path / "SVHN"
    folder.mkdir()
    data = (svhn_dir / "SVHN" / "train_32x32.mat").read_bytes()
    (folder / "train_32x32.mat").write_bytes(data[: len(data) // 2])
    with pytest.raises(HpoError, match="cannot be read as an SVHN .mat file"):
        svhn.read_mat(folder / "train_32x32.mat")


def test_missing_svhn_offline_says_where_files_go(tmp_path: Path) -> None:
    with pytest.raises(HpoError, match=r"train_32x32.mat is not in .*SVHN and downloads are off"):
        svhn.prepare(tmp_path)


def test_batch_transform_resizes_and_normalizes_on_the_device() -> None:
    images = torch.full((2, 3, 32, 32), 255, dtype=torch.uint8)
    out = svhn.batch_transform(96, (0.5,) * 3, (0.5,) * 3)(images)
    assert out.shape == (2, 3, 96, 96) and torch.allclose(out, torch.ones_like(out))


def test_synthetic_svhn_matches_the_subset_size() -> None:
    splits = svhn.load_splits(Path("unused"), synthetic=True, device=torch.device("cpu"),
                              subset=0.01)
    n = len(svhn.subset_indices(svhn.TRAIN_SIZE, 0.01))
    assert len(splits.train_x) + len(splits.val_x) == n
    assert splits.train_x.shape[1:] == (3, 32, 32)
    assert np.unique(splits.train_y.numpy()).size == 10
