"""digits: a complete user study in one file, on scikit-learn's 8x8 handwritten digits.

Nothing here is built into hpo: the data, the network and the training loop are this file's
own, as they would be for a study of yours. Run it from any folder:

    hpo launch digits_study.py --trials 20     # 20 trials on SQLite (./storage/hpo.db)
    hpo evaluate digits                         # the best trial's accuracy on the test split
    hpo worker digits                           # one more worker, e.g. on another machine

The data ship with scikit-learn (``sklearn.datasets.load_digits``, 1797 images), so there is
nothing to download. They are split 1197 / 300 / 300 into train, validation and test with a
fixed seed; only ``hpo evaluate`` reads the test images.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.distributions import FloatDistribution, IntDistribution
from torch import nn

from hpo import Dataset, Splits, StudyDefinition, TrialRun, suggest

TRAIN, VALIDATION = 1197, 300


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 images as 64 pixel values in [0, 1], in a fixed shuffled order."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0  # pixels are 0..16
    y = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x[order], y[order]


def load_splits(data_dir: Path, options: Mapping[str, Any]) -> Splits:
    x, y = _digits()
    end = TRAIN + VALIDATION
    return Splits(x[:TRAIN], y[:TRAIN], x[TRAIN:end], y[TRAIN:end], num_classes=10)


def load_test(data_dir: Path, options: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _digits()
    return x[TRAIN + VALIDATION:], y[TRAIN + VALIDATION:]


DIGITS = Dataset(name="sklearn-digits", load_splits=load_splits, load_test=load_test)

SEARCH_SPACE = {
    "lr": FloatDistribution(1e-3, 1e-1, log=True),
    "width": IntDistribution(16, 256, log=True),
    "dropout": FloatDistribution(0.0, 0.5),
}


def build_model(params: Mapping[str, Any]) -> nn.Module:
    return nn.Sequential(nn.Linear(64, params["width"]), nn.ReLU(),
                         nn.Dropout(params["dropout"]), nn.Linear(params["width"], 10))


def objective(trial: optuna.Trial, run: TrialRun) -> float:
    """Train with this file's own loop; hpo only needs the validation accuracy each epoch."""
    params = suggest(trial, SEARCH_SPACE)
    splits = run.splits()  # the tensors, already on run.device
    model = build_model(params).to(run.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=params["lr"])
    accuracy = 0.0
    for epoch in range(1, run.epochs + 1):
        model.train()
        for batch in torch.randperm(TRAIN, device=run.device).split(64):
            loss = nn.functional.cross_entropy(model(splits.train_x[batch]), splits.train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(splits.val_x).argmax(1) == splits.val_y).float().mean().item()
        # Records the curve, and raises optuna.TrialPruned when the pruner stops this trial;
        # with the model, the best trial's weights are checkpointed for `hpo evaluate`.
        run.report(accuracy, epoch, model=model)
    return accuracy


STUDY = StudyDefinition(
    name="digits",
    summary="scikit-learn's 8x8 digits: a one-hidden-layer network, lr, width, dropout",
    dataset=DIGITS,
    objective=objective,
    search_space=SEARCH_SPACE,
    build_model=build_model,
    epochs=10,
    trials=20,
    # No sampler or pruning fields: the study gets hpo's defaults (univariate TPE, the leaders
    # rule from a tenth of the epochs, a floor learned from its own trials).
)
