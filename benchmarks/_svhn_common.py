"""The SVHN benchmarks' shared set-up: their command-line options, where the SVHN images come
from (the real file or a generated one), which weights to use, and device helpers (autocast,
synchronization, timing) for benchmarks/svhn_pipeline.py, feature_cache.py and backbone_cost.py.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from pathlib import Path

import torch
from torch import nn

from hpo.data import svhn
from hpo.train import backbones

# --- Command line ----------------------------------------------------------------------------

def make_parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by ``doc``'s first line, with --data-dir; add the script's own
    options, then call parse_args()."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    return parser


def parse_args(parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, torch.device]:
    """Add --device and --threads (last), parse, apply --threads; (arguments, device)."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args, torch.device(args.device)


# --- Data ------------------------------------------------------------------------------------

def locate_svhn(data_dir: Path, scratch: Path, n_images: int) -> tuple[Path, bool, str]:
    """(data dir holding SVHN/train_32x32.mat, whether it is real SVHN, a line saying which).
    Without the real file, writes a generated one with ``n_images`` images under ``scratch``."""
    real = train_mat(data_dir)
    if real.exists():
        return data_dir, True, f"SVHN from {real}"
    from tests.helpers import write_svhn

    root = write_svhn(scratch, n_train=n_images, n_test=10)
    return (root, False, f"generated SVHN-format train_32x32.mat ({n_images} class-conditional "
                         f"images) in a temporary folder; no {real}")


def train_mat(data_dir: Path) -> Path:
    """The SVHN training file under ``data_dir``."""
    return svhn.folder(data_dir) / "train_32x32.mat"


def subset(n_total: int, n_images: int) -> torch.Tensor:
    """A fixed random choice of ``n_images`` of ``n_total`` training images (hpo's subset seed)."""
    order = torch.randperm(n_total, generator=torch.Generator().manual_seed(svhn.SUBSET_SEED))
    return order[:n_images]


# --- Model and device ------------------------------------------------------------------------

def choose_weights(name: str) -> tuple[str, str]:
    """("imagenet" or "none", a line saying which and why)."""
    spec = backbones.BACKBONES[name]
    if spec.weights is None:
        return "none", f"{name}: random init (it has no ImageNet weights)"
    path = backbones.weights_path(spec)
    if path.exists():
        return "imagenet", f"{name}: ImageNet weights from {path}"
    return "none", (f"{name}: random init (--weights none), ImageNet weights not at {path}; "
                    "timings do not depend on weight values")


def prepare(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` on ``device``, channels_last on CUDA."""
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


def precision(device: torch.device) -> str:
    return "bf16 autocast + channels_last" if device.type == "cuda" else "fp32"


def device_line(device: torch.device) -> str:
    """'device: ...' with the torch version, CPU threads and load average."""
    return (f"device: {device} (torch {torch.__version__}, {torch.get_num_threads()} CPU "
            f"threads, load average {os.getloadavg()[0]:.1f})")


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device: torch.device):
    """(result of ``function()``, its wall-clock seconds, the device synchronized around it)."""
    sync(device)
    started = time.perf_counter()
    result = function()
    sync(device)
    return result, time.perf_counter() - started
