"""hpo/train/features.py: frozen-backbone features are computed once per key and served again only
for exactly that key, from memory or from disk after a restart."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

from hpo import registry
from hpo.data import Splits
from hpo.data.svhn import batch_transform
from hpo.train import backbones
from hpo.train.features import FeatureCache, frozen_features
from hpo.train.trial_run import TrialRun
from tests.helpers import make_spec, write_svhn


def fake_splits(n: int = 8, dim: int = 4) -> Splits:
    return Splits(torch.randn(n, dim), torch.zeros(n, dtype=torch.long), torch.randn(2, dim),
                  torch.zeros(2, dtype=torch.long), 10)


def test_feature_cache_hits_same_key_misses_other_and_survives_restart(tmp_path: Path) -> None:
    calls = []

    def compute() -> Splits:
        calls.append(1)
        return fake_splits()

    key = {"backbone": "resnet18", "weights": "w", "input_size": 64, "subset": 0.25}
    cache = FeatureCache(tmp_path)
    first = cache.get(key, compute, torch.device("cpu"))
    assert torch.equal(cache.get(key, compute, torch.device("cpu")).train_x, first.train_x)
    assert len(calls) == 1
    cache.get({**key, "input_size": 96}, compute, torch.device("cpu"))
    cache.get({**key, "subset": 0.5}, compute, torch.device("cpu"))
    assert len(calls) == 3
    restarted = FeatureCache(tmp_path)  # a new worker process: memory is empty, disk is not
    assert torch.equal(restarted.get(key, compute, torch.device("cpu")).train_x, first.train_x)
    assert len(calls) == 3 and restarted.hits == 1


def test_feature_cache_never_serves_a_file_written_for_another_key(tmp_path: Path) -> None:
    key = {"backbone": "resnet18", "input_size": 64}
    cache = FeatureCache(tmp_path)
    cache.get(key, fake_splits, torch.device("cpu"))
    path = cache.path({**key, "format": 1})
    stored = torch.load(path, weights_only=True)
    stored["key"] = stored["key"].replace("64", "96")
    torch.save(stored, path)
    fresh = fake_splits()
    served = FeatureCache(tmp_path).get(key, lambda: fresh, torch.device("cpu"))
    assert served is fresh


# -- frozen_features: what the cache key is made of ---------------------------------------

SVHN_BACKBONE = registry.resolve("svhn-backbone").definition
SEED_MEAN_STD = backbones.SEED_MEAN_STD


@pytest.fixture(scope="module")
def small_svhn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two copies of a tiny SVHN that differ only in one training image: other data."""
    first = write_svhn(tmp_path_factory.mktemp("svhn-a"), n_train=40, n_test=8)
    second = write_svhn(tmp_path_factory.mktemp("svhn-b"), n_train=41, n_test=8)
    return first, second


def same_features(a: Splits, b: Splits) -> bool:
    return all(x.shape == y.shape and torch.equal(x, y)
               for x, y in ((a.train_x, b.train_x), (a.val_x, b.val_x)))


def head_only_features(data_dir: Path, *, input_size: int = 32, subset: float = 1.0) -> Splits:
    """What a head-only svhn-backbone trial asks for: ResNet-18 features of the study's data."""
    spec = make_spec("", "svhn-backbone", data_dir=str(data_dir),
                     options={"subset": subset, "weights": "none"})
    run = TrialRun(optuna.trial.FixedTrial({}), SVHN_BACKBONE, spec)
    transform = batch_transform(input_size, *backbones.mean_std("none"))
    return frozen_features(run, "resnet18", "none", input_size, transform)


@pytest.mark.parametrize("change", ["input size", "normalization", "data", "subset"])
def test_each_part_of_the_key_gets_its_own_cache_entry(
        change: str, small_svhn: tuple[Path, Path], unchecked, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Features computed for other inputs must never be served: changing any one part of the
    key is a miss (a new file), and asking with the same key again is a hit."""
    folder = tmp_path / "features"
    monkeypatch.setenv("HPO_FEATURE_DIR", str(folder))
    data, other_data = small_svhn
    base = head_only_features(data)
    assert len(list(folder.glob("*.pt"))) == 1
    assert head_only_features(data) is base  # the same key: served from memory

    if change == "input size":
        changed = head_only_features(data, input_size=64)
    elif change == "normalization":
        # The same backbone and weights with another mean and std (a release that changes them).
        monkeypatch.setattr(backbones, "SEED_MEAN_STD", ((0.4, 0.4, 0.4), (0.2, 0.2, 0.2)))
        changed = head_only_features(data)
        monkeypatch.setattr(backbones, "SEED_MEAN_STD", SEED_MEAN_STD)
    elif change == "data":
        changed = head_only_features(other_data)
    else:
        changed = head_only_features(data, subset=0.5)
    assert len(list(folder.glob("*.pt"))) == 2, f"another {change} was served cached features"
    assert not same_features(changed, base)

    # The first key again: a hit, from disk in a new worker process too.
    monkeypatch.setattr("hpo.train.features._caches", {})
    again = head_only_features(data)
    assert len(list(folder.glob("*.pt"))) == 2
    assert same_features(again, base)
