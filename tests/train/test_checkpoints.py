"""hpo/train/checkpoints.py: the best few trials keep their weights as study artifacts, evicted
ones are deleted, and loading a checkpoint never runs code from the file."""

from __future__ import annotations

import pickle
from pathlib import Path

import optuna
import pytest
import torch
from typer.testing import CliRunner

from hpo.cli import app
from hpo.train.checkpoints import CheckpointKeeper, load_checkpoint, saved_checkpoints

runner = CliRunner()


def test_best_trials_keep_bounded_checkpoints(finished_study, tmp_path: Path) -> None:
    url, artifacts = finished_study
    study = optuna.load_study(study_name="mnist-mlp", storage=url)
    kept = saved_checkpoints(study)
    assert 1 <= len(kept) <= 2
    best = max((t for t in study.trials if t.value is not None
                and t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value)
    assert best.number in kept  # the study's best always has its weights
    assert len(list(artifacts.iterdir())) == len(kept)  # evicted files are deleted
    state = load_checkpoint(study, best.number, artifacts)
    assert all(isinstance(t, torch.Tensor) for t in state.values())


def test_eviction_keeps_only_the_best_few(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize",
                                storage=f"sqlite:///{tmp_path / 'k.db'}")
    keeper = CheckpointKeeper(study, tmp_path / "store", keep=2)
    for value in (0.1, 0.5, 0.7, 0.9):
        trial = study.ask()
        assert keeper.offer(trial, lambda: torch.nn.Linear(2, 2), value)
        study.tell(trial, value)
    trial = study.ask()
    assert not keeper.offer(trial, lambda: pytest.fail("built for a worse trial"), 0.2)
    study.tell(trial, 0.2)
    assert sorted(saved_checkpoints(study)) == [2, 3]
    assert len(list((tmp_path / "store").iterdir())) == 2


def test_tampered_checkpoint_is_refused(finished_study, mnist_dir: Path) -> None:
    url, artifacts = finished_study
    study = optuna.load_study(study_name="mnist-mlp", storage=url)
    number, meta = next(iter(saved_checkpoints(study).items()))

    class Payload:
        def __reduce__(self):
            return (print, ("this would run on load",))


    (artifacts / meta["artifact_id"]).write_bytes(pickle.dumps(Payload()))
    result = runner.invoke(app, ["evaluate", "mnist-mlp", "--storage", url, "--trial",
                                 str(number), "--data-dir", str(mnist_dir)],
                           env={"HPO_ARTIFACT_DIR": str(artifacts)})
    assert result.exit_code == 1
    assert "is not a plain weights file" in result.stderr and "--retrain" in result.stderr

