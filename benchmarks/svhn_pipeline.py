"""Input pipeline: one head-only ResNet-18 epoch at 224 px, hpo's batches against the seed's.

Both paths train the same network the same way on the same SVHN training images (default 512),
on the same machine, in one run: a ResNet-18 whose backbone is frozen and in eval mode
(BatchNorm statistics frozen, as in head-only fine-tuning), a fresh 10-class linear head
(same initialization for both), cross-entropy, Adam lr 1e-3 on the head only, batch 64. Only
the way images reach the network differs:

- (a) hpo:  the uint8 images are one (N, 3, 32, 32) tensor on the device; each epoch draws a
            permutation there and batches are slices of it; hpo.data.svhn.batch_transform
            normalizes and resizes each batch to 224 px on the device (what a head-only trial
            without the feature cache does every epoch);
- (b) seed: a Dataset that does what torchvision.datasets.SVHN.__getitem__ does (a PIL image
            per sample, then Resize((224, 224)), ToTensor, Normalize(0.5, 0.5)) behind a
            DataLoader(batch_size=64, shuffle=True), as in the seed report.

Each path first runs two warm-up training steps, then one timed epoch (training only, no
validation). On CUDA both use bf16 autocast and channels_last, as hpo.train.loop does, so the
model's arithmetic is the same in both and the ratio is the input pipeline's doing; on the CPU
both run in fp32. The input pipeline alone (no model) is timed too, and the two pipelines'
inputs are compared on a few images to show that they feed the network the same thing.

Uses SVHN from --data-dir/SVHN/train_32x32.mat when it is there (torchvision's own SVHN class
for (b) when its MD5 checksum is right); otherwise writes a generated train_32x32.mat in the
real format to a temporary folder (tests.helpers.write_svhn). ImageNet weights are used when
they are in the torch hub cache, else random ones: the timings do not depend on weight values.

    uv run python benchmarks/svhn_pipeline.py [--data-dir DIR] [--images 512] [--device cpu]
        [--threads N]
"""

from __future__ import annotations

import itertools
import math
import tempfile
from pathlib import Path

import numpy as np
import scipy.io
import torch
import torch.nn.functional as F
import torchvision.transforms as transforms
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

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

BACKBONE = "resnet18"
INPUT_SIZE = 224
BATCH_SIZE = 64
LR = 1e-3
WARMUP_BATCHES = 2
SEED_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # the seed's Normalize, used by both paths


# --- Data ------------------------------------------------------------------------------------

class SeedSVHN(Dataset):
    """torchvision.datasets.SVHN without its MD5 check, which refuses generated files: the same
    loading (scipy.io.loadmat, the same transposed view of X) and the same __getitem__."""

    def __init__(self, mat_file: Path, transform) -> None:
        loaded = scipy.io.loadmat(str(mat_file))
        self.data = np.transpose(loaded["X"], (3, 2, 0, 1))
        self.labels = loaded["y"].astype(np.int64).squeeze()
        np.place(self.labels, self.labels == 10, 0)
        self.transform = transform

    def __getitem__(self, index: int):
        img, target = self.data[index], int(self.labels[index])
        img = Image.fromarray(np.transpose(img, (1, 2, 0)))
        return self.transform(img), target

    def __len__(self) -> int:
        return len(self.data)


def seed_dataset(root: Path, real: bool, index: torch.Tensor) -> tuple[Dataset, str]:
    """The seed's dataset over the chosen images: torchvision's SVHN for the genuine file."""
    transform = transforms.Compose([
        transforms.Resize((INPUT_SIZE, INPUT_SIZE)), transforms.ToTensor(),
        transforms.Normalize(*SEED_MEAN_STD),
    ])
    mat_file = train_mat(root)
    from torchvision.datasets import SVHN
    from torchvision.datasets.utils import check_integrity

    if real and check_integrity(str(mat_file), SVHN.split_list["train"][2]):
        dataset = SVHN(str(svhn.folder(root)), split="train", transform=transform)
        which = "torchvision SVHN"
    else:
        dataset, which = SeedSVHN(mat_file, transform), ("torchvision SVHN's loading and "
                                                         "__getitem__ code, without its MD5 check")
    return Subset(dataset, index.tolist()), which


# --- Model -----------------------------------------------------------------------------------

def fresh_head(model: nn.Module) -> nn.Module:
    """Put a new 10-class head on ``model`` (same init every call) and freeze the rest."""
    torch.manual_seed(0)
    backbones.set_head(model, nn.Linear(backbones.head_of(model).in_features, 10))
    backbones.freeze_all_but_head(model)
    return model


