"""Cached features of frozen backbones, so head-only trials after the first cost seconds.

A frozen backbone maps the same images to the same features in every epoch of every trial
that shares it. They are computed once per key — backbone, weights, input size, normalization,
dataset identity, subset and split — and kept in memory and on disk under ``storage/features``.
Each file stores its own key and is only served for exactly that key; files are written
atomically, so a worker that dies mid-write leaves nothing half-written behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hpo.definition import Splits

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
EXTRACT_BATCH_SIZE = 256


def key_digest(key: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


@torch.no_grad()
def extract(extractor: nn.Module, images: torch.Tensor,
            transform: Callable[[torch.Tensor], torch.Tensor], *,
            batch_size: int = EXTRACT_BATCH_SIZE) -> torch.Tensor:
    """Features of ``images`` (uint8 on the device) as float16, batch by batch on the device."""
    extractor.eval()
    device = images.device
    cuda = device.type == "cuda"
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = transform(images[start:start + batch_size])
        if cuda:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            chunks.append(extractor(batch).flatten(1).to(torch.float16))
    return torch.cat(chunks)


_caches: dict[Path, FeatureCache] = {}


def frozen_features(run: Any, backbone: str, weights: str, input_size: int,
                    transform: Callable[[torch.Tensor], torch.Tensor]) -> Splits:
    """Features of ``backbone`` (frozen, eval mode) for this study's train and validation
    splits, from the worker's cache when any trial computed them before."""
    from hpo.settings import resolve_feature_dir
    from hpo.train import backbones

    folder = resolve_feature_dir()
    cache = _caches.setdefault(folder, FeatureCache(folder))
    mean, std = backbones.mean_std(weights)
    key = {
        "backbone": backbone,
        "weights": backbones.BACKBONES[backbone].weights if weights == "imagenet" else "none",
        "input_size": input_size,
        "normalization": [list(mean), list(std)],
        "dataset": run.dataset.name,
        "data": run.data_fingerprint(),
        "subset": run.options.get("subset", 1.0),
        "split": "train/val",
    }

    def compute() -> Splits:
        log.info("Computing %s features at %d px (cached for later trials).", backbone, input_size)
        splits = run.splits()
        extractor = backbones.feature_extractor(backbones.build(backbone, weights=weights))
        extractor.to(run.device)
        if run.device.type == "cuda":
            extractor.to(memory_format=torch.channels_last)
        features = Splits(extract(extractor, splits.train_x, transform), splits.train_y,
                          extract(extractor, splits.val_x, transform), splits.val_y,
                          num_classes=splits.num_classes)
        del extractor
        return features

    return cache.get(key, compute, run.device)


class FeatureCache:
    def __init__(self, folder: str | Path, *, memory_entries: int = 2) -> None:
        self.folder = Path(folder)
        self.memory: OrderedDict[str, Splits] = OrderedDict()
        self.memory_entries = memory_entries
        self.hits = self.misses = 0

    def path(self, key: Mapping[str, Any]) -> Path:
        return self.folder / f"{key_digest(key)}.pt"

    def get(self, key: Mapping[str, Any], compute: Callable[[], Splits],
            device: torch.device) -> Splits:
        """The features for ``key``: from memory, else from disk, else ``compute()``d and
        stored in both."""
        full_key = {**key, "format": FORMAT_VERSION}
        digest = key_digest(full_key)
        if digest in self.memory:
            self.memory.move_to_end(digest)
            self.hits += 1
            return self.memory[digest]
        splits = self._load(full_key, device)
        if splits is None:
            self.misses += 1
            splits = compute()
            self._save(full_key, splits)
        else:
            self.hits += 1
        self.memory[digest] = splits
        while len(self.memory) > self.memory_entries:
            self.memory.popitem(last=False)
        return splits

    def _load(self, key: Mapping[str, Any], device: torch.device) -> Splits | None:
        path = self.path(key)
        if not path.exists():
            return None
        try:
            stored = torch.load(path, map_location=device, weights_only=True)
        except Exception as error:  # truncated or foreign file: recompute
            log.warning("Ignoring unreadable feature cache %s (%s).", path, error)
            return None
        if stored.get("key") != json.dumps(key, sort_keys=True):
            log.warning("Ignoring %s: it holds features for another key.", path)
            return None
        return Splits(stored["train_x"], stored["train_y"], stored["val_x"], stored["val_y"],
                      num_classes=int(stored["num_classes"]))

    def _save(self, key: Mapping[str, Any], splits: Splits) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        payload = {
            "key": json.dumps(key, sort_keys=True),
            "train_x": splits.train_x.cpu(), "train_y": splits.train_y.cpu(),
            "val_x": splits.val_x.cpu(), "val_y": splits.val_y.cpu(),
            "num_classes": splits.num_classes,
        }
        handle, name = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        os.close(handle)
        temporary = Path(name)
        try:
            torch.save(payload, temporary)
            temporary.replace(self.path(key))  # atomic: readers see all or nothing
        finally:
            temporary.unlink(missing_ok=True)
