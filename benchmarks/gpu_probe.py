"""GPU probes for benchmarks/gpu_check.sh: what can only be seen on a CUDA device.

    uv run python benchmarks/gpu_probe.py svhn-trial [--device cuda] [--epochs 2] [--subset 0.25]
    uv run python benchmarks/gpu_probe.py mnist-epoch [--device cuda] [--data-dir DIR]

svhn-trial: a real svhn-backbone trial (ResNet-18, full fine-tuning, 64 px, synthetic SVHN of
the real shapes, random weights: no network needed) run through hpo's own worker on the device,
once with hpo's defaults (bf16 autocast + channels_last) and once in fp32, with hooks on the
first convolution that record what it really received and produced.

mnist-epoch: the MNIST seed pipeline (DataLoader + transforms, batches copied to the device one
by one, as a plain port of the seed would do) against hpo's loop (the split as one tensor on the
device), both on --device, by benchmarks/mnist_epoch.py; the second of two epochs is timed.

Each subcommand prints "key=value" lines that gpu_check.sh puts in its table.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn


def svhn_trial(device: str, epochs: int, subset: float) -> None:
    import optuna

    from hpo.run import launch
    from hpo.run.budget import LocalBudget
    from hpo.run.worker import Worker
    from hpo.spec import WorkerSlot
    from hpo.train import backbones
    from tests.helpers import make_spec

    seen: dict[str, Any] = {}
    build = backbones.build

    def build_and_watch(name: str, **kwargs: Any) -> nn.Module:
        model = build(name, **kwargs)
        conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))

        def before(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0]
            seen["input_channels_last"] = x.is_contiguous(memory_format=torch.channels_last)
            seen["weight_channels_last"] = module.weight.is_contiguous(
                memory_format=torch.channels_last)

        def after(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            seen["conv_output_dtype"] = str(output.dtype).removeprefix("torch.")

        conv.register_forward_pre_hook(before)
        conv.register_forward_hook(after)
        return model

    backbones.build = build_and_watch
    params = {"backbone": "resnet18", "lr": 1e-3, "batch_size": 128, "input_size": 64}
    options = {"subset": subset, "weights": "none"}
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{scratch}/probe.db"
        for label, mixed in (("bf16", True), ("fp32", False)):
            seen.clear()
            name = f"svhn-{label}"
            spec = make_spec(url, "svhn-backbone", study_name=name, synthetic=True,
                             epochs=epochs, options=options, trials=1, data_dir=scratch,
                             mixed_precision=mixed)
            launch.prepare(launch.Plan.of(spec)).study.enqueue_trial(params)
            slot = WorkerSlot(0, "cpu" if device == "cpu" else "cuda:0", "0", 1)
            Worker(spec, launch.Plan.of(spec).definition, slot, budget=LocalBudget(1)).run()
            trial = optuna.load_study(study_name=name, storage=url).trials[0]
            print(f"svhn_{label}_state={trial.state.name}")
            print(f"svhn_{label}_device={trial.user_attrs.get('device')}")
            print(f"svhn_{label}_seconds_per_epoch={trial.user_attrs.get('seconds_per_epoch')}")
            print(f"svhn_{label}_val_accuracy={trial.value}")
            for key, value in seen.items():
                print(f"svhn_{label}_{key}={value}")
            if trial.state.name == "FAIL":
                print(f"svhn_{label}_fail_reason={trial.user_attrs.get('fail_reason')}")


def mnist_epoch(device: str, data_dir: Path | None) -> None:
    from benchmarks.mnist_epoch import both_epochs

    _, (seed_seconds, seed_accuracy), (hpo_seconds, hpo_accuracy) = both_epochs(
        data_dir, torch.device(device))
    print(f"mnist_seed_seconds={seed_seconds:.3f}")
    print(f"mnist_seed_val_accuracy={seed_accuracy:.4f}")
    print(f"mnist_hpo_seconds={hpo_seconds:.3f}")
    print(f"mnist_hpo_val_accuracy={hpo_accuracy:.4f}")
    print(f"mnist_speedup={seed_seconds / hpo_seconds:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe", choices=["svhn-trial", "mnist-epoch"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--subset", type=float, default=0.25, help="svhn-trial: SVHN fraction")
    args = parser.parse_args()
    print(f"device={args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""))
    if args.probe == "svhn-trial":
        svhn_trial(args.device, args.epochs, args.subset)
    else:
        mnist_epoch(args.device, args.data_dir)


if __name__ == "__main__":
    main()
