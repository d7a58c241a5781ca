"""One MNIST epoch of the seed report's network, hpo's loop against the seed's pipeline.

Both train the seed's network (784-256-256-128-128-10, ReLU, Adam lr 1e-3, batch 100) on the
same 48k-image train split, each epoch followed by validation on the same 12k images, on the
same machine, in one run. Each runs two epochs and the second is timed, so neither pays for
first-use warm-up (allocator, kernels) in the figure:

- seed:  torchvision MNIST with ToTensor + Normalize, random_split, a shuffling DataLoader, and
         .item() per validation batch, as in the report;
- hpo:   hpo.train.loop.fit: the split as one tensor on the device, batches by randperm index,
         fused Adam(W), one host sync per epoch.

Uses MNIST from --data-dir when it is there; otherwise writes MNIST-format files of the same
size (class-conditional images) to a temporary folder, so it runs offline.

    uv run python benchmarks/mnist_epoch.py [--data-dir DIR] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torchvision
import torchvision.transforms as transforms
from torch import nn
from torch.utils.data import DataLoader, random_split

from hpo.data import mnist
from hpo.train.loop import fit
from studies.mnist_mlp import build_seed_model


def seed_epoch(root: Path, device: torch.device, epochs: int = 2) -> tuple[float, float]:
    """The report's code, its batches copied to ``device`` one by one as a plain port would;
    returns (seconds of the last epoch, validation accuracy)."""
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    train_dataset = torchvision.datasets.MNIST(root=str(root), train=True, transform=transform)
    train_size = int(0.8 * len(train_dataset))
    train_part, val_part = random_split(train_dataset,
                                        [train_size, len(train_dataset) - train_size],
                                        generator=torch.Generator().manual_seed(0))
    train_loader = DataLoader(dataset=train_part, batch_size=100, shuffle=True)
    val_loader = DataLoader(dataset=val_part, batch_size=100, shuffle=False)
    torch.manual_seed(0)
    model = build_seed_model({}).to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    for _ in range(epochs):
        started = time.perf_counter()
        model.train()
        for images, labels in train_loader:
            images, labels = images.reshape(-1, 28 * 28).to(device), labels.to(device)
            loss = criterion(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for images, labels in val_loader:
                _, predicted = torch.max(model(images.reshape(-1, 28 * 28).to(device)).data, 1)
                total += labels.size(0)
                correct += (predicted.cpu() == labels).sum().item()
        seconds = time.perf_counter() - started
    return seconds, correct / total


def hpo_epoch(root: Path, device: torch.device, epochs: int = 2) -> tuple[float, float]:
    """hpo's loop; returns (seconds of the last epoch, validation accuracy)."""
    splits = mnist.load_splits(root, synthetic=False, device=device)
    torch.manual_seed(0)
    seconds: list[float] = []
    result = fit(build_seed_model({}), splits, epochs=epochs, lr=1e-3, batch_size=100,
                 on_epoch=lambda epoch, accuracy, took: seconds.append(took))
    return seconds[-1], result.val_accuracy


def both_epochs(data_dir: Path | None, device: torch.device
                ) -> tuple[str, tuple[float, float], tuple[float, float]]:
    """(where the data came from, seed's (seconds, accuracy), hpo's (seconds, accuracy)):
    real MNIST from ``data_dir`` where it is there, generated MNIST-format files otherwise."""
    with tempfile.TemporaryDirectory() as scratch:
        root = data_dir
        if root is None or not all((mnist.raw_dir(root) / name).exists()
                                   for name in mnist.FILES.values()):
            from tests.helpers import write_mnist

            root = write_mnist(Path(scratch), n_train=60_000, n_test=10_000)
            source = "generated MNIST-format files (60k train images)"
        else:
            source = f"MNIST from {root}"
        return source, seed_epoch(root, device), hpo_epoch(root, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.device}")
    source, (seed_seconds, seed_acc), (hpo_seconds, hpo_acc) = both_epochs(
        args.data_dir, torch.device(args.device))
    print(f"data: {source}")
    print(f"seed pipeline (DataLoader + transforms): {seed_seconds:6.2f} s/epoch  "
          f"val_accuracy {seed_acc:.4f}")
    print(f"hpo loop (on-device tensors, fused Adam): {hpo_seconds:6.2f} s/epoch  "
          f"val_accuracy {hpo_acc:.4f}")
    print(f"speed-up: {seed_seconds / hpo_seconds:.1f}x (target: at least 10x); "
          "times are the second of two epochs, validation included")


if __name__ == "__main__":
    main()
