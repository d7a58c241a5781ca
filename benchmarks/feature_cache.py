"""Feature cache: a 5-epoch head-only ResNet-18 trial with a warm feature cache against none.

Both arms train the same fresh linear head (same initialization, same batch order) with
hpo.train.loop.fit: Adam lr 1e-3, batch 64, 5 epochs, each followed by validation, on the same
SVHN subset (default 512 images, split 75% train / 25% validation as hpo splits a subset), with
the backbone at 224 px (--input-size):

- no cache:   every epoch runs the frozen ResNet-18 (eval mode, BatchNorm statistics frozen)
              over the training and validation images, batch_transform per batch on the
              device, then the head; only the head learns. This is what every head-only trial
              cost before the cache, as in the seed; it runs in hpo's own loop, so that the
              speed-up is the cache's doing and not the loop's;
- warm cache: the features were computed once before timing and stored by
              hpo.train.features.FeatureCache (in a temporary folder); fit trains an nn.Linear
              head on them with transform ``x.float()``, as studies/svhn_backbone.py's train()
              does for finetune == "head".

It also prints the one-off cost of filling the cache (extracting the features and writing the
file) and of loading it from disk into a fresh FeatureCache, which is what a restarted worker
pays once. Timings are wall-clock around the whole fit() call (validation included).

Uses SVHN from --data-dir/SVHN/train_32x32.mat when it is there; otherwise writes a generated
train_32x32.mat in the real format to a temporary folder (tests.helpers.write_svhn). ImageNet
weights are used when they are in the torch hub cache, else random ones: the timings do not
depend on weight values.

    uv run python benchmarks/feature_cache.py [--data-dir DIR] [--images 512]
        [--input-size 224] [--epochs 5] [--device cpu] [--threads N]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from benchmarks._svhn_common import (
    choose_weights,
    device_line,
    locate_svhn,
    make_parser,
    parse_args,
    prepare,
    timed,
    train_mat,
)
from hpo.data import Splits, fingerprint, svhn
from hpo.train import backbones
from hpo.train.features import FeatureCache, extract
from hpo.train.loop import fit

BACKBONE = "resnet18"
BATCH_SIZE = 64
LR = 1e-3


def subset_fraction(root: Path, real: bool, n_images: int) -> float:
    """The subset fraction giving ``n_images`` of the training file (all of a generated one)."""
    if not real:
        return 1.0
    import scipy.io

    # X's shape from the header (32, 32, 3, N), without loading the images
    shapes = {name: shape for name, shape, _ in scipy.io.whosmat(str(train_mat(root)))}
    return n_images / shapes["X"][-1]


class FrozenBackbone(nn.Module):
    """A backbone that stays in eval mode, so BatchNorm keeps its statistics even though
    fit() calls model.train() every epoch; its parameters never learn."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> FrozenBackbone:
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def new_head(in_features: int, device: torch.device) -> nn.Linear:
    torch.manual_seed(0)  # the same head in both arms
    return nn.Linear(in_features, 10).to(device)


def cache_key(root: Path, subset: float, weights: str, input_size: int) -> dict:
    """The key hpo.train.features.frozen_features uses for this trial's features."""
    mean, std = backbones.mean_std(weights)
    return {
        "backbone": BACKBONE,
        "weights": backbones.BACKBONES[BACKBONE].weights if weights == "imagenet" else "none",
        "input_size": input_size,
        "normalization": [list(mean), list(std)],
        "dataset": "svhn",
        "data": fingerprint("svhn", root),
        "subset": subset,
        "split": "train/val",
    }


def train_head(features: Splits, epochs: int, device: torch.device) -> tuple[float, list]:
    """The warm-cache arm: svhn_backbone.train()'s head-only path, from the features on."""
    seconds: list[float] = []
    head = new_head(features.train_x.shape[1], device)
    result = fit(head, features, epochs=epochs, lr=LR, batch_size=BATCH_SIZE,
                 transform=lambda x: x.float(),
                 on_epoch=lambda epoch, accuracy, took: seconds.append(took))
    return result.val_accuracy, seconds


