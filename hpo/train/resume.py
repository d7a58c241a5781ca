"""Resume points: a trial's training state, saved every epoch, so that its retry goes on from there.

Every epoch, ``TrialRun.fit`` writes the network's and optimizer's state, the schedule's step,
the random generators and the curve so far to ``<artifact_dir>/resume/<study>/<original trial
number>.pt`` (replaced whole: a temporary file, then an atomic rename; deleted when the trial
ends). The retry of a trial whose worker died loads it, reports that curve again, so the pruner
sees an unbroken run, and trains only the epochs left; a retry of a retry uses its original's
file. A file that is unreadable (read with ``weights_only=True``) or was written for another
trial, study, seed, training settings or network is ignored with a warning. Workers on several
machines share resume points only through a shared ``HPO_ARTIFACT_DIR``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.storages import RetryHeartbeatStaleTrialCallback

from hpo.errors import first_line
from hpo.storage.attributes import file_name_of

log = logging.getLogger(__name__)

FORMAT = "hpo-resume/1"
FOLDER = "resume"


def original_trial_number(trial: optuna.trial.FrozenTrial) -> int | None:
    """The number of the trial that ``trial`` retries, following retries of retries back to
    the first; None if ``trial`` is no retry."""
    with warnings.catch_warnings():  # marked experimental, but the documented public route
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        history = RetryHeartbeatStaleTrialCallback.retry_history(trial)
        number = RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
    if isinstance(history, list) and history:
        number = history[0]
    if number is None:
        return None
    # Read back from storage, which others can write: only an earlier trial can be retried.
    if isinstance(number, bool) or not isinstance(number, int) \
            or not 0 <= number < trial.number:
        log.warning("Trial %d records that it retries trial %.40r, which is no earlier trial; "
                    "it trains from scratch with its own seed.", trial.number, number)
        return None
    return number


def safe_name(study_name: str) -> str:
    """The study's name as one folder name, bounded and hashed (see file_name_of)."""
    return file_name_of(study_name)


def resume_path(artifact_dir: str | Path, study_name: str, trial_number: int) -> Path:
    return Path(artifact_dir) / FOLDER / safe_name(study_name) / f"{trial_number}.pt"


class ResumePoint:
    """The resume point of one trial (and of its retries).

    ``identity`` is what a file must have been written for to be used: the study, the original
    trial number, its params, seed and the index of the ``fit`` call within the objective.
    """

    def __init__(self, path: Path, identity: Mapping[str, Any]) -> None:
        self.path = path
        self.identity = dict(identity)
        self._save_failed = False

    def save(self, values: list[float], training: Mapping[str, Any]) -> None:
        """Replace the file with this epoch's state. A failure (a full disk) is logged once
        per trial and costs only the resume point, never the trial."""
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        point = {"format": FORMAT, **self.identity, "values": list(values),
                 "training": dict(training)}
        try:
            for attempt in (1, 2):  # a peer's discard may remove the empty folder in between
                self.path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    torch.save(point, temporary)
                    break
                except (FileNotFoundError, RuntimeError):  # torch: "Parent directory ..."
                    if attempt == 2 or self.path.parent.exists():
                        raise
            temporary.replace(self.path)
        except Exception as error:  # a resume point is never worth a trial
            with contextlib.suppress(OSError):
                temporary.unlink()
            if not self._save_failed:
                self._save_failed = True
                log.warning("Could not write the resume point %s (%s): a retry of trial %s "
                            "would train from scratch.", self.path, first_line(error, limit=200),
                            self.identity.get("trial"))

    def load(self) -> dict[str, Any] | None:
        """The saved point if there is one written for this trial, else None; a file that
        cannot be used is ignored with a warning."""
        if not self.path.exists():
            log.info("No resume point for trial %s at %s; it trains from scratch.",
                     self.identity.get("trial"), self.path)
            return None
        try:
            point = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as error:
            self.ignore(f"it cannot be read ({first_line(error, limit=200)})")
            return None
        problem = self._mismatch(point)
        if problem:
            self.ignore(problem)
            return None
        return point

    def ignore(self, why: str) -> None:
        log.warning("Ignoring the resume point %s: %s; trial %s trains from scratch.",
                    self.path, why, self.identity.get("trial"))

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()
        # The study's folder goes with its last resume point (rmdir removes only an empty one),
        # so a finished study leaves no empty resume/<study>/ behind.
        with contextlib.suppress(OSError):
            self.path.parent.rmdir()

    def _mismatch(self, point: Any) -> str | None:
        if not isinstance(point, dict) or point.get("format") != FORMAT:
            return "it is not an hpo resume point"
        for key, expected in self.identity.items():
            if point.get(key) != expected:
                return f"it was written for another {key} ({point.get(key)!r}, not {expected!r})"
        values, training = point.get("values"), point.get("training")
        if not isinstance(training, dict) or not isinstance(values, list) \
                or not all(isinstance(v, float) for v in values) \
                or training.get("epoch") != len(values) or not values:
            return "its curve and training state do not fit together"
        return None


