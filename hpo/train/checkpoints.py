"""Best-model checkpoints as Optuna artifacts, a bounded few per study.

A trial that beats the study's best so far saves its weights (a plain state dict) to the
artifact store, a folder under ``storage/`` by default, and the dashboard lists each under
"Artifacts" on its trial's page. Only the best ``keep`` stay: older ones are deleted from disk
and from the dashboard.

The dashboard's record of a checkpoint is a study attribute naming the trial
(hpo._optuna.trial_artifact_key), not a trial attribute: a finished trial's attributes can no
longer change, so a trial-level record could not be removed when its checkpoint is evicted.
With workers on several machines, point HPO_ARTIFACT_DIR at a folder they all share.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import pickle
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, download_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import TrialState

from hpo import _optuna
from hpo.definition import is_better
from hpo.errors import HpoError, first_line
from hpo.storage.attributes import metric_name

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "hpo:checkpoint:"
# Optuna's artifact ids are UUIDs. A record in storage, which many can write, is followed only
# if its id is one plain file name, so it never reads or removes a file outside the store.
_ARTIFACT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


class AtomicArtifactStore(FileSystemArtifactStore):
    """Optuna's folder store, except that a file appears whole or not at all. upload_artifact
    records an artifact on the study before it writes the file, so with Optuna's in-place write
    a reader (hpo evaluate, the dashboard, another machine) could load a half-written
    checkpoint, and a full disk would leave one behind."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.folder = folder

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        if _ARTIFACT_ID.fullmatch(artifact_id) is None:
            raise ValueError(f"Invalid artifact_id: {artifact_id}")
        final = self.folder / artifact_id
        temporary = final.with_name(f".{artifact_id}.{os.getpid()}.tmp")
        try:
            with temporary.open("wb") as file:
                shutil.copyfileobj(content_body, file)
                file.flush()
                os.fsync(file.fileno())
            temporary.replace(final)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise


def artifact_store(artifact_dir: str | Path) -> FileSystemArtifactStore:
    path = Path(artifact_dir)
    path.mkdir(parents=True, exist_ok=True)
    return AtomicArtifactStore(path)


def saved_checkpoints(study: optuna.Study) -> dict[int, dict[str, Any]]:
    """Trial number -> {"artifact_id", "value", "file"} for the checkpoints the study still
    keeps. Records that are not well formed (storage is written by others too) are skipped."""
    found = {}
    attrs = _optuna.storage_of(study).get_study_system_attrs(_optuna.study_id_of(study))
    for key, meta in attrs.items():
        if not key.startswith(CHECKPOINT_PREFIX) or not meta:
            continue
        number = key[len(CHECKPOINT_PREFIX):]
        if _well_formed(number, meta):
            found[int(number)] = meta
        else:
            log.warning("Ignoring the malformed checkpoint record %r of study %s.", key,
                        study.study_name)
    return found


def _well_formed(number: str, meta: Any) -> bool:
    return (number.isascii() and number.isdigit() and isinstance(meta, dict)
            and isinstance(meta.get("artifact_id"), str)
            and _ARTIFACT_ID.fullmatch(meta["artifact_id"]) is not None
            and isinstance(meta.get("value"), int | float) and not isinstance(meta["value"], bool)
            and math.isfinite(meta["value"])
            # The trial's storage id, since checkpoints were attached to their trial.
            and (meta.get("trial_id") is None or (isinstance(meta["trial_id"], int)
                                                   and not isinstance(meta["trial_id"], bool))))