def step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
         y: torch.Tensor) -> None:
    if x.device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(x.device):
        loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


# --- The two epochs --------------------------------------------------------------------------

def hpo_batches(images: torch.Tensor, labels: torch.Tensor, transform, generator):
    """hpo's batches: a permutation on the device, slices of it, the transform per batch."""
    order = torch.randperm(len(images), device=images.device, generator=generator)
    for start in range(0, len(images), BATCH_SIZE):
        index = order[start:start + BATCH_SIZE]
        yield transform(images[index]), labels[index]


def seed_batches(loader: DataLoader, device: torch.device):
    for x, y in loader:
        yield x.to(device), y.to(device)


def timed_epoch(model: nn.Module, optimizer, batches, warmup, device: torch.device) -> float:
    """Seconds for one training epoch over ``batches()``, after ``warmup`` steps."""
    for x, y in itertools.islice(warmup(), WARMUP_BATCHES):
        step(model, optimizer, x, y)

    def epoch() -> None:
        for x, y in batches():
            step(model, optimizer, x, y)

    return timed(epoch, device)[1]


def timed_inputs(batches, device: torch.device) -> float:
    """Seconds to produce one epoch of input batches on the device, with no model."""
    def epoch() -> None:
        for _ in batches():
            pass

    return timed(epoch, device)[1]


def input_difference(images: torch.Tensor, transform, dataset: Dataset, n: int = 8) -> float:
    """Largest |hpo input - seed input| over the first ``n`` images (normalized units)."""
    ours = transform(images[:n]).float().cpu()
    theirs = torch.stack([dataset[i][0] for i in range(n)])
    return (ours - theirs).abs().max().item()


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--images", type=int, default=512, help="training images in the epoch")
    args, device = parse_args(parser)

    with tempfile.TemporaryDirectory() as scratch:
        root, real, source = locate_svhn(args.data_dir, Path(scratch), args.images)
        all_images, all_labels = svhn.read_mat(train_mat(root))
        index = subset(len(all_images), args.images)  # the same images for both paths
        images, labels = all_images[index].to(device), all_labels[index].to(device)
        dataset, seed_which = seed_dataset(root, real, index)

        weights, weights_line = choose_weights(BACKBONE)
        model = prepare(backbones.build(BACKBONE, weights=weights), device).eval()  # BN frozen
        transform = svhn.batch_transform(INPUT_SIZE, *SEED_MEAN_STD)
        loader = DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True)
        generator = torch.Generator(device=device).manual_seed(0)

        def ours():
            return hpo_batches(images, labels, transform, generator)

        def theirs():
            return seed_batches(loader, device)

        print(f"data: {source}")
        print(f"model: {weights_line}; head only, backbone frozen in eval mode")
        print(f"{device_line(device)}; {len(images)} training images, batch {BATCH_SIZE}, "
              f"{INPUT_SIZE} px, {precision(device)}; seed path: {seed_which}")
        difference = input_difference(images, transform, dataset)
        print(f"inputs: max |hpo - seed| = {difference:.4f} (normalized units, 8 images; "
              "PIL rounds the resized image to uint8, hpo does not)")

        inputs_hpo = timed_inputs(ours, device)
        inputs_seed = timed_inputs(theirs, device)
        fresh_head(model).to(device)
        hpo_seconds = timed_epoch(model, make_optimizer(list(backbones.head_of(model).parameters()),
                                                   lr=LR, weight_decay=0.0), ours, ours, device)
        fresh_head(model).to(device)
        seed_seconds = timed_epoch(model, torch.optim.Adam(backbones.head_of(model).parameters(),
                                                           lr=LR), theirs, theirs, device)

    batches = math.ceil(len(images) / BATCH_SIZE)
    print(f"input pipeline alone (no model): hpo {inputs_hpo:7.3f} s/epoch, "
          f"seed {inputs_seed:7.3f} s/epoch ({inputs_seed / inputs_hpo:.1f}x)")
    print(f"(a) hpo  (uint8 on {device}, batch_transform per batch): {hpo_seconds:7.2f} s/epoch "
          f"({len(images) / hpo_seconds:6.1f} images/s)")
    print(f"(b) seed (PIL + transforms per image, DataLoader):  {seed_seconds:7.2f} s/epoch "
          f"({len(images) / seed_seconds:6.1f} images/s)")
    print(f"ratio seed / hpo: {seed_seconds / hpo_seconds:.2f}x; one timed epoch of {batches} "
          f"batches each, after {WARMUP_BATCHES} warm-up batches, training only")


if __name__ == "__main__":
    main()
