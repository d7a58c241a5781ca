"""The anytime benchmark: best validation accuracy against wall time, three ways to search MNIST.

All three run on real MNIST (the same 48k/12k train/validation split; test on the 10k test
images), on this machine, one after the other in one run:

- **hpo**: the default command, ``hpo launch mnist-mlp --trials 50 --seed S`` and then
  ``hpo evaluate mnist-mlp``, run as subprocesses in a fresh folder;
- **optuna**: plain Optuna as its examples do it (optuna-examples ``pytorch/pytorch_simple.py``):
  TPE plus MedianPruner, in memory, an objective that loads MNIST through torchvision and a
  DataLoader, trains with Adam at a constant rate, and reports and prunes every epoch. Same
  search space, networks (``studies.mnist_mlp.build_model``), batch size and 10 epochs as hpo;
  it gets the
  same wall time the hpo launch took (``--budget`` overrides);
- **grid**: the seed report's grid, as the report ran it: its 256/256/128/128 network, lr in
  {0.001, 0.01, 0.1}, 5 epochs each with a DataLoader; the best by validation is tested.

A model counts from the moment its trial completes (best validation accuracy of the completed
trials so far). Prints each arm's curve, its time to 97.5% and 98% validation accuracy and its
test accuracy, and draws the curves into a PNG.

    uv run python benchmarks/time_to_accuracy.py --data-dir data [--seed 2] [--output PNG]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms as transforms
from torch.utils.data import DataLoader, Subset

from hpo.data import mnist, split_indices
from hpo.definition import suggest
from studies.mnist_mlp import BATCH_SIZE, SEARCH_SPACE, build_model, build_seed_model

TARGETS = (0.975, 0.98)
HPO = [sys.executable, "-m", "hpo"]


@dataclass
class Arm:
    name: str
    # (seconds since the arm started, validation accuracy) of each completed trial, in order.
    completed: list[tuple[float, float]] = field(default_factory=list)
    test_accuracy: float | None = None
    wall: float = 0.0
    trials: int = 0
    epochs: int = 0

    def curve(self) -> list[tuple[float, float]]:
        """(time, best so far) at each improvement."""
        best, points = 0.0, []
        for seconds, value in sorted(self.completed):
            if value > best:
                best = value
                points.append((seconds, value))
        return points

    def time_to(self, target: float) -> float | None:
        return next((seconds for seconds, value in self.curve() if value >= target), None)

    @property
    def best(self) -> float:
        return max((value for _, value in self.completed), default=0.0)


# -- hpo -------------------------------------------------------------------------------------


def run_hpo(data_dir: Path, seed: int, folder: Path) -> Arm:
    env = {**os.environ, "HPO_DATA_DIR": str(data_dir.resolve()), "HPO_OFFLINE": "1"}
    started = time.time()
    launched = subprocess.run(
        [*HPO, "launch", "mnist-mlp", "--trials", "50", "--seed", str(seed)],
        cwd=folder, env=env, check=True, stdout=subprocess.PIPE, text=True)
    launch_seconds = time.time() - started
    # The launch's own summary: trials by state and the wasted epochs.
    print("\n".join(line for line in launched.stdout.splitlines()
                    if "finished in this launch" in line or line.startswith("Wasted epochs")))
    evaluated = subprocess.run([*HPO, "evaluate", "mnist-mlp"], cwd=folder, env=env, check=True,
                               capture_output=True, text=True)
    print(evaluated.stdout.strip(), flush=True)
    study = optuna.load_study(study_name="mnist-mlp",
                              storage=f"sqlite:///{folder / 'storage' / 'hpo.db'}")
    arm = Arm("hpo", wall=launch_seconds)
    for trial in study.get_trials(deepcopy=False):
        arm.epochs += int(trial.user_attrs.get("epochs_run", 0))
        if trial.state == optuna.trial.TrialState.COMPLETE:
            arm.completed.append((trial.datetime_complete.timestamp() - started, trial.value))
    arm.trials = len(study.trials)
    arm.test_accuracy = study.user_attrs["test_accuracy"]["value"]
    return arm


# -- plain Optuna, as optuna-examples does it ------------------------------------------------


def mnist_loaders(data_dir: Path, batch_size: int) -> tuple[DataLoader, DataLoader]:
    """torchvision's MNIST with ToTensor + Normalize to [-1, 1], split as hpo splits it."""
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    train = torchvision.datasets.MNIST(root=str(data_dir), train=True, transform=transform)
    train_idx, val_idx = split_indices(len(train), mnist.TRAIN_FRACTION, mnist.SPLIT_SEED)
    return (DataLoader(Subset(train, train_idx.tolist()), batch_size=batch_size, shuffle=True),
            DataLoader(Subset(train, val_idx.tolist()), batch_size=batch_size, shuffle=False))


