"""Per-backbone cost: seconds per SVHN epoch of each backbone, full fine-tuning and head-only.

For each of lenet5, alexnet, vgg16, resnet18, resnet50 and resnet101
(hpo.train.backbones.build, with a 10-class head), on the same SVHN images, batch 32 (--batch-size):

- full:      model.train(), forward, cross-entropy, backward and a fused Adam step (lr 1e-3) on
             every parameter, as a full fine-tuning trial does in hpo.train.loop.fit;
- head-only: the backbone alone (hpo.train.backbones.feature_extractor), eval mode, no_grad: what
             filling the feature cache costs per image, and what every epoch of a head-only
             trial cost before the cache (training the linear head on cached features is
             negligible next to it, see benchmarks/feature_cache.py).

Each batch includes hpo.data.svhn.batch_transform on the device (normalize + resize from 32 px).
LeNet-5 runs at 32 px; the others at --input-size (default 64 to keep CPU time sane; AlexNet
needs at least 64; pass --input-size 224 to measure the seed's size). After 1 warm-up batch,
3 batches are timed (--batches); images per second is their images over their time, and
seconds per epoch extrapolates that to the training split of a 25% SVHN subset
(73257 * 0.25 * 0.75 = 13735 images; validation not included). On CUDA the batches run with
bf16 autocast and channels_last, on the CPU in fp32, as hpo.train.loop does.

Uses SVHN from --data-dir/SVHN/train_32x32.mat when it is there; otherwise writes a generated
train_32x32.mat in the real format to a temporary folder (tests.helpers.write_svhn). ImageNet
weights are used when they are in the torch hub cache, else random ones: the timings do not
depend on weight values.

    uv run python benchmarks/backbone_cost.py [--data-dir DIR] [--input-size 64]
        [--backbones lenet5 alexnet ...] [--batch-size 32] [--batches 3] [--device cpu]
        [--threads N]
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks._svhn_common import (
    autocast,
    choose_weights,
    device_line,
    locate_svhn,
    make_parser,
    parse_args,
    precision,
    prepare,
    subset,
    timed,
    train_mat,
)
from hpo.data import svhn
from hpo.train import backbones
from hpo.train.loop import make_optimizer

NAMES = ["lenet5", "alexnet", "vgg16", "resnet18", "resnet50", "resnet101"]
SUBSET = 0.25
LR = 1e-3
WARMUP_BATCHES = 1


def epoch_images() -> int:
    """Training images of a 25% SVHN subset, split as hpo splits it (13735)."""
    subset = len(svhn.subset_indices(svhn.TRAIN_SIZE, SUBSET))
    return int(svhn.TRAIN_FRACTION * subset)


def load_images(data_dir: Path, scratch: Path, n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``n`` SVHN training images (uint8) and labels on the CPU, and a line saying which."""
    root, real, source = locate_svhn(data_dir, scratch, n)
    images, labels = svhn.read_mat(train_mat(root))
    if real:  # a generated file holds just the ``n`` images
        index = subset(len(images), n)
        images, labels = images[index], labels[index]
    return images, labels, source


def weights_missing(name: str) -> bool:
    """Whether ImageNet weights exist for ``name`` but are not on disk."""
    return backbones.BACKBONES[name].weights is not None and choose_weights(name)[0] == "none"


def input_size(name: str, requested: int) -> int:
    spec = backbones.BACKBONES[name]
    if name == "lenet5":
        return 32
    return max(requested, spec.min_input_size)


def full_step(model: nn.Module, optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    with autocast(x.device):
        loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def forward_only(extractor: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    with torch.no_grad(), autocast(x.device):
        extractor(x)


def images_per_second(step, batches: list[tuple[torch.Tensor, torch.Tensor]], transform,
                      device: torch.device) -> float:
    """Run ``step`` on the warm-up batches, then time it on the rest."""
    def run(part):
        for x, y in part:
            x = transform(x)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            step(x, y)

    run(batches[:WARMUP_BATCHES])
    _, seconds = timed(lambda: run(batches[WARMUP_BATCHES:]), device)
    return sum(len(x) for x, _ in batches[WARMUP_BATCHES:]) / seconds


def measure(name: str, size: int, batches, device: torch.device) -> dict:
    """Images per second of full fine-tuning and of the frozen backbone's forward pass."""
    weights, _ = choose_weights(name)
    transform = svhn.batch_transform(size, *backbones.mean_std(weights))
    torch.manual_seed(0)
    model = prepare(backbones.build(name, weights=weights), device).train()
    optimizer = make_optimizer(list(model.parameters()), lr=LR, weight_decay=0.0)
    full = images_per_second(functools.partial(full_step, model, optimizer), batches,
                             transform, device)
    parameters = sum(p.numel() for p in model.parameters())
    del optimizer
    extractor = backbones.feature_extractor(model).eval()
    head = images_per_second(functools.partial(forward_only, extractor), batches, transform,
                             device)
    del model, extractor
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"name": name, "size": size, "params": parameters, "full": full, "head": head}


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--input-size", type=int, default=64,
                        help="input size of all but lenet5 (32); 224 is the seed's")
    parser.add_argument("--backbones", nargs="+", default=NAMES, choices=NAMES)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=3, help="timed batches, after 1 warm-up")
    args, device = parse_args(parser)

    n = args.batch_size * (WARMUP_BATCHES + args.batches)
    with tempfile.TemporaryDirectory() as scratch:
        images, labels, source = load_images(args.data_dir, Path(scratch), n)
    images, labels = images.to(device), labels.to(device)
    batches = [(images[i:i + args.batch_size], labels[i:i + args.batch_size])
               for i in range(0, n, args.batch_size)]
    missing = [name for name in args.backbones if weights_missing(name)]
    per_epoch = epoch_images()
    print(f"data: {source}")
    print("weights: " + (f"random init (--weights none) for {', '.join(missing)}: ImageNet "
                         f"weights not in {torch.hub.get_dir()}/checkpoints; timings do not "
                         "depend on weight values" if missing else "ImageNet where it has them")
          + "; lenet5 always trains from scratch")
    print(f"{device_line(device)}, {precision(device)}; batch {args.batch_size}, "
          f"{WARMUP_BATCHES} warm-up + {args.batches} "
          f"timed batches; s/epoch for {per_epoch} training images (25% subset, 75% of it)")
    print()
    print(f"{'backbone':<10} {'input':>5} {'params':>8} | {'full fine-tuning':^22} | "
          f"{'head-only (forward)':^22}")
    print(f"{'':<10} {'px':>5} {'M':>8} | {'images/s':>10} {'s/epoch':>11} | "
          f"{'images/s':>10} {'s/epoch':>11}")
    for name in args.backbones:
        row = measure(name, input_size(name, args.input_size), batches, device)
        print(f"{name:<10} {row['size']:>5} {row['params'] / 1e6:>8.1f} | "
              f"{row['full']:>10.1f} {per_epoch / row['full']:>11.1f} | "
              f"{row['head']:>10.1f} {per_epoch / row['head']:>11.1f}", flush=True)


if __name__ == "__main__":
    main()
