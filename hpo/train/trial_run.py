"""What an objective gets besides the Optuna trial: its data, device, epochs and ``fit``.

An objective receives ``(trial, run)``. It suggests params on ``trial``, builds a network and
either calls ``run.fit(model, ...)``, hpo's training loop, or trains in its own loop and calls
``run.report(value, epoch)`` after each epoch. Both report the validation metric each epoch,
raise ``optuna.TrialPruned`` when the pruner says so, record epochs and seconds per epoch on
the trial, and keep the trained model so the worker can checkpoint it if it is the best so far.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import torch
from torch import nn

from hpo import data
from hpo.definition import Dataset, Splits, StudyDefinition
from hpo.storage.attributes import BASELINE_ATTR
from hpo.train import loop

if TYPE_CHECKING:
    from hpo.spec import LaunchSpec


def trial_seed(base_seed: int, trial_number: int) -> int:
    """A per-trial seed that is stable across machines (Python's hash() is not)."""
    return zlib.crc32(f"{base_seed}:{trial_number}".encode()) & 0x7FFFFFFF


class TrialRun:
    """One trial's training context. Its attributes are what an objective may read:

    - ``trial``: the Optuna trial (suggest params on it);
    - ``device``: the torch device this worker trains on;
    - ``epochs``: how many epochs to train (the launch's ``--epochs``);
    - ``options``: the study's launch options (StudyDefinition.options, as launched);
    - ``seed``: this trial's seed (torch is seeded with it before the objective runs);
    - ``data_dir``: the dataset root (``--data-dir``).
    """

    def __init__(self, trial: optuna.Trial | optuna.trial.FixedTrial,
                 definition: StudyDefinition, spec: LaunchSpec, *, device: str = "cpu",
                 epochs: int | None = None,
                 on_epoch: Callable[[int, float], None] | None = None) -> None:
        self.trial = trial
        self.definition = definition
        self.spec = spec
        self.device = torch.device(device)
        self.epochs: int = epochs if epochs is not None else spec.epochs
        self.options: dict[str, Any] = dict(spec.options)
        self.seed = trial_seed(spec.seed, trial.number)
        self.dataset: Dataset = data.dataset_of(definition, synthetic=spec.synthetic)
        # Builds the trained network for a checkpoint; only called if the trial is the best.
        self.checkpoint_model: Callable[[], nn.Module] | None = None
        self._on_epoch_hook = on_epoch
        self.epoch_seconds: list[float] = []  # the worker records these on the trial
        self._epoch_started = time.perf_counter()
        torch.manual_seed(self.seed)

    @property
    def is_baseline(self) -> bool:
        return bool(self.trial.user_attrs.get(BASELINE_ATTR))

    @property
    def data_dir(self) -> Path:
        return Path(self.spec.data_dir)

    def splits(self) -> Splits:
        """This study's train/validation tensors on the trial's device (loaded once per worker)."""
        return data.load_splits(self.dataset, self.data_dir, device=self.device,
                                options=self.options)

    def data_fingerprint(self) -> str:
        """Identifies the data the splits come from, for caches keyed on it."""
        return data.fingerprint(self.dataset, self.data_dir)

    def set_checkpoint(self, build: Callable[[], nn.Module]) -> None:
        """Tell the worker how to build the full trained network, if it checkpoints this trial
        (e.g. a frozen backbone plus the head trained on its cached features)."""
        self.checkpoint_model = build

    def seed_init(self, seed: int) -> None:
        """Re-seed weight initialisation, for studies that search over the init seed."""
        torch.manual_seed(seed)

    def fit(self, model: nn.Module, *, lr: float, batch_size: int, loss: str = "cross_entropy",
            weight_decay: float = 0.0, label_smoothing: float = 0.0, schedule: str = "constant",
            splits: Splits | None = None, transform: loop.Transform | None = None,
            channels_last: bool = False) -> float:
        """Train ``model`` for the study's epochs and return its validation accuracy.

        See :func:`hpo.train.loop.fit` for the keyword arguments."""
        self.checkpoint_model = lambda: model
        result = loop.fit(
            model, splits if splits is not None else self.splits(), epochs=self.epochs, lr=lr,
            batch_size=batch_size, weight_decay=weight_decay, loss=loss,
            label_smoothing=label_smoothing, schedule=schedule, seed=self.seed,
            transform=transform, on_epoch=self._after_epoch,
            mixed_precision=self.spec.mixed_precision, channels_last=channels_last,
        )
        return result.val_accuracy

    def report(self, value: float, epoch: int, *, model: nn.Module | None = None) -> None:
        """For objectives with their own training loop: report the validation metric after
        ``epoch`` (1-based). Raises optuna.TrialPruned if the trial should stop; pass ``model``
        so the worker can checkpoint the trained network."""
        if model is not None:
            self.checkpoint_model = lambda: model
        now = time.perf_counter()
        seconds, self._epoch_started = now - self._epoch_started, now
        self._after_epoch(epoch, float(value), seconds)

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
        # The baseline always runs to the end, so every study shows its full result.
        if not self.is_baseline and self.trial.should_prune():
            # hpo's pruner says why (below the floor, behind the baseline, ranked low). A
            # FixedTrial (evaluate's retrain) never prunes, so this is a real trial.
            study = getattr(self.trial, "study", None)
            why = getattr(getattr(study, "pruner", None), "last_reason", None)
            raise optuna.TrialPruned(why or f"pruned after epoch {epoch} with "
                                     f"{self.definition.metric_name}={value:.4f}")