def loader_accuracy(model: torch.nn.Module, loader: DataLoader) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader:
            predicted = model(images.view(images.size(0), -1)).argmax(dim=1)
            correct += (predicted == labels).sum().item()
            total += labels.size(0)
    return correct / total


def train_epochs(model: torch.nn.Module, optimizer: torch.optim.Optimizer, train: DataLoader,
                 val: DataLoader, epochs: int, arm: Arm, trial: optuna.Trial | None = None
                 ) -> float:
    accuracy = 0.0
    for epoch in range(epochs):
        model.train()
        for images, labels in train:
            optimizer.zero_grad()
            F.cross_entropy(model(images.view(images.size(0), -1)), labels).backward()
            optimizer.step()
        accuracy = loader_accuracy(model, val)
        arm.epochs += 1
        if trial is not None:
            trial.report(accuracy, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
    return accuracy


def run_optuna(data_dir: Path, seed: int, budget: float, epochs: int) -> tuple[Arm, dict]:
    arm = Arm("optuna")
    best: dict = {"value": 0.0, "state": None, "params": None}
    started = time.time()

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, SEARCH_SPACE)
        model = build_model(params)
        optimizer = torch.optim.AdamW(model.parameters(), lr=params["lr"],
                                      weight_decay=params["weight_decay"])
        train, val = mnist_loaders(data_dir, BATCH_SIZE)
        accuracy = train_epochs(model, optimizer, train, val, epochs, arm, trial)
        if accuracy > best["value"]:
            best.update(value=accuracy, state=copy.deepcopy(model.state_dict()), params=params)
        arm.completed.append((time.time() - started, accuracy))
        return accuracy

    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner())
    study.optimize(objective, n_trials=50, timeout=budget)
    arm.wall = time.time() - started
    arm.trials = len(study.trials)
    return arm, best


# -- the seed's grid ---------------------------------------------------------------------------


def run_grid(data_dir: Path) -> tuple[Arm, dict]:
    arm = Arm("grid")
    best: dict = {"value": 0.0, "state": None, "params": {}}
    started = time.time()
    for lr in (0.001, 0.01, 0.1):
        torch.manual_seed(0)
        model = build_seed_model({})
        train, val = mnist_loaders(data_dir, 100)
        accuracy = train_epochs(model, torch.optim.Adam(model.parameters(), lr=lr), train, val, 5,
                                arm)
        arm.completed.append((time.time() - started, accuracy))
        if accuracy > best["value"]:
            best.update(value=accuracy, state=copy.deepcopy(model.state_dict()), params={"lr": lr})
    arm.wall = time.time() - started
    arm.trials = 3
    return arm, best


def test_accuracy(data_dir: Path, model: torch.nn.Module) -> float:
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    test = torchvision.datasets.MNIST(root=str(data_dir), train=False, transform=transform)
    return loader_accuracy(model, DataLoader(test, batch_size=1000))


# -- report ------------------------------------------------------------------------------------


