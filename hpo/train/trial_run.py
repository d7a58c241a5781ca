"""What an objective gets besides the Optuna trial: its data, device, epochs and ``fit``.

An objective receives ``(trial, run)``. It suggests params on ``trial``, builds a network and
either calls ``run.fit(model, ...)``, hpo's training loop, or trains in its own loop and calls
``run.report(value, epoch)`` after each epoch. Both report the validation metric each epoch,
raise ``optuna.TrialPruned`` when the pruner says so, record epochs and seconds per epoch on
the trial, and keep the trained model so the worker can checkpoint it if it is the best so far.

``fit`` also saves a resume point every epoch (hpo.train.resume), and the retry of a trial whose
worker died goes on from it: it reports the curve so far again and trains the epochs left.
"""

from __future__ import annotations

import logging
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
from hpo.storage.attributes import BASELINE_ATTR, RESUMED_FROM_ATTR
from hpo.train import loop
from hpo.train.resume import ResumePoint, resume_path

if TYPE_CHECKING:
    from hpo.spec import LaunchSpec

log = logging.getLogger(__name__)


def trial_seed(base_seed: int, trial_number: int) -> int:
    """A per-trial seed that is stable across machines (Python's hash() is not)."""
    return zlib.crc32(f"{base_seed}:{trial_number}".encode()) & 0x7FFFFFFF


class TrialRun:
    """One trial's training context. Its attributes are what an objective may read:

    - ``trial``: the Optuna trial (suggest params on it);
    - ``device``: the torch device this worker trains on;
    - ``epochs``: how many epochs to train (the launch's ``--epochs``);
    - ``options``: the study's launch options (StudyDefinition.options, as launched);
    - ``seed``: this trial's seed (torch is seeded with it before the objective runs); a retry
      has its original trial's seed;
    - ``data_dir``: the dataset root (``--data-dir``).

    ``retry_of`` is the number of the trial this one retries (the first of a chain of
    retries), if it is a retry: ``fit`` then goes on from that trial's resume point.
    """

    def __init__(self, trial: optuna.Trial | optuna.trial.FixedTrial,
                 definition: StudyDefinition, spec: LaunchSpec, *, device: str = "cpu",
                 epochs: int | None = None,
                 on_epoch: Callable[[int, float], None] | None = None,
                 retry_of: int | None = None) -> None:
        self.trial = trial
        self.definition = definition
        self.spec = spec
        self.device = torch.device(device)
        self.epochs: int = epochs if epochs is not None else spec.epochs
        self.options: dict[str, Any] = dict(spec.options)
        self.retry_of = retry_of
        # A retry is the same trial run again: same params, same seed, same resume point.
        self.original_number = retry_of if retry_of is not None else trial.number
        self.seed = trial_seed(spec.seed, self.original_number)
        self.dataset: Dataset = data.dataset_of(definition, synthetic=spec.synthetic)
        # Builds the trained network for a checkpoint; only called if the trial is the best.
        self.checkpoint_model: Callable[[], nn.Module] | None = None
        self._on_epoch_hook = on_epoch
        self.epoch_seconds: list[float] = []  # the worker records these on the trial
        self.resumed_epochs = 0  # epochs restored from the resume point, not trained here
        self._fits = 0
        self._resume_point: ResumePoint | None = None
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

        See :func:`hpo.train.loop.fit` for the keyword arguments. Every epoch it saves the
        trial's resume point; a retry goes on from its original trial's."""
        self.checkpoint_model = lambda: model
        self._fits += 1
        point = self._resume_point = self._make_resume_point()
        saved = point.load() if point is not None and self.retry_of is not None else None
        curve: list[float] = []

        def restored(epoch: int) -> None:
            # The retry's curve starts as the original's: report it again, unpruned (the
            # original passed the pruner at each of these epochs).
            curve.extend(saved["values"][:epoch] if saved else [])
            for step, value in enumerate(curve, start=1):
                self.trial.report(value, step)
            self.resumed_epochs = epoch
            self.trial.set_user_attr(RESUMED_FROM_ATTR, epoch)
            log.info("Trial %d resumes trial %d after epoch %d of %d.", self.trial.number,
                     self.original_number, epoch, self.epochs)

        def save(epoch: int, state: dict[str, Any]) -> None:
            if point is not None:
                point.save([*curve, float(state["val_accuracy"])], state)

        def after_epoch(epoch: int, value: float, seconds: float) -> None:
            curve.append(value)
            self._after_epoch(epoch, value, seconds)

        result = loop.fit(
            model, splits if splits is not None else self.splits(), epochs=self.epochs, lr=lr,
            batch_size=batch_size, weight_decay=weight_decay, loss=loss,
            label_smoothing=label_smoothing, schedule=schedule, seed=self.seed,
            transform=transform, on_epoch=after_epoch,
            mixed_precision=self.spec.mixed_precision, channels_last=channels_last,
            resume=saved["training"] if saved else None, on_resume=restored, save_state=save,
        )
        return result.val_accuracy

    def discard_resume_point(self) -> None:
        """Delete the trial's resume point: the worker calls this once the trial's end is
        recorded, after which no retry of it can follow."""
        point = self._resume_point or self._make_resume_point()
        if point is not None:
            point.discard()

    def _make_resume_point(self) -> ResumePoint | None:
        if not self.spec.artifact_dir or isinstance(self.trial, optuna.trial.FixedTrial):
            return None
        return ResumePoint(
            resume_path(self.spec.artifact_dir, self.spec.study_name, self.original_number),
            {"study": self.spec.study_name, "trial": self.original_number,
             "params": dict(self.trial.params), "seed": self.seed, "fit": self._fits},
        )

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
        """The epochs of the trial's curve: those trained here and those resumed."""
        return self.resumed_epochs + len(self.epoch_seconds)

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
        # The baseline is exempt in the pruner itself (hpo.search.pruning.GuardedPruner).
        if self.trial.should_prune():
            # hpo's pruner says why (below the floor, behind the baseline, ranked low). A
            # FixedTrial (evaluate's retrain) never prunes, so this is a real trial.
            study = getattr(self.trial, "study", None)
            why = getattr(getattr(study, "pruner", None), "last_reason", None)
            raise optuna.TrialPruned(why or f"pruned after epoch {epoch} with "
                                     f"{self.definition.metric_name}={value:.4f}")

