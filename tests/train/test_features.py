"""hpo/train/features.py: frozen-backbone features are computed once per key and served again only
for exactly that key, from memory or from disk after a restart."""

from __future__ import annotations

from pathlib import Path

import torch

from hpo.data import Splits
from hpo.train.features import FeatureCache


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