def minutes(seconds: float | None) -> str:
    return "not reached" if seconds is None else f"{seconds / 60:.1f} min"


def plot(arms: list[Arm], output: Path, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.8))
    for arm in arms:
        points = arm.curve()
        if not points:
            continue
        xs = [seconds / 60 for seconds, _ in points] + [arm.wall / 60]
        ys = [value * 100 for _, value in points] + [points[-1][1] * 100]
        axes.step(xs, ys, where="post", label=f"{arm.name} (test {arm.test_accuracy:.2%})",
                  marker="o", markersize=3)
    for target in TARGETS:
        axes.axhline(target * 100, color="grey", linestyle=":", linewidth=1)
    axes.set_ylim(95, 99.2)
    axes.set_xlabel("wall time (minutes)")
    axes.set_ylabel("best validation accuracy so far (%)")
    axes.set_title(f"Anytime search on real MNIST, 2-core CPU (seed {seed})")
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the optuna arm [default: the hpo launch's wall time]")
    parser.add_argument("--output", type=Path, default=Path("docs/time_to_accuracy.png"))
    args = parser.parse_args()
    if not (mnist.raw_dir(args.data_dir) / mnist.FILES["train_images"]).exists():
        sys.exit(f"MNIST is not in {mnist.raw_dir(args.data_dir)}: put its four raw files there "
                 "(see README.md) or pass --data-dir.")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, seed {args.seed}",
          flush=True)

    with tempfile.TemporaryDirectory(prefix="hpo-anytime-") as folder:
        hpo_arm = run_hpo(args.data_dir, args.seed, Path(folder))
    print(f"hpo: {hpo_arm.wall:.0f} s, best val {hpo_arm.best:.4f}", flush=True)
    budget = args.budget if args.budget is not None else hpo_arm.wall
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna_arm, optuna_best = run_optuna(args.data_dir, args.seed, budget, epochs=10)
    if optuna_best["state"] is not None:
        model = build_model(optuna_best["params"])
        model.load_state_dict(optuna_best["state"])
        optuna_arm.test_accuracy = test_accuracy(args.data_dir, model)
    print(f"optuna: {optuna_arm.wall:.0f} s, best val {optuna_arm.best:.4f}", flush=True)
    grid_arm, grid_best = run_grid(args.data_dir)
    model = build_seed_model({})
    model.load_state_dict(grid_best["state"])
    grid_arm.test_accuracy = test_accuracy(args.data_dir, model)
    arms = [hpo_arm, optuna_arm, grid_arm]

    print()
    print("| search | wall | trials | epochs | best val | to 97.5% val | to 98% val | test |")
    print("|---|---|---|---|---|---|---|---|")
    for arm in arms:
        test = f"{arm.test_accuracy:.2%}" if arm.test_accuracy is not None else "-"
        print(f"| {arm.name} | {minutes(arm.wall)} | {arm.trials} | {arm.epochs} | "
              f"{arm.best:.2%} | {minutes(arm.time_to(0.975))} | {minutes(arm.time_to(0.98))} | "
              f"{test} |")
    hpo_98, optuna_98 = hpo_arm.time_to(0.98), optuna_arm.time_to(0.98)
    if hpo_98 is not None:
        if optuna_98 is not None:
            print(f"\nhpo reached 98% validation {optuna_98 / hpo_98:.1f}x sooner than plain "
                  "Optuna (target: at least 3x).")
        else:
            print(f"\nplain Optuna did not reach 98% validation in {optuna_arm.wall / 60:.1f} min; "
                  f"hpo did in {hpo_98 / 60:.1f} min: at least {optuna_arm.wall / hpo_98:.1f}x "
                  "sooner (target: at least 3x).")
    for arm in arms:
        print(f"curve {arm.name}: " + json.dumps([(round(s), round(v, 4)) for s, v in arm.curve()]))
    plot(arms, args.output, args.seed)
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