def train_through_backbone(extractor: nn.Module, splits: Splits, transform, epochs: int,
                           device: torch.device) -> tuple[float, list]:
    """The no-cache arm: the frozen backbone runs over every image in every epoch."""
    seconds: list[float] = []
    with torch.no_grad():
        width = extractor(transform(splits.train_x[:1])).flatten(1).shape[1]
    model = nn.Sequential(FrozenBackbone(extractor), nn.Flatten(), new_head(width, device))
    result = fit(model, splits, epochs=epochs, lr=LR, batch_size=BATCH_SIZE, transform=transform,
                 channels_last=True, on_epoch=lambda epoch, accuracy, took: seconds.append(took))
    return result.val_accuracy, seconds


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--images", type=int, default=512,
                        help="subset size, split 75%% train / 25%% validation")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=5)
    args, device = parse_args(parser)

    with tempfile.TemporaryDirectory() as scratch:
        root, real, source = locate_svhn(args.data_dir, Path(scratch) / "data", args.images)
        subset = subset_fraction(root, real, args.images)
        splits = svhn.load_splits(root, synthetic=False, device=device, subset=subset)
        weights, weights_line = choose_weights(BACKBONE)
        transform = svhn.batch_transform(args.input_size, *backbones.mean_std(weights))
        torch.manual_seed(0)
        extractor = backbones.feature_extractor(backbones.build(BACKBONE, weights=weights))
        prepare(extractor, device).eval()
        print(f"data: {source}")
        print(f"model: {weights_line}; head only, backbone frozen in eval mode")
        print(f"{device_line(device)}; {len(splits.train_x)} train + {len(splits.val_x)} "
              f"validation images, {args.input_size} px, batch {BATCH_SIZE}, {args.epochs} epochs")

        def compute() -> Splits:  # what frozen_features computes on a cache miss
            return Splits(extract(extractor, splits.train_x, transform), splits.train_y,
                          extract(extractor, splits.val_x, transform), splits.val_y,
                          num_classes=splits.num_classes)

        def refuse() -> Splits:
            raise RuntimeError("the fresh FeatureCache missed the file the first one wrote")

        key = cache_key(root, subset, weights, args.input_size)
        cache_dir = Path(scratch) / "features"
        features, fill_seconds = timed(lambda: FeatureCache(cache_dir).get(key, compute, device),
                                       device)
        restarted = FeatureCache(cache_dir)  # a new worker process: nothing in memory
        features, load_seconds = timed(lambda: restarted.get(key, refuse, device), device)
        size_mb = sum(p.stat().st_size for p in cache_dir.glob("*.pt")) / 1e6

        (warm_acc, warm_epochs), warm_seconds = timed(
            lambda: train_head(features, args.epochs, device), device)
        (cold_acc, cold_epochs), cold_seconds = timed(
            lambda: train_through_backbone(extractor, splits, transform, args.epochs, device),
            device)

    def epochs_line(seconds: list[float]) -> str:
        return ", ".join(f"{s:.3f}" for s in seconds)

    print(f"fill the cache once (extract {len(splits.train_x) + len(splits.val_x)} images' "
          f"features + write {size_mb:.2f} MB): {fill_seconds:8.2f} s")
    print(f"load it in a fresh FeatureCache (worker restart):        {load_seconds:8.3f} s")
    print(f"no cache:   {args.epochs}-epoch trial {cold_seconds:8.2f} s  (per epoch: "
          f"{epochs_line(cold_epochs)} s)  val_accuracy {cold_acc:.4f}")
    print(f"warm cache: {args.epochs}-epoch trial {warm_seconds:8.3f} s  (per epoch: "
          f"{epochs_line(warm_epochs)} s)  val_accuracy {warm_acc:.4f}")
    print(f"speed-up: {cold_seconds / warm_seconds:.0f}x (target: at least 5x); with the load "
          f"from disk counted: {cold_seconds / (warm_seconds + load_seconds):.0f}x; the first "
          f"trial pays the fill once ({fill_seconds / (cold_seconds / args.epochs):.1f} "
          "no-cache epochs' worth)")


if __name__ == "__main__":
    main()
