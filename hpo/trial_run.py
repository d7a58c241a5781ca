"""What an objective gets besides the Optuna trial: its data, device, epochs and ``fit``.

``TrialRun.fit`` wraps the training loop with what every trial needs: report the validation
accuracy each epoch, prune when the pruner says so, record epochs and seconds per epoch on the
trial, and keep the trained model so the worker can checkpoint it.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from torch import nn

from hpo import data, training
from hpo.definition import BASELINE_ATTR, StudyDefinition


@dataclass(frozen=True)
class RunSettings:
    """How this worker trains: the same for every trial it runs."""

    device: str = "cpu"
    epochs: int = 10
    data_dir: str = "data"
    synthetic: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    mixed_precision: bool = True


def trial_seed(base_seed: int, trial_number: int) -> int:
    """A per-trial seed that is stable across machines (Python's hash() is not)."""
    return zlib.crc32(f"{base_seed}:{trial_number}".encode()) & 0x7FFFFFFF


class TrialRun:
    def __init__(self, trial: optuna.Trial | optuna.trial.FixedTrial, definition: StudyDefinition,
                 settings: RunSettings, *,
                 on_epoch: Callable[[int, float], None] | None = None) -> None:
        self.trial = trial
        self.definition = definition
        self.settings = settings
        self.device = torch.device(settings.device)
        self.epochs = settings.epochs
        self.options = dict(settings.options)
        self.seed = trial_seed(settings.seed, trial.number)
        # Builds the trained network for a checkpoint; only called if the trial is the best.
        self.checkpoint_model: Callable[[], nn.Module] | None = None
        self._on_epoch_hook = on_epoch
        self.epoch_seconds: list[float] = []  # the worker records these on the trial
        torch.manual_seed(self.seed)

    @property
    def is_baseline(self) -> bool:
        return bool(self.trial.user_attrs.get(BASELINE_ATTR))

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.data_dir)

    def splits(self) -> data.Splits:
        """This study's train/validation tensors on the trial's device (loaded once per worker)."""
        return data.load_splits(self.definition.dataset, self.data_dir,
                                synthetic=self.settings.synthetic, device=self.device,
                                options=self.options)

    def data_fingerprint(self) -> str:
        """Identifies the data the splits come from, for caches keyed on it."""
        if self.settings.synthetic:
            return "synthetic"
        from hpo.data import fingerprint

        return fingerprint(self.definition.dataset, self.data_dir)

    def set_checkpoint(self, build: Callable[[], nn.Module]) -> None:
        """Tell the worker how to build the full trained network, if it checkpoints this trial
        (e.g. a frozen backbone plus the head trained on its cached features)."""
        self.checkpoint_model = build

    def seed_init(self, seed: int) -> None:
        """Re-seed weight initialisation, for studies that search over the init seed."""
        torch.manual_seed(seed)

    def fit(self, model: nn.Module, *, lr: float, batch_size: int, loss: str = "cross_entropy",
            weight_decay: float = 0.0, label_smoothing: float = 0.0, schedule: str = "constant",
            splits: data.Splits | None = None, transform: training.Transform | None = None,
            channels_last: bool = False) -> float:
        """Train ``model`` for the study's epochs and return its validation accuracy.

        See :func:`hpo.training.fit` for the keyword arguments."""
        self.checkpoint_model = lambda: model
        result = training.fit(
            model, splits if splits is not None else self.splits(), epochs=self.epochs, lr=lr,
            batch_size=batch_size, weight_decay=weight_decay, loss=loss,
            label_smoothing=label_smoothing, schedule=schedule, seed=self.seed,
            transform=transform, on_epoch=self._after_epoch,
            mixed_precision=self.settings.mixed_precision, channels_last=channels_last,
        )
        return result.val_accuracy

    @property
    def epochs_run(self) -> int:
        return len(self.epoch_seconds)

    @property
    def seconds_per_epoch(self) -> float | None:
        if not self.epoch_seconds:
            return None
        return round(sum(self.epoch_seconds) / len(self.epoch_seconds), 4)

    def _after_epoch(self, epoch: int, value: float, seconds: float) -> None:
        self.epoch_seconds.append(seconds)
        self.trial.report(value, epoch)
        if self._on_epoch_hook is not None:
            self._on_epoch_hook(epoch, value)
        # The baseline always runs to the end, so every study shows the seed's full result.
        if not self.is_baseline and self.trial.should_prune():
            # hpo's pruner says why (below the floor, behind the baseline, ranked low).
            why = getattr(self.trial.study.pruner, "last_reason", None)
            raise optuna.TrialPruned(why or f"pruned after epoch {epoch} with "
                                     f"{self.definition.metric_name}={value:.4f}")