class CheckpointKeeper:
    def __init__(self, study: optuna.Study, artifact_dir: str | Path, *, keep: int = 3) -> None:
        self.study = study
        self.store = artifact_store(artifact_dir)
        self.keep = keep
        self.maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE

    def offer(self, trial: optuna.Trial, build_model: Callable[[], torch.nn.Module],
              value: float) -> bool:
        """Save the trained network if ``value`` beats every completed trial so far.
        Returns whether it did. ``build_model`` is only called when it does."""
        complete = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if any(t.value is not None and not is_better(value, t.value, maximize=self.maximize)
               for t in complete):
            return False
        metric = metric_name(self.study)
        name = f"trial-{trial.number:05d}-{metric}-{value:.4f}.pt"
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / name
            model = build_model()
            state = {key: tensor.detach().cpu() for key, tensor in model.state_dict().items()}
            torch.save(state, path)
            artifact_id = str(uuid.uuid4())  # what optuna.artifacts names its files by
            with path.open("rb") as file:
                self.store.write(artifact_id, file)
        storage, study_id = _optuna.storage_of(self.study), _optuna.study_id_of(self.study)
        trial_id = _optuna.trial_id_of(trial)
        storage.set_study_system_attr(study_id, _optuna.trial_artifact_key(trial_id, artifact_id),
                                      json.dumps({"artifact_id": artifact_id, "filename": name,
                                                  "mimetype": "application/octet-stream",
                                                  "encoding": None}))
        storage.set_study_system_attr(
            study_id, f"{CHECKPOINT_PREFIX}{trial.number}",
            {"artifact_id": artifact_id, "value": value, "file": name, "trial_id": trial_id},
        )
        log.info("Saved the checkpoint of trial %d (%s %.4f).", trial.number, metric, value)
        self._evict()
        return True

    def _evict(self) -> None:
        kept = saved_checkpoints(self.study)
        ranked = sorted(kept, key=lambda n: kept[n]["value"], reverse=self.maximize)
        for number in ranked[self.keep:]:
            artifact_id = kept[number]["artifact_id"]
            with contextlib.suppress(ArtifactNotFound):  # another worker evicted it first
                self.store.remove(artifact_id)
            storage, study_id = _optuna.storage_of(self.study), _optuna.study_id_of(self.study)
            storage.set_study_system_attr(study_id, f"{CHECKPOINT_PREFIX}{number}", None)
            # The same removal the dashboard's delete button makes, so it stops listing it;
            # checkpoints saved before they were attached to their trial sit on the study.
            trial_id = kept[number].get("trial_id")
            key = (_optuna.trial_artifact_key(trial_id, artifact_id) if trial_id is not None
                   else f"{_optuna.ARTIFACT_ATTR_PREFIX}{artifact_id}")
            storage.set_study_system_attr(study_id, key, json.dumps(None))


def load_checkpoint(study: optuna.Study, trial_number: int, artifact_dir: str | Path
                    ) -> dict[str, torch.Tensor] | None:
    """The saved weights of a trial, or None if it has no checkpoint (any more)."""
    meta = saved_checkpoints(study).get(trial_number)
    if meta is None:
        return None
    store = artifact_store(artifact_dir)
    with tempfile.TemporaryDirectory() as folder:
        # Never the recorded file name: it comes from storage and could point anywhere.
        path = Path(folder) / "checkpoint.pt"
        try:
            download_artifact(artifact_store=store, artifact_id=meta["artifact_id"],
                              file_path=str(path))
        except ArtifactNotFound:
            log.warning("The checkpoint file of trial %d is missing from %s.", trial_number,
                        artifact_dir)
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or not all(
                    isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
                raise ValueError(f"it holds a {type(state).__name__}, not names and tensors")
            return state
        except Exception as error:  # an untrusted file: torch.load can raise nearly anything
            if isinstance(error, pickle.UnpicklingError):
                # torch's own message is a page of advice with terminal escapes in it.
                reason = "it holds pickled objects other than tensors, which could run code"
            else:
                reason = first_line(error, limit=120)
            raise HpoError(
                f"The checkpoint of trial {trial_number} "
                f"({Path(artifact_dir) / meta['artifact_id']}) is not a plain weights file "
                f"({reason}): delete it, or pass --retrain to train that trial's params again."
            ) from None
